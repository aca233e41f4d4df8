"""Readers: each turns a file (or folder) into a flat interaction table with the original ids.

Formats:
- benchmark: one line per user, `user item item ...`, oldest first (the ELCRec/ICLRec files);
- csv / tsv / parquet: an interaction log with user, item and (optional) timestamp columns, any id type;
- rechorus: a folder with train.csv, dev.csv, test.csv (tab-separated user_id, item_id, time);
- recbole: an atomic `.inter` file whose header names fields as `name:type`;
- llmesr: LLM-ESR's `handled/inter.txt` (the file, or the folder holding it), one `user item` line per
  interaction, ids from 1, each user's lines oldest first. Its embedding files (itm_emb_np.pkl, row r = item
  r + 1; usr_emb_np.pkl, row u = user u + 1) are given as item_text and user_text (--item-text, --user-text)
  and read without running pickled code.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

LLMESR_FILE = "inter.txt"
DEFAULT_TIME_COL = "timestamp"
# how text files (and pandas' astype(str)) write a missing id; compared in lower case after trimming
MISSING_TEXTS = ("", "na", "n/a", "#n/a", "#na", "nan", "-nan", "null", "none", "<na>")
_INTEGER = re.compile(r"-?[0-9]+")  # ASCII digits: int() also takes 1_0, +10 and other scripts' digits


class DataError(ValueError):
    """A data file cannot be read as asked; the message names the file and, where it can, the line."""


@dataclass
class Interactions:
    users: Any  # original user ids: a numpy array, or a pyarrow array for string ids (no Python objects)
    items: Any  # original item ids, the same
    times: np.ndarray  # sort key within a user (timestamps, or the file order)
    source: str

    def __post_init__(self) -> None:  # Python lists and tuples, as a caller builds them: the arrays readers make
        self.users, self.items = (np.asarray(v) if isinstance(v, list | tuple) else v for v in (self.users, self.items))
        self.times = np.asarray(self.times)


def read_interactions(
    path: str | Path,
    data_format: str = "auto",
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str = DEFAULT_TIME_COL,
) -> Interactions:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    data_format = detect_format(path) if data_format == "auto" else data_format
    try:
        return _read(path, data_format, user_col, item_col, time_col)
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (byte {error.start}); is it the {data_format} format?") from None


def _read(path: Path, data_format: str, user_col: str, item_col: str, time_col: str) -> Interactions:
    if data_format == "benchmark":
        return read_benchmark(path)
    if data_format in ("csv", "tsv", "parquet"):
        return read_log(path, data_format, user_col, item_col, time_col)
    if data_format == "rechorus":
        return read_rechorus(path)
    if data_format == "recbole":
        return read_recbole(path, user_col, item_col, time_col)
    if data_format == "llmesr":
        return read_llmesr(path)
    raise DataError(f"{path}: unknown data format {data_format!r}")


def detect_format(path: Path) -> str:
    if path.is_dir():
        if (path / "train.csv").is_file():
            return "rechorus"
        inter = sorted(path.glob("*.inter"))
        if len(inter) == 1:
            return "recbole"
        if (path / LLMESR_FILE).is_file():
            return "llmesr"
        raise DataError(
            f"{path}: a folder must hold ReChorus train/dev/test.csv, one RecBole .inter file or LLM-ESR's "
            f"{LLMESR_FILE}"
        )
    if path.name == LLMESR_FILE:
        return "llmesr"
    by_suffix = {".txt": "benchmark", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".inter": "recbole"}
    if path.suffix.lower() == ".gz":  # pyarrow reads gzip CSV/TSV; the other readers do not
        by_suffix = {".csv": "csv", ".tsv": "tsv"}
    if _suffix(path) in by_suffix:
        return by_suffix[_suffix(path)]
    raise DataError(f"{path}: cannot tell the format from the name; give --data-format (data_format in Python)")


def _suffix(path: Path) -> str:
    """The suffix that names the format, lower case: the one before .gz for a gzipped file."""
    return Path(path.stem).suffix.lower() if path.suffix.lower() == ".gz" else path.suffix.lower()


def read_benchmark(path: Path) -> Interactions:
    users: list[int] = []
    items: list[int] = []
    positions: list[int] = []
    first_line: dict[int, int] = {}
    blank = no_items = 0
    with open(path, encoding="utf-8-sig") as handle:  # a byte-order mark is not part of the first id
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                blank += 1  # blank lines carry nothing
                continue
            if not all(map(_is_int, fields)):
                bad = next(f for f in fields if not _is_int(f))
                hint = "; a CSV file? give --data-format csv (data_format='csv' in Python)" if "," in bad else ""
                raise DataError(
                    f"{path}:{number}: {bad!r} is not an integer id (ASCII digits, '-' before them at most; "
                    f"expected 'user item item ...'{hint})"
                )
            ids = [int(f) for f in fields]
            if max(ids) >= 2**63 or min(ids) < -(2**63):
                bad = next(f for f, i in zip(fields, ids) if not -(2**63) <= i < 2**63)
                raise DataError(f"{path}:{number}: the id {bad} does not fit in 64 bits")
            user = ids[0]
            if user in first_line:
                raise DataError(f"{path}:{number}: user {user} already has a line ({first_line[user]})")
            first_line[user] = number
            no_items += len(ids) == 1
            users.extend([user] * (len(ids) - 1))
            items.extend(ids[1:])
            positions.extend(range(len(ids) - 1))
    if not items:
        raise DataError(f"{path}: no interactions found (expected lines 'user item item ...')")
    if blank:
        log.warning("%s: skipped %d blank line(s)", path, blank)
    if no_items:
        log.warning("%s: dropped %d user(s) whose line holds no item", path, no_items)
    return Interactions(np.array(users), np.array(items), np.array(positions), str(path))


def _is_int(text: str) -> bool:
    return _INTEGER.fullmatch(text) is not None


def read_table(
    path: Path,
    data_format: str,
    *,
    string_columns: tuple[str, ...] = (),
    column_names: list[str] | None = None,
    newlines_in_values: bool = False,
) -> Any:
    """A CSV, TSV or Parquet file as a pyarrow table (`column_names`: the CSV's header line is replaced by them;
    `string_columns` are read as text, so ids such as 007 keep their zeros); unreadable is a DataError."""
    import pyarrow as pa

    try:
        if data_format == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        import pyarrow.csv as pacsv

        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=column_names, skip_rows=1 if column_names else 0),
            parse_options=pacsv.ParseOptions(
                delimiter="\t" if data_format == "tsv" else ",", newlines_in_values=newlines_in_values
            ),
            convert_options=pacsv.ConvertOptions(column_types={name: pa.string() for name in string_columns}),
        )
    except (pa.ArrowInvalid, OSError) as error:
        raise DataError(f"{path}: cannot read as {data_format}: {error}") from None


def table_format(path: Path) -> str:
    """csv, tsv or parquet, by the file's suffix (csv for any other)."""
    return {".parquet": "parquet", ".tsv": "tsv"}.get(_suffix(path), "csv")


