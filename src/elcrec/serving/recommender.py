"""Score any user's history with a trained run: original item ids in, original item ids out.

    rec = Recommender.load("runs/elcrec-Beauty-seed1")  # a run folder or an exported artefact
    rec.recommend([["12", "7", "99"], ["5"]], k=10)      # [{"items": [...], "scores": [...], "unknown": []}, ...]
    rec.recommend(["12", "7", "99"])                     # one flat history: a list of one result
    rec.intents([["12", "7", "99"]])                     # [{"intent": 3, "distance": 0.41, "unknown": []}]

`intents` answers for iclrec and elcrec. Histories are oldest first; only the last max_len items are read.
They come as people hold them (see `as_histories`): lists or tuples of ids, numpy arrays, pandas or polars
Series, one history or several. Ids are looked up by their text, so 5, np.int64(5), 5.0 and "5" are the same
item. Items the model never saw are `unknown`: dropped and reported (unknown="ignore") or an error
(unknown="reject"). Ranking is exact (a matmul over the whole catalogue, then top-k) unless `index="faiss"`,
which searches an inner-product HNSW index of the item table: approximate, for catalogues in the millions
(benchmarks/serve_load.py measures its recall against exact).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import PATH_SETTINGS
from ..data import SequenceData, pad_left
from ..models import model_device
from ..models.intent import IntentModel
from ..runs import Run, load_run

UNKNOWN_POLICIES = ("ignore", "reject")
INDEXES = ("exact", "faiss")
DEFAULT_K = 10  # items returned when k is not given (Recommender.default_k)
MAX_EF_SEARCH = 2**31 - 1  # faiss stores it as a C int
# several histories or one flat history: lists, tuples, numpy arrays, pandas or polars Series (read without importing
# either package)
Histories = Any


class HistoryError(ValueError):
    """A history cannot be scored (not a sequence of ids, empty, only unknown items, unknown items under
    unknown='reject')."""


def as_histories(histories: Histories) -> list[list]:
    """Each history of `histories` as a list of item ids. Several histories: a list or tuple of them, a 2-D
    numpy array (a row each), a 1-D object array or a Series of sequences. One history: a flat list or tuple
    of ids, a 1-D numpy array, a pandas or polars Series of ids. Numpy arrays and Series give Python scalars.
    A string is an error, not a history of characters; so is a mix of ids and sequences."""
    if isinstance(histories, (str, bytes, bytearray)):
        raise HistoryError(f"a history is a sequence of item ids, not a string: {_preview([histories[:80]])}")
    outer = _sequence(histories)
    if outer is None or (isinstance(histories, np.ndarray) and histories.ndim > 2):
        shape = f" of shape {histories.shape}" if isinstance(histories, np.ndarray) else ""
        raise HistoryError(
            f"histories: give a history (a list, tuple, 1-D numpy array or Series of item ids) or "
            f"several (a list of them, a 2-D array); got {type(histories).__name__}{shape}"
        )
    inner = [_sequence(value) for value in outer]
    if outer and all(items is not None for items in inner):
        return inner
    if all(items is None for items in inner):
        return [outer]
    nested = [n for n, items in enumerate(inner) if items is not None]
    raise HistoryError(
        f"histories mix item ids and sequences (at {_preview(nested)}): give one history (a "
        "sequence of ids) or a list of histories"
    )


def _sequence(value: Any) -> list | None:
    """The elements of a sequence (list, tuple, numpy array of 1+ dimensions, pandas or polars Series), None for
    anything else, which is an item id: a string included."""
    if isinstance(value, list):
        return value
    if isinstance(value, (str, bytes, bytearray)):
        return None
    if isinstance(value, np.ndarray):
        return value.tolist() if value.ndim else None  # Python scalars: np.int64(5) becomes 5
    if isinstance(value, Sequence):
        return list(value)
    module = type(value).__module__.partition(".")[0]
    if module == "pandas":  # imported only for their own objects: neither is a dependency
        import pandas

        return value.tolist() if isinstance(value, pandas.Series) else None
    if module == "polars":
        import polars

        return value.to_list() if isinstance(value, polars.Series) else None
    return None


class Recommender:
    """A loaded run that answers recommendation and intent queries, batched, on the run's device."""

    def __init__(self, run: Run, index: str = "exact", ef_search: int = 256) -> None:
        if index not in INDEXES:
            raise ValueError(f"index={index!r}: choose {' or '.join(INDEXES)}")
        if index == "faiss" and not hasattr(run.model, "item_table"):
            raise ValueError(f"index=faiss needs an item embedding table; model {run.config.model!r} has none")
        integer = not isinstance(ef_search, bool) and isinstance(ef_search, numbers.Integral)
        if not integer or not 1 <= ef_search <= MAX_EF_SEARCH:
            raise ValueError(f"ef_search={ef_search!r}: choose an integer 1..{MAX_EF_SEARCH}")
        self.run = run
        self.model = run.model.eval()
        self.config = run.config
        self.device = model_device(self.model)
        self.item_ids = run.item_ids
        self.internal = {id_text(item): i + 1 for i, item in enumerate(run.item_ids)}
        self.n_items = len(run.item_ids)
        self.has_intents = isinstance(self.model, IntentModel)
        self.index = self._faiss_index(ef_search) if index == "faiss" else None
        self._read: tuple[str | None, SequenceData] | None = None  # (path or None: the run's own, the data read)
        # (data, row of each user id) for the last data checked against the run's fingerprint, checked once
        self._users: tuple[SequenceData, dict[str, int]] | None = None

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", index: str = "exact", ef_search: int = 256) -> Recommender:
        return cls(load_run(path, device), index=index, ef_search=ef_search)

    @property
    def default_k(self) -> int:
        """The k of a query that gives none: DEFAULT_K, or every item of a smaller catalogue."""
        return min(DEFAULT_K, self.n_items)

    def metadata(self) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "data": self.config.data_name,
            "n_items": self.n_items,
            "max_len": self.config.max_len,
            "has_intents": self.has_intents,
            "index": "exact" if self.index is None else "faiss",
            "config": {  # files by name: where they lie on the server is not the client's business
                name: Path(value).name if name in PATH_SETTINGS and value not in ("", "synthetic") else value
                for name, value in self.config.to_dict().items()
            },
        }

    def parse(self, histories: Histories, unknown: str = "ignore") -> tuple[list[np.ndarray], list[list]]:
        """Internal ids of each history's known items, and each history's unknown items (`as_histories` reads
        `histories`)."""
        if unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"unknown={unknown!r}: choose ignore or reject")
        known, missing = [], []
        for n, history in enumerate(as_histories(histories)):
            ids = [self.internal.get(id_text(item), 0) for item in history]
            missing.append([item for item, i in zip(history, ids) if i == 0])
            if not history:
                raise HistoryError(f"history {n} is empty: give at least one item")
            if missing[-1] and unknown == "reject":
                raise HistoryError(f"history {n} has items the model does not know: {_preview(missing[-1])}")
            if len(missing[-1]) == len(history):
                raise HistoryError(f"history {n} has no item the model knows: {_preview(missing[-1])}")
            known.append(np.array([i for i in ids if i], dtype=np.int64))
        return known, missing

    def _inputs(self, known: list[np.ndarray], width: int) -> torch.Tensor:
        """Right-aligned, left-padded [B, width] batch of the last `width` items of each history."""
        lengths = np.array([len(items) for items in known])
        ends = np.cumsum(lengths)
        return torch.from_numpy(pad_left(np.concatenate(known), ends - lengths, ends, width)).to(self.device)

    @torch.no_grad()
    def recommend(
        self, histories: Histories, k: int | None = None, exclude_seen: bool = True, unknown: str = "ignore"
    ) -> list[dict[str, list]]:
        """Top-k items per history (k: DEFAULT_K, or every item of a smaller catalogue, when not given): original
        ids, scores (best first), and the history's unknown items.
        `histories`: several, or one flat history (a list of ids, a 1-D array, a Series), which gives a list of
        one result, as a list of that one history does (see `as_histories`)."""
        known, missing = self.parse(histories, unknown)
        return [{**top, "unknown": absent} for top, absent in zip(self._top(known, k, exclude_seen), missing)]

    @torch.no_grad()
    def recommend_users(
        self,
        user_ids: Any,
        k: int | None = None,
        exclude_seen: bool = True,
        data: SequenceData | str | os.PathLike | None = None,
    ) -> list[dict[str, Any]]:
        """Top-k items (k as for `recommend`) for users of the run's data (original user ids: one or a sequence),
        each from every item the data holds for them, held-out ones included: what to show them next. `data`
        (a dataset, or its path, read with the run's settings) defaults to the run's own; either is read once
        and checked against the run's fingerprint."""
        data = self.training_data(data)
        ids = _sequence(user_ids)
        ids = [user_ids] if ids is None else ids
        rows = [self._users[1].get(id_text(user)) for user in ids]
        unknown = [user for user, row in zip(ids, rows) if row is None]
        if unknown:
            raise HistoryError(f"users not in {data.name}: {_preview(unknown)}")
        tops = self._top([data.sequence(row) for row in rows], k, exclude_seen)
        originals = data.user_ids[rows].tolist()  # the data's own ids, typed as the data has them ("7" -> 7)
        return [{"user": user, **top} for user, top in zip(originals, tops)]

    def training_data(self, data: SequenceData | str | os.PathLike | None = None) -> SequenceData:
        """`data` (a dataset, or a path read with the run's settings), or the data the run was trained on (its
        `data` setting); a path is read once while it is the last asked for; either must match the run's
        fingerprint (checked once per dataset, not at every batch of users)."""
        if not isinstance(data, SequenceData):
            source = None if data is None else os.fspath(data)
            if self._read is None or self._read[0] != source:
                self._read = (source, self.run.load_data(source))
            data = self._read[1]
        if self._users is None or self._users[0] is not data:
            self.run.check_data(data)
            self._users = (data, {id_text(user): n for n, user in enumerate(data.user_ids.tolist())})
        return data

    def _top(self, known: list[np.ndarray], k: int | None, exclude_seen: bool) -> list[dict[str, list]]:
        """Top-k original item ids and scores for each history of internal ids."""
        k = self.default_k if k is None else k
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= self.n_items:
            raise ValueError(f"k={k!r}: choose an integer 1..{self.n_items}")
        if not known:
            return []
        inputs = self._inputs(known, min(max(len(items) for items in known), self.config.max_len))
        if self.index is not None:
            scores, columns = self._search(inputs, known, k, exclude_seen)
        else:
            all_scores = self.model.score(inputs).float()
            all_scores.nan_to_num_(nan=-math.inf, posinf=-math.inf, neginf=-math.inf)  # a broken score ranks last
            if exclude_seen:
                rows = torch.from_numpy(np.repeat(np.arange(len(known)), [len(items) for items in known]))
                seen = torch.from_numpy(np.concatenate(known) - 1)
                all_scores[rows.to(self.device), seen.to(self.device)] = float("-inf")
            top = torch.topk(all_scores, k, dim=1)
            scores, columns = top.values.cpu().numpy(), top.indices.cpu().numpy()
        results = []
        for row in range(len(known)):
            keep = np.isfinite(scores[row])  # fewer than k items are left when the history covers the catalogue
            results.append({"items": self.item_ids[columns[row][keep]].tolist(), "scores": scores[row][keep].tolist()})
        return results

    @torch.no_grad()
    def intents(self, histories: Histories, unknown: str = "ignore") -> list[dict[str, Any]]:
        """Nearest intent (centre index) and the distance to it, per history; one flat history gives a list of
        one result (see `as_histories`)."""
        if not self.has_intents:
            raise ValueError(f"model {self.config.model!r} has no intents (train iclrec or elcrec)")
        known, missing = self.parse(histories, unknown)
        # intents pool over the full max_len window, padding included
        intent, distance = self.model.assign(self._inputs(known, self.config.max_len))
        return [
            {"intent": int(i), "distance": float(d), "unknown": absent}
            for i, d, absent in zip(intent.tolist(), distance.tolist(), missing)
        ]

    def _faiss_index(self, ef_search: int):
        """HNSW (M 32) over the item table, inner product; a larger ef_search trades speed for recall."""
        import faiss

        table = self.model.item_table[1:].detach().float().cpu().numpy()
        index = faiss.IndexHNSWFlat(table.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = ef_search
        index.add(np.ascontiguousarray(table))
        return index

    def _search(
        self, inputs: torch.Tensor, known: list[np.ndarray], k: int, exclude_seen: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        users = self.model.encode(inputs).float().cpu().numpy()
        extra = max(len(items) for items in known) if exclude_seen else 0
        scores, columns = self.index.search(np.ascontiguousarray(users), min(k + extra, self.n_items))
        out_scores = np.full((len(known), k), -np.inf, dtype=np.float32)
        out_columns = np.zeros((len(known), k), dtype=np.int64)
        for row, items in enumerate(known):
            keep = columns[row] >= 0
            if exclude_seen:
                keep &= ~np.isin(columns[row], items - 1)
            chosen = np.flatnonzero(keep)[:k]
            out_scores[row, : len(chosen)] = scores[row, chosen]
            out_columns[row, : len(chosen)] = columns[row, chosen]
        return out_scores, out_columns


def id_text(value: Any) -> str:
    """The text an id is looked up by: 5, np.int64(5), "5" and 5.0 (a float column, such as pandas makes of ids
    with gaps) are all "5"."""
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _preview(items: list, limit: int = 10) -> str:
    shown = ", ".join(repr(item) for item in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
