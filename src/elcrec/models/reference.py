"""Import a checkpoint of the reference ELCRec/ICLRec code (a plain state dict) onto our encoder.

The reference item table has n_items + 2 rows: 0 padding, 1..n items (the benchmark file's ids),
n + 1 an unused mask id. We keep rows 0..n and drop the mask row; it is never ranked here (the reference
ranks it; on the public Beauty checkpoint that changes no reported digit). When the dataset's original
ids are not 1..n in order, rows are permuted so that each internal id gets its original id's row.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from ..config import Config
from . import build_model
from .sasrec import SASRec

_BLOCK_NAMES = {
    "attention.query": "query",
    "attention.key": "key",
    "attention.value": "value",
    "attention.dense": "dense",
    "attention.LayerNorm": "attn_norm",
    "intermediate.dense_1": "dense_1",
    "intermediate.dense_2": "dense_2",
    "intermediate.LayerNorm": "ffn_norm",
}
_BLOCK_KEY = re.compile(r"item_encoder\.layer\.(\d+)\.(\w+\.\w+)\.(weight|bias)")


def import_reference(
    path: str | Path, item_ids: np.ndarray | None = None, num_heads: int = 2, **config_values
) -> tuple[SASRec, Config, list[str]]:
    """Returns the model (eval mode), its config, and the reference keys not carried over.

    A checkpoint with `cluster_centers` becomes an ELCRec model (K from its shape), otherwise SASRec.
    `item_ids`: the dataset's original id of each internal id (SequenceData.item_ids); None means 1..n.
    `config_values`: further settings (preset, intent_fusion, ...) the state dict does not record.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated file, another format, pickled objects weights_only refuses
        raise ValueError(
            f"{path} cannot be read as a state dict ({error.__class__.__name__}: {str(error)[:120]})"
        ) from None
    needed = ("item_embeddings.weight", "position_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias")
    if not isinstance(state, dict) or not all(isinstance(state.get(key), torch.Tensor) for key in needed):
        raise ValueError(f"{path}: not a reference ELCRec/ICLRec state dict (it needs {', '.join(needed)})")
    table = state["item_embeddings.weight"]
    n_items = table.shape[0] - 2
    max_len, hidden = state["position_embeddings.weight"].shape
    layers = 1 + max((int(m.group(1)) for k in state if (m := _BLOCK_KEY.fullmatch(k))), default=-1)
    if item_ids is None:
        item_ids = np.arange(1, n_items + 1)
    rows = np.asarray(item_ids).astype(np.int64)
    if rows.min() < 1 or rows.max() != n_items:  # the reference sizes the table by its data's largest item id
        raise ValueError(
            f"the data's item ids span {rows.min()}..{rows.max()}, but the checkpoint was trained on data whose ids "
            f"go up to {n_items} (its table has {n_items} + 2 rows): it belongs to other data"
        )

    ours = {
        "encoder.item_embeddings.weight": torch.cat([table[:1], table[torch.from_numpy(rows)]]),
        "encoder.position_embeddings.weight": state["position_embeddings.weight"],
        "encoder.norm.weight": state["LayerNorm.weight"],
        "encoder.norm.bias": state["LayerNorm.bias"],
    }
    carried = {"item_embeddings.weight", "position_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias"}
    for key, value in state.items():
        if match := _BLOCK_KEY.fullmatch(key):
            block, name, kind = match.groups()
            if name in _BLOCK_NAMES:
                ours[f"encoder.blocks.{block}.{_BLOCK_NAMES[name]}.{kind}"] = value
                carried.add(key)
    shape = dict(hidden_size=hidden, num_layers=layers, num_heads=num_heads, max_len=max_len)
    if "cluster_centers" in state:
        ours["cluster_centers"] = state["cluster_centers"]
        carried.add("cluster_centers")
        shape.update(model="elcrec", num_clusters=state["cluster_centers"].shape[0])
    config = Config.from_dict({**config_values, **shape})
    model = build_model(config, len(rows))
    try:
        model.load_state_dict(ours)  # strict: every parameter of ours must come from the checkpoint
    except RuntimeError as error:
        raise ValueError(
            f"{path} does not fit a {config.model} model with {layers} block(s) and {num_heads} heads: "
            f"{str(error).splitlines()[-1].strip()[:200]}"
        ) from None
    return model.eval(), config, sorted(set(state) - carried)
