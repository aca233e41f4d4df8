"""Models keep one contract (see `base.py`); `create_model` makes the one a config names to train on data,
`build_model` the one a saved state dict fits. Each model, what it adds, and the settings it reads (defaults;
a preset may change them, see elcrec.config.PRESETS):

- sasrec: the transformer backbone of METHODS.md alone. hidden_size 64, num_layers 2, num_heads 2, max_len 50,
  dropout 0.5, attn_dropout 0.5, loss bce (one sampled negative per position; ce: softmax over all items).
- cl4srec: sasrec + instance CL between two augmented views. augment random, crop/mask/reorder_ratio
  0.2/0.7/0.2, cl_weight 0.1, temperature 1.0, padding_outputs encoded.
- iclrec: cl4srec + per-epoch k-means intents + PCL. num_clusters 256, intent_cl_weight 0.1, kmeans_iters 20,
  kmeans_restarts 5, pooling all.
- elcrec: cl4srec + learnable centres, cluster loss, intent-assisted CL, PCL. trade_off 1.0, intent_fusion
  concat, cluster_pull all, intent_centering off, elcm on, icl on.
- gru4rec: a GRU over item embeddings, next-item loss. hidden_size, num_layers, dropout, loss.
- bert4rec: a bidirectional transformer, Cloze training with a [MASK] token. cloze_prob 0.2, softmax CE.
- llmesr: LLM-ESR: semantic (frozen text + adapter) and collaborative views on a shared backbone,
  self-distillation, an optional item-cluster constraint; the public code's behaviour by default. item_text
  (required), backbone sasrec, backbone_code public, causal_attention on, user_text '', cross_attention on,
  cross_attention_at embeddings, gru_positions last, distill_weight 0.1, distill_neighbours 10, distill_at last,
  icc none, icc_weight 0.1, icc_clusters 32, icc_centres mean, icc_items inputs; preset llmesr (or beauty,
  fashion, yelp) gives the public scripts' recipe.
- pop: the most-popular baseline, no training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Batch, NextItemRecommender, SequentialRecommender, evaluating, model_device
from .bert4rec import BERT4Rec
from .contrastive import CL4SRec
from .gru4rec import GRU4Rec
from .intent import ELCRec, ICLRec
from .llmesr import LLMESR
from .popularity import Popularity
from .sasrec import SASRec
from .transformer import TransformerEncoder

if TYPE_CHECKING:
    from ..config import Config
    from ..data import SequenceData

MODELS: dict[str, type[SequentialRecommender]] = {
    "sasrec": SASRec,
    "cl4srec": CL4SRec,
    "iclrec": ICLRec,
    "elcrec": ELCRec,
    "gru4rec": GRU4Rec,
    "bert4rec": BERT4Rec,
    "llmesr": LLMESR,
    "pop": Popularity,
}

__all__ = [
    "BERT4Rec",
    "Batch",
    "CL4SRec",
    "ELCRec",
    "GRU4Rec",
    "ICLRec",
    "LLMESR",
    "MODELS",
    "NextItemRecommender",
    "Popularity",
    "SASRec",
    "SequentialRecommender",
    "TransformerEncoder",
    "build_model",
    "create_model",
    "evaluating",
    "model_device",
]


def create_model(config: Config, data: SequenceData) -> SequentialRecommender:
    """A new model of config.model to train on `data` (it reads what it needs besides the sequences)."""
    return MODELS[config.model].create(config, data)


def build_model(config: Config, n_items: int, weights: dict[str, Any] | None = None) -> SequentialRecommender:
    """The model of config.model over n_items items, shaped to fit `weights` (a saved state dict) when given."""
    cls = MODELS[config.model]
    return cls(n_items, config) if weights is None else cls.from_weights(config, n_items, weights)