def read_log(path: Path, data_format: str, user_col: str, item_col: str, time_col: str) -> Interactions:
    return _from_table(
        read_table(path, data_format, string_columns=(user_col, item_col)), str(path), user_col, item_col, time_col
    )


def _from_table(table, source: str, user_col: str, item_col: str, time_col: str) -> Interactions:
    needed = [user_col, item_col] + ([time_col] if time_col else [])
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        separator = next(
            (sep for sep in (";", "\t", ",", "|") if len(table.column_names) == 1 and sep in table.column_names[0]),
            None,
        )
        hint = f"; the header seems separated by {separator!r}: use that format or fix the file" if separator else ""
        raise DataError(
            f"{source}: missing column(s) {missing}; found {table.column_names} "
            f"(set user_col / item_col / time_col){hint}"
        )
    repeated = [c for c in dict.fromkeys(needed) if table.column_names.count(c) > 1]
    if repeated:
        raise DataError(
            f"{source}: column(s) {repeated} appear more than once in the header; rename or drop the copies"
        )
    if table.num_rows == 0:
        raise DataError(f"{source}: no interactions found")
    columns = {name: id_column(table.column(name), name, source) for name in (user_col, item_col)}
    _refuse_repeated_header(columns[user_col], columns[item_col], source, user_col, item_col)
    if time_col:
        columns[time_col] = table.column(time_col)
    for name, column in columns.items():
        absent = missing_count(column)
        if absent:
            raise DataError(
                f"{source}: column {name!r} has {absent} missing value(s) (empty, NA, NaN, null, None, ...): "
                "remove those rows"
            )
    users, items = (typed_ids(columns[name]) for name in (user_col, item_col))
    times = columns[time_col].to_numpy(zero_copy_only=False) if time_col else np.arange(table.num_rows)
    if times.dtype.kind not in "iufM":
        raise DataError(
            f"{source}: time column {time_col!r} must be numeric or a timestamp, got {table.column(time_col).type}"
        )
    return Interactions(users, items, times, source)


def id_column(column, name: str, source: str):
    """An id column as integers, floats or text (trimmed: " 5" is the id 5, as in a CSV written `1, 5`);
    dictionaries are decoded; any other type is a DataError."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if is_text(column.type):
        return pc.utf8_trim_whitespace(column)
    if not _is_numeric(column.type):
        raise DataError(f"{source}: column {name!r} has type {column.type}; ids must be integers or text")
    return column


def missing_count(column) -> int:
    """Nulls, NaN, and the texts that spell a missing value (a CSV has no other way to write one)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_floating(column.type):
        spelled = pc.is_nan(column)
    elif is_text(column.type):
        spelled = pc.is_in(pc.utf8_lower(column), value_set=pa.array(MISSING_TEXTS))
    else:
        return column.null_count
    return column.null_count + (pc.sum(spelled).as_py() or 0)


