import gzip
import logging
import re
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from elcrec.data import DataError, build_sequences, read_interactions


def sequences(data):
    return {str(data.user_ids[u]): [str(data.item_ids[i - 1]) for i in data.sequence(u)] for u in range(data.n_users)}


def test_benchmark_format_keeps_order_and_ids(tmp_path):
    path = tmp_path / "b.txt"
    path.write_text("1 3 1 2\n2 2 3 1 3\n\n")
    data = build_sequences(read_interactions(path))
    assert sequences(data) == {"1": ["3", "1", "2"], "2": ["2", "3", "1", "3"]}
    assert data.n_items == 3 and list(data.item_ids) == [1, 2, 3]  # ids 1..n kept as they are


@pytest.mark.parametrize(
    "content, message",
    [
        ("1 2 x\n", "b.txt:1"),
        ("1 2 3\n1 4 5\n", "already has a line"),
        ("\n\n", "no interactions"),
    ],
)
def test_benchmark_errors_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "b.txt"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_interactions(path)


@pytest.mark.parametrize("bad", ["1_0", "+10", "\u0661\u0662", "\uff11"])
def test_benchmark_ids_are_ascii_integers(tmp_path, bad):
    """int() also reads 1_0, +10 and other scripts' digits (١٢): they merged with the items 10 and 12."""
    path = tmp_path / "b.txt"
    path.write_text(f"1 10 12 {bad}\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"b.txt:1: {re.escape(repr(bad))} is not an integer id \(ASCII digits"):
        read_interactions(path)
    path.write_text("1 010 -3 10\n")  # leading zeros and a minus: plain integers
    assert read_interactions(path).items.tolist() == [10, -3, 10]


def test_benchmark_byte_order_mark_and_a_user_without_items(tmp_path, caplog):
    path = tmp_path / "b.txt"
    path.write_bytes("\ufeff1 2 3 4\n5\n6 7 8 9\n".encode())
    with caplog.at_level(logging.WARNING):
        assert sequences(build_sequences(read_interactions(path))) == {"1": ["2", "3", "4"], "6": ["7", "8", "9"]}
    assert "b.txt: dropped 1 user(s) whose line holds no item" in caplog.text


def test_csv_log_with_string_ids_sorted_by_time(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\nu1,apple,30\nu1,pear,10\nu2,fig,5\nu1,kiwi,20\nu2,apple,6\nu2,pear,7\n")
    data = build_sequences(read_interactions(path))
    assert sequences(data) == {"u1": ["pear", "kiwi", "apple"], "u2": ["fig", "apple", "pear"]}
    assert sorted(data.item_ids) == ["apple", "fig", "kiwi", "pear"]


def test_ids_are_integers_only_when_every_id_is_written_as_one(tmp_path):
    """A product code 007 is not the item 7: ids are read as text and become integers only when every one is a
    plain integer (a CSV of integer ids keeps them, as before)."""
    codes = tmp_path / "codes.csv"
    codes.write_text("user_id,item_id,timestamp\n1,007,1\n1,7,2\n1,0070,3\n2,08,1\n2,8,2\n2,7,3\n")
    data = build_sequences(read_interactions(codes))
    assert sequences(data) == {"1": ["007", "7", "0070"], "2": ["08", "8", "7"]}
    assert data.user_ids.dtype == np.int64  # the users are plain integers
    plain = tmp_path / "plain.csv"
    plain.write_text("user_id,item_id,timestamp\n1,5,1\n1,-6,2\n1,0,3\n")
    assert build_sequences(read_interactions(plain)).item_ids.dtype == np.int64
    recbole = tmp_path / "codes.inter"  # its ids are :token fields; a byte-order mark opens the file
    recbole.write_text("\ufeffuser_id:token\titem_id:token\ttimestamp:float\na\t007\t1\na\t7\t2\na\t08\t3\n")
    assert sequences(build_sequences(read_interactions(recbole))) == {"a": ["007", "7", "08"]}


def test_a_header_repeated_inside_the_file_is_named(tmp_path):
    path = tmp_path / "joined.csv"  # cat part-1.csv part-2.csv
    path.write_text("user_id,item_id\n1,5\n1,6\n1,7\nuser_id,item_id\n2,5\n")
    with pytest.raises(DataError, match="data row 4 repeats the header"):
        read_interactions(path, time_col="")


def test_tsv_and_parquet_give_the_same_sequences(tmp_path):
    rows = {"user": [5, 5, 5, 9, 9, 9], "item": [100, 200, 300, 300, 100, 200], "ts": [3, 1, 2, 1, 2, 3]}
    tsv = tmp_path / "log.tsv"
    tsv.write_text("user\titem\tts\n" + "".join(f"{u}\t{i}\t{t}\n" for u, i, t in zip(*rows.values())))
    parquet = tmp_path / "log.parquet"
    pq.write_table(pa.table(rows), parquet)
    kwargs = dict(user_col="user", item_col="item", time_col="ts")
    a = build_sequences(read_interactions(tsv, **kwargs))
    b = build_sequences(read_interactions(parquet, **kwargs))
    assert sequences(a) == sequences(b) == {"5": ["200", "300", "100"], "9": ["300", "100", "200"]}


def test_log_errors(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user,item,timestamp\n1,2,3\n")
    with pytest.raises(DataError, match="missing column"):
        read_interactions(path)
    path.write_text("user_id,item_id,timestamp\n1,2,\n")
    with pytest.raises(DataError, match=r"column 'timestamp' has 1 missing value"):
        read_interactions(path)
    with pytest.raises(DataError, match="no such file"):
        read_interactions(tmp_path / "absent.csv")
    with pytest.raises(DataError, match="cannot tell the format"):
        (tmp_path / "x.dat").write_text("1 2 3\n")
        read_interactions(tmp_path / "x.dat")


@pytest.mark.parametrize("cell", ["", " ", "NA", "null", "NULL", "NaN", "nan", "N/A", "#N/A", "None", "<NA>"])
def test_a_missing_id_in_a_csv_is_an_error_not_an_id(tmp_path, cell):
    """A text file spells a missing value; read as an id it became a user or item named NA."""
    path = tmp_path / "log.csv"
    path.write_text(f"user_id,item_id,timestamp\n1,5,1\n1,{cell},2\n1,7,3\n2,{cell},1\n")
    with pytest.raises(DataError, match=r"log.csv: column 'item_id' has 2 missing value\(s\).*remove those rows"):
        read_interactions(path)


def test_nan_ids_and_times_in_parquet_are_missing_values(tmp_path):
    """pandas stores integer ids with gaps as float64 with NaN: not an item NaN; a NaN time sorted last."""
    path = tmp_path / "log.parquet"
    rows = {"user_id": [1.0, 1.0, 1.0], "item_id": [5.0, 6.0, 7.0], "timestamp": [3.0, 1.0, 2.0]}
    for column in ("item_id", "timestamp"):
        pq.write_table(pa.table({**rows, column: [5.0, np.nan, 7.0]}), path)
        with pytest.raises(DataError, match=rf"column '{column}' has 1 missing value"):
            read_interactions(path)
    pq.write_table(pa.table(rows), path)
    assert sequences(build_sequences(read_interactions(path))) == {"1.0": ["6.0", "7.0", "5.0"]}  # whole floats: ids


def test_spaces_around_csv_ids_are_not_part_of_them(tmp_path):
    """`1, 5` wrote the item " 5", another item than "5", and made the column text."""
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\n1, 5,1\n1,5 ,2\n 1,6,3\n")
    data = build_sequences(read_interactions(path))
    assert sequences(data) == {"1": ["5", "5", "6"]} and data.item_ids.dtype == np.int64 == data.user_ids.dtype
    path.write_text("user_id,item_id,timestamp\n1,007,1\n1, 007,2\n1,7 ,3\n")  # text ids: 007 is still not 7
    assert sequences(build_sequences(read_interactions(path))) == {"1": ["007", "007", "7"]}


def test_ids_of_other_types_and_repeated_columns_are_data_errors(tmp_path):
    path = tmp_path / "log.parquet"
    for values, kind in (
        ([[1], [2], [3]], "list<"),
        ([b"a", b"b", b"c"], "binary"),
        (pa.array([Decimal(1), Decimal(2), Decimal(3)], pa.decimal128(3, 0)), "decimal128(3, 0)"),
        ([True, False, True], "bool"),
    ):
        pq.write_table(pa.table({"user_id": [1, 1, 1], "item_id": values, "timestamp": [1, 2, 3]}), path)
        with pytest.raises(DataError, match=rf"column 'item_id' has type {re.escape(kind)}.*ids must be integers or"):
            read_interactions(path)
    repeated = tmp_path / "log.csv"
    repeated.write_text("user_id,item_id,timestamp,item_id\n1,2,3,4\n")
    with pytest.raises(DataError, match=r"log.csv: column\(s\) \['item_id'\] appear more than once in the header"):
        read_interactions(repeated)


def test_gzipped_csv_and_tsv_are_told_by_the_suffix_before_gz(tmp_path):
    for name, separator in (("log.csv.gz", ","), ("log.tsv.gz", "\t")):
        rows = ["user_id", "item_id", "timestamp"], [1, 5, 3], [1, 6, 1], [1, 7, 2]
        (tmp_path / name).write_bytes(gzip.compress("".join(separator.join(map(str, r)) + "\n" for r in rows).encode()))
        assert sequences(build_sequences(read_interactions(tmp_path / name))) == {"1": ["6", "7", "5"]}
    (tmp_path / "b.txt.gz").write_bytes(gzip.compress(b"1 2 3 4\n"))
    with pytest.raises(DataError, match=r"cannot tell the format from the name; give --data-format"):
        read_interactions(tmp_path / "b.txt.gz")


def test_rechorus_folder_rejoins_the_three_files(tmp_path):
    header = "user_id\titem_id\ttime\n"
    (tmp_path / "train.csv").write_text(header + "1\t10\t1\n1\t11\t2\n2\t12\t1\n2\t10\t2\n")
    (tmp_path / "dev.csv").write_text(header + "1\t12\t3\n2\t11\t3\n")
    (tmp_path / "test.csv").write_text(header + "1\t13\t4\n2\t13\t4\n")
    data = build_sequences(read_interactions(tmp_path))
    assert sequences(data) == {"1": ["10", "11", "12", "13"], "2": ["12", "10", "11", "13"]}


def test_recbole_inter_file(tmp_path):
    path = tmp_path / "ml.inter"
    path.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\na\tx\t5\t3\na\ty\t4\t1\na\tz\t3\t2\n")
    data = build_sequences(read_interactions(path))
    assert sequences(data) == {"a": ["y", "z", "x"]}
    yelp = tmp_path / "yelp.inter"  # RecBole's Yelp names its items business_id
    yelp.write_text("user_id:token\tbusiness_id:token\ttimestamp:float\na\tx\t3\na\ty\t1\na\tz\t2\n")
    assert sequences(build_sequences(read_interactions(yelp, item_col="business_id"))) == {"a": ["y", "z", "x"]}


def test_recbole_time_column_named_but_absent_is_an_error(tmp_path, caplog):
    """A misspelt --time-col is an error as it is for a CSV; without the default column, file order, said so."""
    path = tmp_path / "ml.inter"
    path.write_text("user_id:token\titem_id:token\tts:float\na\tx\t3\na\ty\t1\na\tz\t2\n")
    with pytest.raises(
        DataError, match=r"ml.inter: missing column\(s\) \['time'\]; found \['user_id', 'item_id', 'ts'\]"
    ):
        read_interactions(path, time_col="time")
    assert sequences(build_sequences(read_interactions(path, time_col="ts"))) == {"a": ["y", "z", "x"]}
    with caplog.at_level(logging.INFO, logger="elcrec.data.readers"):
        assert sequences(build_sequences(read_interactions(path))) == {"a": ["x", "y", "z"]}
    assert "no 'timestamp' column: each user's interactions keep file order" in caplog.text


def test_recbole_layout_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: expected one RecBole .inter file in the folder, found 0"):
        read_interactions(tmp_path / "empty", "recbole")
    comma = tmp_path / "comma.inter"
    comma.write_text("user_id:token,item_id:token,timestamp:float\n1,2,3\n")
    with pytest.raises(DataError, match="comma.inter: the header has commas and no tab; RecBole .inter files are tab-"):
        read_interactions(comma)


def test_equal_timestamps_keep_file_order(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\n1,c,0\n1,a,0\n1,b,0\n")
    assert sequences(build_sequences(read_interactions(path))) == {"1": ["c", "a", "b"]}
    assert np.all(build_sequences(read_interactions(path)).lengths == 3)


class RunsCode:
    """A pickle that would run a command when loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def llmesr_folder(root, lines="1 2\n1 1\n2 3\n1 3\n2 1\n2 2\n3 1\n3 2\n3 3\n3 1\n"):
    """LLM-ESR's data/<dataset>/handled/: inter.txt and pickled numpy embeddings (row r = item r + 1)."""
    import pickle

    folder = root / "handled"
    folder.mkdir()
    (folder / "inter.txt").write_text(lines)
    rng = np.random.default_rng(0)
    for name, rows in (("itm_emb_np.pkl", 3), ("usr_emb_np.pkl", 3)):
        with open(folder / name, "wb") as handle:
            pickle.dump(rng.normal(size=(rows, 6)).astype(np.float32), handle)
    return folder


def test_llmesr_layout_keeps_its_ids_so_its_embedding_rows_line_up(tmp_path):
    import pickle

    from elcrec import Config
    from elcrec.data import load_dataset
    from elcrec.data.item_text import item_text_matrix, user_text_matrix

    folder = llmesr_folder(tmp_path)
    data = load_dataset(Config(data=str(folder)))  # the folder's format is told from its inter.txt
    assert sequences(data) == {"1": ["2", "1", "3"], "2": ["3", "1", "2"], "3": ["1", "2", "3", "1"]}
    assert list(data.item_ids) == [1, 2, 3] and list(data.user_ids) == [1, 2, 3]
    assert sequences(build_sequences(read_interactions(folder / "inter.txt"))) == sequences(data)
    with open(folder / "itm_emb_np.pkl", "rb") as handle:
        text = pickle.load(handle)
    np.testing.assert_array_equal(item_text_matrix(str(folder / "itm_emb_np.pkl"), data), text)  # row i: item i + 1
    assert user_text_matrix(str(folder / "usr_emb_np.pkl"), data).shape == (3, 6)


def test_llmesr_layout_refuses_pickled_code_and_gaps_in_ids(tmp_path):
    import pickle

    from elcrec import Config
    from elcrec.data import load_dataset
    from elcrec.data.item_text import user_text_matrix

    folder = llmesr_folder(tmp_path)
    with open(folder / "usr_emb_np.pkl", "wb") as handle:
        pickle.dump(RunsCode(tmp_path / "pwned"), handle)
    with pytest.raises(DataError, match="usr_emb_np.pkl: not a pickle of numpy arrays"):
        user_text_matrix(str(folder / "usr_emb_np.pkl"), load_dataset(Config(data=str(folder))))
    assert not (tmp_path / "pwned").exists()
    (folder / "inter.txt").write_text("1 2\n1 4\n1 2\n")
    with pytest.raises(DataError, match=r"item ids must run 1..4 without a gap.*missing \(e.g. 1, 3\)"):
        read_interactions(folder)
    (folder / "inter.txt").write_text("1 2\n1 0\n")
    with pytest.raises(DataError, match="inter.txt:2: expected 'user item' with ids from 1"):
        read_interactions(folder, "llmesr")
