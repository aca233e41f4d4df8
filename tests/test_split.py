import numpy as np

from elcrec.data import SequenceData, eval_set, pad_left, train_set


def make(seqs):
    lengths = [len(s) for s in seqs]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    n_items = max(max(s) for s in seqs)
    return SequenceData(np.concatenate(seqs), offsets, np.arange(len(seqs)), np.arange(1, n_items + 1))


def test_pad_left_keeps_the_most_recent_items():
    items = np.array([1, 2, 3, 4, 5, 6])
    out = pad_left(items, np.array([0, 4]), np.array([4, 6]), 3)
    assert out.tolist() == [[2, 3, 4], [0, 5, 6]]


def test_leave_one_out_split():
    data = make([[1, 2, 3, 4, 5, 6], [7, 8, 9]])
    train = train_set(data, max_len=4)
    assert train.users.tolist() == [0]  # a 3-item user has nothing left to train on
    assert train.inputs.tolist() == [[0, 1, 2, 3]] and train.targets.tolist() == [[0, 2, 3, 4]]
    valid, test = eval_set(data, 4, "valid"), eval_set(data, 4, "test")
    assert valid.inputs.tolist() == [[1, 2, 3, 4], [0, 0, 0, 7]] and valid.targets.tolist() == [5, 8]
    assert test.inputs.tolist() == [[2, 3, 4, 5], [0, 0, 7, 8]] and test.targets.tolist() == [6, 9]
    # the masked history is the whole past, not just the max_len window
    assert test.history[test.history_offsets[0] : test.history_offsets[1]].tolist() == [1, 2, 3, 4, 5]
    assert test.history[test.history_offsets[1] : test.history_offsets[2]].tolist() == [7, 8]


def test_train_inputs_truncate_to_max_len():
    data = make([list(range(1, 11))])
    train = train_set(data, max_len=3)
    assert train.inputs.tolist() == [[5, 6, 7]] and train.targets.tolist() == [[6, 7, 8]]