def typed_ids(column):
    """An id column as its file writes it: integers when every id is written as one (no leading zero, at most 18
    digits), text otherwise, so 007 and 7 stay two items. Numbers become a numpy array, text stays pyarrow's."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not is_text(column.type):
        return column.to_numpy()
    if pc.all(pc.match_substring_regex(column, r"^-?(0|[1-9][0-9]{0,17})$")).as_py():
        return pc.cast(column, pa.int64()).to_numpy()
    return column


def _refuse_repeated_header(users, items, source: str, user_col: str, item_col: str) -> None:
    """Files joined with their header lines (cat part-*.csv) hold the header again as a row: an error, not a user
    named user_id."""
    import pyarrow.compute as pc

    if not (is_text(users.type) and is_text(items.type)):
        return
    repeated = pc.and_(pc.equal(users, user_col), pc.equal(items, item_col))
    if pc.any(repeated).as_py():
        row = pc.index(repeated, True).as_py()
        raise DataError(
            f"{source}: data row {row + 1} repeats the header ({user_col}, {item_col}): files joined with their "
            "header lines? Keep the first header only"
        )


def is_text(arrow_type) -> bool:
    import pyarrow as pa

    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def _is_numeric(arrow_type) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)


def read_rechorus(folder: Path) -> Interactions:
    """ReChorus keeps the last two items of each user in dev/test; we rejoin the three files and re-split."""
    import pyarrow as pa

    tables = []
    for part in ("train", "dev", "test"):
        file = folder / f"{part}.csv"
        if not file.is_file():
            raise DataError(f"{folder}: missing {part}.csv of the ReChorus layout")
        table = read_table(file, "tsv", string_columns=("user_id", "item_id"))
        missing = {"user_id", "item_id", "time"} - set(table.column_names)
        if missing:
            raise DataError(f"{file}: missing column(s) {sorted(missing)}")
        tables.append(table.select(["user_id", "item_id", "time"]))
    return _from_table(pa.concat_tables(tables), str(folder), "user_id", "item_id", "time")


def read_recbole(
    path: Path, user_col: str = "user_id", item_col: str = "item_id", time_col: str = DEFAULT_TIME_COL
) -> Interactions:
    """A RecBole atomic .inter file: its header's `name:type` fields, the columns named as a log's are (RecBole's
    own names by default); without the default time column, file order (a time column named otherwise must be
    there)."""
    if path.is_dir():
        found = sorted(path.glob("*.inter"))
        if len(found) != 1:
            listed = f" ({', '.join(f.name for f in found)})" if found else ""
            raise DataError(f"{path}: expected one RecBole .inter file in the folder, found {len(found)}{listed}")
        path = found[0]
    with open(path, encoding="utf-8-sig") as handle:  # a byte-order mark is not part of the first name
        header = handle.readline().rstrip("\n").split("\t")
    if len(header) == 1 and "," in header[0]:
        raise DataError(f"{path}: the header has commas and no tab; RecBole .inter files are tab-separated")
    names = [h.split(":")[0] for h in header]
    if time_col == DEFAULT_TIME_COL and time_col not in names:
        log.info("%s: no %r column: each user's interactions keep file order", path, time_col)
        time_col = ""
    table = read_table(path, "tsv", string_columns=(user_col, item_col), column_names=names)
    return _from_table(table, str(path), user_col, item_col, time_col)


def read_llmesr(path: Path) -> Interactions:
    """LLM-ESR's inter.txt (generators/generator.py reads it so). Its embedding files index rows by these ids,
    so users and items must each run 1..n without a gap (elcrec's own numbering then keeps them)."""
    file = path / LLMESR_FILE if path.is_dir() else path
    if not file.is_file():
        raise DataError(f"{path}: no {LLMESR_FILE} (LLM-ESR's data/<dataset>/handled/ layout)")
    pairs: list[tuple[int, int]] = []
    with open(file, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or not all(_is_int(f) and int(f) >= 1 for f in fields):
                raise DataError(f"{file}:{number}: expected 'user item' with ids from 1, got {line.strip()[:80]!r}")
            pairs.append((int(fields[0]), int(fields[1])))
    if not pairs:
        raise DataError(f"{file}: no interactions found (expected lines 'user item')")
    users, items = np.array(pairs).T
    for name, ids in (("user", users), ("item", items)):
        missing = np.setdiff1d(np.arange(1, ids.max() + 1), ids)
        if len(missing):
            raise DataError(
                f"{file}: {name} ids must run 1..{ids.max()} without a gap, as LLM-ESR's embedding rows are "
                f"indexed by them; {len(missing):,} missing (e.g. {', '.join(map(str, missing[:5]))})"
            )
    return Interactions(users, items, np.arange(len(pairs)), str(file))
