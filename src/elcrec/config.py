"""One typed configuration for a run: defaults here, values from a YAML/TOML file, then flags.

Every field is documented in its metadata; `elcrec train --help` shows the same text. Unknown keys,
wrong types and out-of-range values are errors raised before any data is read.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import numbers
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHOICES = {
    "data_format": ("auto", "benchmark", "csv", "tsv", "parquet", "rechorus", "recbole", "llmesr"),
    "dedup": ("none", "all", "consecutive"),
    "model": ("sasrec", "cl4srec", "iclrec", "elcrec", "gru4rec", "bert4rec", "llmesr", "pop"),
    "backbone": ("sasrec", "gru4rec", "bert4rec"),
    "backbone_code": ("public", "library"),
    "cross_attention_at": ("embeddings", "outputs"),
    "gru_positions": ("last", "all"),
    "distill_at": ("last", "mask"),
    "icc_items": ("inputs", "targets"),
    "icc": ("none", "kmeans", "hdbscan"),
    "icc_centres": ("mean", "learned"),
    "augment": ("random", "crop", "mask", "reorder"),
    "intent_fusion": ("shift", "concat"),
    "pooling": ("all", "items"),
    "padding_outputs": ("encoded", "zero"),
    "cluster_pull": ("all", "nearest"),
    "centres_without_elcm": ("initial", "every_epoch"),
    "preset": ("", "beauty", "sports", "toys", "yelp", "fashion", "llmesr"),
    "loss": ("bce", "ce"),
    "mask_history": ("none", "exclude", "reference"),
    "long_tail": ("share", "thresholds"),
    "device": ("auto", "cpu", "cuda"),
    "engine": ("fast", "reference"),
    "amp": ("none", "bf16", "fp16", "auto"),
    "lr_schedule": ("constant", "cosine"),
    "recipe": ("faithful", "fast"),
    "tracking": ("none", "tensorboard", "mlflow"),
}


# The papers' per-dataset settings, by model. ELCRec's come from its scripts and main.py (depth, K, trade_off,
# fusion by dataset); ICLRec's from its own scripts (the same depths, K = 256 on every dataset); CL4SRec takes
# the depths of the scripts it is compared in; BERT4Rec its paper's Beauty setting (mask proportion 0.6,
# dropout 0.1; the other three are as sparse); GRU4Rec its paper's one layer. SASRec keeps the defaults (its
# paper's 2 blocks, dropout 0.5 on sparse data). A preset fills the keys it names for the run's model unless
# they are given (a file, a flag, a keyword) or the recipe names them; the resolved values are printed and saved
# with the run.
_DEPTHS = {"beauty": 1, "sports": 2, "toys": 3, "yelp": 2}
_ELCREC = {
    "beauty": {"num_clusters": 256, "trade_off": 10.0, "intent_fusion": "shift"},
    "sports": {"num_clusters": 512, "trade_off": 1.0, "intent_fusion": "concat"},
    "toys": {"num_clusters": 512, "trade_off": 1.0, "intent_fusion": "concat"},
    "yelp": {"num_clusters": 256, "trade_off": 0.1, "intent_fusion": "concat"},
}
# LLM-ESR's come from its scripts (experiments/{beauty,fashion,yelp}.bash) and the main.py defaults they keep:
# max_len 200, batch 128, 200 epochs, patience 20 on validation NDCG@10 over 100 sampled negatives, 2 blocks of 1
# head (the GRU: 1 layer), dropout 0.5, mask proportion 0.6 for BERT4Rec, the neighbours encoded at every step
# (engine=reference), and its long-tail groups, whose thresholds are the only per-dataset settings. preset=llmesr
# gives the recipe with main.py's default thresholds, for any dataset. "<model>/<backbone>" entries add to the
# model's for that backbone.
_LLMESR = {
    "llmesr": {
        "max_len": 200,
        "batch_size": 128,
        "epochs": 200,
        "patience": 20,
        "metric": "NDCG@10",
        "sampled_negatives": 100,
        "num_layers": 2,
        "num_heads": 1,
        "dropout": 0.5,
        "attn_dropout": 0.5,
        "engine": "reference",
        "long_tail": "thresholds",
    },
    "llmesr/bert4rec": {"cloze_prob": 0.6},
    "llmesr/gru4rec": {"num_layers": 1},
}
_LLMESR_THRESHOLDS = {"beauty": (9, 4), "fashion": (3, 4), "yelp": (12, 13)}  # ts_user, ts_item
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    **{
        dataset: {
            "elcrec": {"num_layers": depth, **_ELCREC[dataset]},
            "iclrec": {"num_layers": depth, "num_clusters": 256},
            "cl4srec": {"num_layers": depth},
            "bert4rec": {"cloze_prob": 0.6, "dropout": 0.1, "attn_dropout": 0.1},
            "gru4rec": {"num_layers": 1},
        }
        for dataset, depth in _DEPTHS.items()
    },
    "fashion": {},
    "llmesr": dict(_LLMESR),
}
for _dataset, (_users, _items) in _LLMESR_THRESHOLDS.items():
    PRESETS[_dataset].update(_LLMESR)
    PRESETS[_dataset]["llmesr"] = {**_LLMESR["llmesr"], "short_user_threshold": _users, "tail_item_threshold": _items}


def preset_values(preset: str, model: str, backbone: str = "sasrec") -> dict[str, Any]:
    """The settings `preset` gives `model` on `backbone` ({} for no preset, or a model it has nothing for)."""
    values = PRESETS.get(preset, {})
    return {**values.get(model, {}), **values.get(f"{model}/{backbone}", {})}


# Training recipes. faithful: the reference code's (Adam at a constant 1e-3, up to 300 epochs, BCE with one
# sampled negative, float32); these are the field defaults. fast: a deliberate deviation for time to quality
# (docs/training.md, Recipes; benchmarks/time_to_quality.py measures it beside the faithful one). A recipe
# fills the keys it names unless they are given, and wins over a preset's; RECIPE_MODELS changes a recipe for
# the models it does not suit (BERT4Rec stops learning at the fast recipe's lr).
RECIPES: dict[str, dict[str, Any]] = {
    "faithful": {},
    "fast": {
        "loss": "ce",
        "lr": 1.6e-2,
        "lr_schedule": "cosine",
        "warmup_epochs": 2.0,
        "epochs": 30,
        "patience": 0,
        "amp": "auto",
    },
}
RECIPE_MODELS: dict[str, dict[str, dict[str, Any]]] = {"fast": {"bert4rec": {"lr": 4e-3}}}


def recipe_values(recipe: str, model: str) -> dict[str, Any]:
    """The settings `recipe` gives `model` ({} for the faithful recipe, or one that does not exist)."""
    return {**RECIPES.get(recipe, {}), **RECIPE_MODELS.get(recipe, {}).get(model, {})}


# settings that existed once: saved runs still hold them (text_dim: the text width now comes from the data and
# the weights)
RETIRED = ("text_dim",)
# settings added with a default unlike what the model did before them, by model: a saved run (its config.json holds
# every setting of its time) that lacks one ran the way given here (llmesr before it followed the public code)
ADDED = {
    "llmesr": {
        "backbone_code": "library",
        "cross_attention_at": "outputs",
        "gru_positions": "all",
        "distill_at": "mask",
        "icc_items": "targets",
    }
}


# llmesr's choices between the public code's behaviour (the defaults) and ours; an error for any other model
LLMESR_VARIANTS = (
    "backbone_code",
    "causal_attention",
    "cross_attention_at",
    "gru_positions",
    "distill_at",
    "icc_items",
)

# settings only some models read: the models that read each (every other setting every model may read)
_CONTRASTIVE, _INTENT = ("cl4srec", "iclrec", "elcrec"), ("iclrec", "elcrec")
# named, not derived: a new model reads none of these until it is listed (a test checks that what a model does not
# read changes nothing it computes, and that the architecture settings it reads do)
_ATTENTION = ("sasrec", "cl4srec", "iclrec", "elcrec", "bert4rec", "llmesr")  # transformer encoders (and llmesr's)
_TRAINED = (*_ATTENTION, "gru4rec")  # models with weights and training steps (pop counts items)
READ_BY = {
    **dict.fromkeys(
        (
            "hidden_size",
            "num_layers",
            "dropout",
            "recipe",
            "epochs",
            "batch_size",
            "lr",
            "lr_schedule",
            "warmup_epochs",
            "weight_decay",
            "patience",
            "amp",
        ),
        _TRAINED,
    ),
    **dict.fromkeys(("num_heads", "attn_dropout", "engine"), _ATTENTION),
    "loss": tuple(model for model in _TRAINED if model != "bert4rec"),  # bert4rec's Cloze loss is a softmax
    **dict.fromkeys(
        ("augment", "crop_ratio", "mask_ratio", "reorder_ratio", "cl_weight", "temperature", "padding_outputs"),
        _CONTRASTIVE,
    ),
    **dict.fromkeys(("intent_cl_weight", "num_clusters", "pooling"), _INTENT),
    **dict.fromkeys(("kmeans_iters", "kmeans_restarts"), (*_INTENT, "llmesr")),
    **dict.fromkeys(
        ("trade_off", "intent_fusion", "cluster_pull", "intent_centering", "elcm", "centres_without_elcm", "icl"),
        ("elcrec",),
    ),
    "cloze_prob": ("bert4rec", "llmesr"),
    **dict.fromkeys(
        (
            "item_text",
            "backbone",
            "user_text",
            "cross_attention",
            "distill_weight",
            "distill_neighbours",
            "icc",
            "icc_weight",
            "icc_clusters",
            "icc_centres",
            *LLMESR_VARIANTS,
        ),
        ("llmesr",),
    ),
}

METRIC_NAMES = ("HR", "NDCG", "MRR")  # ranking metrics, each at every cut-off k of eval_ks
FLOAT32_MAX = 3.4028234663852886e38
SEED_MAX = 2**31 - 1  # numpy takes seeds below 2**32, faiss's k-means a C int
INT32_MAX = 2**31 - 1  # cut-offs and sampled negatives: counts of items, which index tensors
MIN_TEMPERATURE = 1e-3  # the NT-Xent papers use 0.05..1; at 1e-30 the loss (~1/t) overflows Adam's moments to inf


PATH_SETTINGS = ("data", "item_text", "user_text", "output_dir")  # files and folders, named from the working directory
COMMAND_LINE = ("config", "resume", "overwrite", "threads")  # train's options that are not settings of the run


class ConfigError(ValueError):
    """A configuration value or key is not acceptable."""


@dataclass(frozen=True)
class Range:
    """The numbers a setting accepts: bounds `at_least` and `at_most` included, `above` and `below` excluded;
    `why`, said with the error."""

    at_least: float | None = None
    at_most: float | None = None
    above: float | None = None
    below: float | None = None
    why: str = ""

    def __contains__(self, value: float) -> bool:
        return (
            (self.at_least is None or value >= self.at_least)
            and (self.at_most is None or value <= self.at_most)
            and (self.above is None or value > self.above)
            and (self.below is None or value < self.below)
        )

    def __str__(self) -> str:
        if self.above is not None:
            return "positive" if self.above == 0 else f"above {self.above}"
        if self.at_most is not None:
            return f"in {self.at_least}..{self.at_most}"
        if self.below is not None:
            return f"in [{self.at_least}, {self.below})"
        return "0 or more" if self.at_least == 0 else f"at least {self.at_least}"


COUNT = Range(at_least=1)  # sizes, counts and cut-offs
NONNEGATIVE = Range(at_least=0)  # loss weights, thresholds, patience
SHARE = Range(at_least=0, below=1)  # probabilities and ratios
SEEDS = Range(at_least=0, at_most=SEED_MAX, why="numpy's and faiss's range")
TEMPERATURES = Range(
    at_least=MIN_TEMPERATURE,
    why="contrastive temperatures are 0.05 to 1; a smaller one overflows the loss and stalls training",
)


def _opt(default: Any, help: str, valid: Range | None = None) -> Any:
    """A setting: its default, its help, and for a number the Range it must lie in (checked whatever the model,
    so that one file of settings serves every model of a comparison)."""
    metadata = {"help": help, "valid": valid}
    if isinstance(default, tuple):
        return field(default_factory=lambda: default, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(init=False)
class Config:
    # --- data
    data: str = _opt("synthetic", "data file or folder, or 'synthetic' for the built-in planted-intent data")
    data_format: str = _opt(
        "auto", "reader: auto (by name/suffix), benchmark, csv, tsv, parquet, rechorus, recbole, llmesr (its inter.txt)"
    )
    user_col: str = _opt("user_id", "user column of CSV/TSV/Parquet logs")
    item_col: str = _opt("item_id", "item column of CSV/TSV/Parquet logs")
    time_col: str = _opt("timestamp", "timestamp column of CSV/TSV/Parquet logs ('' keeps file order)")
    dedup: str = _opt(
        "none", "repeated user-item pairs: none (keep), all (keep the first), consecutive (drop immediate repeats)"
    )
    kcore: int = _opt(0, "iterated k-core: keep users and items with at least k interactions (0 = off)", NONNEGATIVE)
    synthetic_users: int = _opt(2000, "synthetic data: number of users", COUNT)
    synthetic_items: int = _opt(400, "synthetic data: number of items", COUNT)
    synthetic_intents: int = _opt(8, "synthetic data: number of planted intents", COUNT)
    synthetic_seed: int = _opt(
        1,
        "synthetic data: seed of its generator (apart from seed, so that runs with several seeds share one dataset)",
        SEEDS,
    )
    # --- model
    preset: str = _opt(
        "",
        "paper settings for a dataset: beauty, sports, toys, yelp (ELCRec's and its baselines'; for llmesr, LLM-ESR's "
        "scripts: beauty, yelp, fashion), or llmesr (LLM-ESR's scripts for any dataset); sasrec and pop keep their "
        "defaults; file, flags and the recipe still win",
    )
    model: str = _opt("sasrec", f"model: {', '.join(CHOICES['model'])} (pop: the most-popular baseline)")
    hidden_size: int = _opt(64, "hidden size d", COUNT)
    num_layers: int = _opt(2, "transformer blocks (gru4rec: GRU layers)", COUNT)
    num_heads: int = _opt(2, "attention heads (must divide hidden_size)", COUNT)
    max_len: int = _opt(50, "most recent items the encoder reads", COUNT)
    dropout: float = _opt(0.5, "dropout on hidden states", SHARE)
    attn_dropout: float = _opt(0.5, "dropout on attention probabilities", SHARE)
    loss: str = _opt(
        "bce", "recommendation loss: bce (one sampled negative per position) or ce (softmax over all items)"
    )
    cloze_prob: float = _opt(
        0.2,
        "bert4rec and llmesr's bert4rec backbone: share of training items selected for the Cloze task (llmesr: a "
        "selected item becomes [MASK] 80%, a random item 10%, or stays 10%)",
        SHARE,
    )
    # --- contrastive learning and intents (cl4srec, iclrec, elcrec)
    augment: str = _opt("random", "view augmentation: random (one per row), crop, mask, reorder")
    crop_ratio: float = _opt(0.2, "crop keeps this share of the items", SHARE)
    mask_ratio: float = _opt(0.7, "mask blanks this share of the items", SHARE)
    reorder_ratio: float = _opt(0.2, "reorder shuffles a slice of this share of the items", SHARE)
    cl_weight: float = _opt(0.1, "weight of the instance contrastive loss", NONNEGATIVE)
    intent_cl_weight: float = _opt(0.1, "weight of the intent contrastive loss (PCL)", NONNEGATIVE)
    temperature: float = _opt(1.0, "temperature of the contrastive losses", TEMPERATURES)
    num_clusters: int = _opt(256, "number of intents K", COUNT)
    trade_off: float = _opt(1.0, "elcrec: weight of the cluster loss", NONNEGATIVE)
    intent_fusion: str = _opt(
        "concat", "elcrec: nearest centre added to (shift) or concatenated with (concat) each position in instance CL"
    )
    cluster_pull: str = _opt(
        "all", "elcrec: cluster loss pulls z towards every centre (all, the reference) or only its nearest (nearest)"
    )
    intent_centering: bool = _opt(
        False,
        "elcrec: standardise sequence representations (running mean/variance) before normalising them "
        "(off: the reference)",
    )
    elcm: bool = _opt(True, "elcrec: learnable cluster module (off: k-means centres, no cluster loss)")
    centres_without_elcm: str = _opt(
        "initial",
        "elcrec with elcm off: the k-means centres of the untrained encoder, kept (initial), or fitted again before "
        "every epoch as ICLRec's E-step (every_epoch); the paper does not say and its code has no such switch",
    )
    icl: bool = _opt(True, "elcrec: intent-assisted CL and PCL (off: plain instance CL)")
    pooling: str = _opt(
        "all",
        "sequence representation for intents: mean over all max_len positions (all, the reference) or over item "
        "positions only (items)",
    )
    padding_outputs: str = _opt(
        "encoded",
        "cl4srec, iclrec, elcrec: outputs before each sequence's first item are encoded and enter the flattened "
        "instance CL and pooling=all (encoded, the reference), or are zero and never computed (zero: a deviation, "
        "faster per epoch but far below the reference's quality at convergence; see docs/models.md)",
    )
    kmeans_iters: int = _opt(20, "k-means iterations (iclrec every epoch, elcrec initialisation)", COUNT)
    kmeans_restarts: int = _opt(5, "k-means restarts", COUNT)
    # --- LLM-ESR and the item-cluster constraint (llmesr)
    item_text: str = _opt(
        "",
        "llmesr: item texts: a .npy or LLM-ESR .pkl of embeddings (row i = item i + 1), a CSV/TSV/Parquet of "
        "item_id,text to embed, or 'synthetic' (the built-in data's texts, embedded offline)",
    )
    backbone: str = _opt(
        "sasrec",
        "llmesr: the sequence backbone both views share: sasrec, gru4rec or bert4rec (Cloze training with "
        "cloze_prob, a [MASK] appended to score)",
    )
    backbone_code: str = _opt(
        "public",
        "llmesr: public (LLM-ESR's own backbones: pre-LN blocks with a ReLU d->d feed-forward and no padding mask "
        "over sqrt(d)-scaled vectors plus positions counted from the oldest item; a bias-free GRU without dropout "
        "that reads the padding) or library (this library's sasrec, bert4rec and gru4rec encoders: post-LN, padding "
        "masked, a packed GRU)",
    )
    causal_attention: bool = _opt(
        True,
        "llmesr with backbone sasrec or gru4rec: self- and cross-attention read only earlier positions (off: as the "
        "public code, which masks only padding, so in training a position reads its own target)",
    )
    user_text: str = _opt(
        "",
        "llmesr: user texts that pick the distillation neighbours: a .npy or an LLM-ESR .pkl of embeddings (row u = "
        "the log's user u) or a CSV/TSV/Parquet of user_id,text to embed ('' = the mean text embedding of each "
        "user's training items)",
    )
    cross_attention: bool = _opt(
        True, "llmesr: 2-head cross-attention between the semantic and collaborative views (every public script)"
    )
    cross_attention_at: str = _opt(
        "embeddings",
        "llmesr: embeddings (the public code: two modules, one per direction, whose outputs replace the views' "
        "input vectors before the backbone) or outputs (one module for both directions, added to the backbone's "
        "outputs as a residual)",
    )
    gru_positions: str = _opt(
        "last",
        "llmesr with backbone gru4rec: the next-item loss at the last position only (last, the public code) or at "
        "every position (all)",
    )
    distill_weight: float = _opt(
        0.1, "llmesr: weight alpha of the retrieval-augmented self-distillation (0 = off)", NONNEGATIVE
    )
    distill_neighbours: int = _opt(
        10, "llmesr: similar users whose representations each user is distilled towards", COUNT
    )
    distill_at: str = _opt(
        "last",
        "llmesr with backbone bert4rec: distil the outputs at the last position of the Cloze-masked training "
        "sequence and of the neighbours' inputs (last, the public code) or at a [MASK] appended to each history, "
        "the representation that scores (mask)",
    )
    icc: str = _opt(
        "none",
        "llmesr: item-cluster constraint on the collaborative embeddings: none, kmeans or hdbscan (noise items "
        "excluded) over the reduced text embeddings",
    )
    icc_weight: float = _opt(0.1, "llmesr: weight gamma of the item-cluster constraint", NONNEGATIVE)
    icc_clusters: int = _opt(32, "llmesr: item clusters for icc=kmeans", COUNT)
    icc_centres: str = _opt(
        "mean",
        "llmesr: cluster centres in the collaborative space: mean (of the cluster's current embeddings, a fixed "
        "target at each step: no gradient flows into it) or learned (trained end to end, ELCRec-style)",
    )
    icc_items: str = _opt(
        "inputs",
        "llmesr: the items the constraint pulls: every input item of the batch, repeats counted (inputs, the public "
        "code) or the batch's distinct target items (targets: rare items weigh as much as frequent ones)",
    )
    # --- training
    recipe: str = _opt(
        "faithful",
        "training recipe: faithful (the reference code's: the defaults below) or fast (softmax loss, lr 1.6e-2 "
        "(bert4rec 4e-3) with warm-up and cosine decay, 30 epochs, bf16 where the hardware computes it; see "
        "docs/training.md); given settings still win",
    )
    epochs: int = _opt(300, "most training epochs", COUNT)
    batch_size: int = _opt(256, "training sequences per step", COUNT)
    lr: float = _opt(1e-3, "Adam learning rate (the peak, with a schedule)", Range(above=0))
    lr_schedule: str = _opt(
        "constant", "learning rate over training: constant (the reference) or cosine (decays to 0 at the last epoch)"
    )
    warmup_epochs: float = _opt(
        0.0, "epochs over which the learning rate rises linearly from 0 to lr (0 = none)", NONNEGATIVE
    )
    weight_decay: float = _opt(0.0, "Adam weight decay", NONNEGATIVE)
    patience: int = _opt(
        40, "epochs without improvement of `metric` on valid before stopping (0 = never stop early)", NONNEGATIVE
    )
    metric: str = _opt(
        "NDCG@20", "validation metric for early stopping and the best checkpoint, e.g. NDCG@20, HR@10, MRR@5"
    )
    seed: int = _opt(1, "seed for initialisation, data order, negatives, augmentations and dropout", SEEDS)
    device: str = _opt("auto", "auto (cuda when present), cpu or cuda")
    engine: str = _opt(
        "fast",
        "how losses are computed (the same ones): fast (one encoder pass over rows and views, cheap dropout masks, "
        "no work on outputs that are zero by definition, llmesr distils towards a per-epoch table) or reference "
        "(the reference code's order; see elcrec.models.engine)",
    )
    amp: str = _opt(
        "none",
        "mixed precision: none, bf16, fp16 (autocast, on CUDA or CPU; fp16 adds loss scaling; on a CPU it pays "
        "only with native bf16/fp16 instructions, e.g. AVX512-BF16 or AMX) or auto (bf16 where the device computes "
        "it in hardware, none elsewhere)",
    )
    output_dir: str = _opt("", "run folder for checkpoint, config and metrics ('' = runs/<model>-<data>-seed<seed>)")
    tracking: str = _opt(
        "none",
        "also log settings and per-epoch losses and metrics to: none, tensorboard or mlflow (extras of the same names)",
    )
    # --- evaluation
    eval_ks: tuple[int, ...] = _opt((5, 10, 20), "cut-offs k for HR@k, NDCG@k, MRR@k")
    mask_history: str = _opt(
        "exclude", "seen items: exclude (never ranked), reference (scored 0, as the reference code), none"
    )
    sampled_negatives: int = _opt(
        0,
        "rank the target among N uniform unseen negatives instead of all items (0 = full ranking)",
        Range(at_least=0, at_most=INT32_MAX),
    )
    eval_batch_size: int = _opt(1024, "users per evaluation batch", COUNT)
    long_tail: str = _opt(
        "share",
        "long-tail groups (elcrec evaluate --long-tail): share (head: the 20% most popular items by training "
        "interactions, the 20% longest histories) or thresholds (LLM-ESR's: a tail item has fewer than "
        "tail_item_threshold distinct users over all the data, test included; a short user fewer than "
        "short_user_threshold input items)",
    )
    tail_item_threshold: int = _opt(
        20, "long_tail=thresholds: items with fewer distinct users are tail items", NONNEGATIVE
    )
    short_user_threshold: int = _opt(
        10, "long_tail=thresholds: users with fewer input items are tail (short) users", NONNEGATIVE
    )

    def __init__(self, **values: Any) -> None:
        """Keyword settings; every other field takes its recipe's value, else its preset's for the model, else
        its default."""
        known = {f.name: f for f in dataclasses.fields(self)}
        for key in values:
            if key in COMMAND_LINE:
                raise ConfigError(f"{key} is not a setting: give --{key} on the command line")
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"unknown config key {key!r}{hint}")
        object.__setattr__(self, "_given", frozenset(values))  # what replace() keeps; the preset fills the rest
        preset = preset_values(
            str(values.get("preset", "")),
            str(values.get("model", known["model"].default)),
            str(values.get("backbone", known["backbone"].default)),
        )
        recipe = recipe_values(
            str(values.get("recipe", known["recipe"].default)), str(values.get("model", known["model"].default))
        )
        for name, f in known.items():
            if name in values:
                value = values[name]
            elif name in recipe:
                value = recipe[name]
            elif name in preset:
                value = preset[name]
            else:
                value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            setattr(self, name, value)
        self.__post_init__()
        object.__setattr__(self, "_built", True)

    def __setattr__(self, name: str, value: Any) -> None:
        """Settings are checked together when built, so a built Config is read-only: replace() gives a changed one."""
        if self.__dict__.get("_built"):
            raise ConfigError(f"a Config is read-only once built; use config.replace({name}=...) for changed settings")
        object.__setattr__(self, name, value)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, _field_type(f), getattr(self, f.name)))
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"{name}={getattr(self, name)!r}: choose one of {', '.join(a or repr(a) for a in allowed)}"
                )
        for f in dataclasses.fields(self):
            if (valid := f.metadata["valid"]) is not None and getattr(self, f.name) not in valid:
                why = f" ({valid.why})" if valid.why else ""
                raise ConfigError(f"{f.name}={getattr(self, f.name)}: must be {valid}{why}")
        if self.model in READ_BY["num_heads"] and self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}")
        for name in ("item_text", "user_text"):
            if getattr(self, name) and self.model != "llmesr":
                raise ConfigError(
                    f"{name}={getattr(self, name)!r}: {name} is a setting of llmesr, which reads text; "
                    f"{self.model} reads none"
                )
        if self.backbone != "sasrec" and self.model != "llmesr":
            raise ConfigError(
                f"backbone={self.backbone!r} is llmesr's setting; the plain model is model={self.backbone}"
            )
        if self.model != "llmesr":
            for name in LLMESR_VARIANTS:
                if getattr(self, name) != _default(name):
                    raise ConfigError(f"{name}={getattr(self, name)!r} is a setting of llmesr; {self.model} has none")
        elif self.cross_attention and self.hidden_size % 2:
            raise ConfigError(f"hidden_size={self.hidden_size}: llmesr's 2-head cross-attention needs an even size")
        if self.padding_outputs != "encoded" and self.model not in READ_BY["padding_outputs"]:
            raise ConfigError(
                f"padding_outputs={self.padding_outputs!r} is a setting of cl4srec, iclrec and elcrec, "
                f"whose contrastive losses read padding outputs; {self.model}'s loss never does"
            )
        columns = {"user_col": self.user_col, "item_col": self.item_col, "time_col": self.time_col}
        named = [f"{name}={column!r}" for name, column in columns.items() if column]
        if len({column for column in columns.values() if column}) < len(named):
            raise ConfigError(f"{', '.join(named)}: each role needs a column of its own")
        if not self.eval_ks or min(self.eval_ks) < 1:
            raise ConfigError(f"eval_ks={self.eval_ks}: give one or more cut-offs >= 1")
        if len(set(self.eval_ks)) < len(self.eval_ks):
            raise ConfigError(f"eval_ks={list(self.eval_ks)}: give each cut-off once")
        if max(self.eval_ks) > INT32_MAX:
            raise ConfigError(f"eval_ks={self.eval_ks}: must be at most {INT32_MAX}")
        name, _, k = self.metric.partition("@")
        canonical = f"{name.upper()}@{int(k)}" if k.isascii() and k.isdigit() else ""
        if name.upper() not in METRIC_NAMES or not canonical or int(k) not in self.eval_ks:
            raise ConfigError(
                f"metric={self.metric!r}: use HR@k, NDCG@k or MRR@k with k in eval_ks {list(self.eval_ks)}"
            )
        if self.metric != canonical:  # the evaluator names its metrics so: another spelling fails after an epoch
            raise ConfigError(f"metric={self.metric!r}: write it {canonical}")

    # --- construction
    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """Settings from a file or a saved run; keys of settings that no longer exist (RETIRED) are dropped."""
        return cls(**{key: value for key, value in values.items() if key not in RETIRED})

    @classmethod
    def from_saved(cls, values: dict[str, Any]) -> Config:
        """The settings of a saved run: from_dict, with the behaviour the run had for settings added since (ADDED)."""
        added = dict(ADDED.get(str(values.get("model")), {}))
        if values.get("data", _default("data")) == "synthetic":  # before synthetic_seed, seed made the data too
            added["synthetic_seed"] = values.get("seed", _default("seed"))
        return cls.from_dict({**added, **values})

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> Config:
        """Defaults, then the file's values (YAML, TOML or JSON), then `overrides` (None values are ignored)."""
        values = read_config_file(path) if path else {}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)

    def replace(self, **changes: Any) -> Config:
        """These settings with `changes`: what was given stays, what the preset filled follows the new model
        and preset (Config(preset="sports", model="elcrec").replace(model="iclrec") has ICLRec's K)."""
        return Config(**{**{name: getattr(self, name) for name in self._given}, **changes})

    def given_settings(self) -> dict[str, Any]:
        """The settings given explicitly, which replace() keeps: Config(**these) is these settings, with the
        preset and the recipe filling the rest as they would."""
        return {name: value for name, value in self.to_dict().items() if name in self._given}

    def preset_settings(self) -> dict[str, Any]:
        """The preset's settings for this model that the run took from it (not given explicitly)."""
        preset = preset_values(self.preset, self.model, self.backbone)
        recipe = recipe_values(self.recipe, self.model)
        return {k: getattr(self, k) for k in preset if k not in self._given and k not in recipe}

    def recipe_settings(self) -> dict[str, Any]:
        """The recipe's settings that the run took from it (not given explicitly)."""
        return {k: getattr(self, k) for k in recipe_values(self.recipe, self.model) if k not in self._given}

    def unread(self) -> list[str]:
        """The settings this model does not read (READ_BY): changing them changes nothing about a run."""
        return [name for name, models in READ_BY.items() if self.model not in models]

    def differences(
        self, other: Config, aside: tuple[str, ...] = (), by_name: tuple[str, ...] = ()
    ) -> dict[str, tuple[Any, Any]]:
        """The settings whose values differ between these and `other`'s, as (ours, theirs): those named in `aside`
        and those neither model reads apart, files compared as the files they name from here (a relative path
        saved before the command line saved them absolute is the same file), those named in `by_name` by file
        name."""
        mine, theirs = (json.loads(json.dumps(config.to_dict())) for config in (self, other))
        for settings in (mine, theirs):
            for key in PATH_SETTINGS:
                if settings[key] not in ("", "synthetic"):
                    settings[key] = str(Path(settings[key]).resolve())
            for key in by_name:
                settings[key] = Path(settings[key]).name
        skipped = {*aside, *(set(self.unread()) & set(other.unread()))}
        return {key: (mine[key], theirs[key]) for key in mine if key not in skipped and mine[key] != theirs[key]}

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["eval_ks"] = list(self.eval_ks)
        return values

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @property
    def data_name(self) -> str:
        return "synthetic" if self.data == "synthetic" else Path(self.data).stem

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir or f"runs/{self.model}-{self.data_name}-seed{self.seed}")


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if path.suffix not in (".yaml", ".yml", ".toml", ".json"):
        raise ConfigError(f"config file {path}: use .yaml, .yml, .toml or .json")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is no part of the settings
        if path.suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib
            values = tomllib.loads(text)
        elif path.suffix == ".json":
            values = json.loads(text, object_pairs_hook=_unique_keys)
        else:
            import yaml

            values = yaml.load(text, Loader=_yaml_loader()) or {}
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path}: not UTF-8 text (byte {error.start})") from None
    except Exception as error:  # yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError (a ValueError)
        mark = getattr(error, "problem_mark", None)  # YAML's errors point with a caret on lines of their own
        if mark is not None:
            reason = f"{getattr(error, 'problem', None) or error.__class__.__name__} (line {mark.line + 1})"
        else:
            reason = " ".join(str(error).split()) or error.__class__.__name__
        raise ConfigError(f"config file {path}: not valid {path.suffix.lstrip('.').upper()}: {reason}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path}: expected a mapping of keys to values")
    return values


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (json keeps the last, as PyYAML does; TOML refuses)."""
    values: dict[str, Any] = {}
    for key, value in pairs:
        if key in values:
            raise ValueError(f"duplicate key {key!r}")
        values[key] = value
    return values


@functools.cache
def _yaml_loader() -> type:
    """PyYAML's safe loader, refusing a key given twice in one mapping (merged keys, <<, may be overridden)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict:
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, typing.Hashable):  # the safe loader refuses the others itself
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {key!r}", key_node.start_mark
                        )
                    seen.add(key)
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader


def config_fields() -> list[tuple[str, type, Any, str]]:
    """(name, type, default, help) for every field, in declaration order; the help ends with a number's range."""
    defaults = Config()
    return [(f.name, _field_type(f), getattr(defaults, f.name), _help(f.metadata)) for f in dataclasses.fields(Config)]


def _help(metadata: typing.Mapping[str, Any]) -> str:
    return metadata["help"] + (f"; {metadata['valid']}" if metadata["valid"] is not None else "")


def _default(name: str) -> Any:
    return next(f.default for f in dataclasses.fields(Config) if f.name == name)


def _field_type(f: dataclasses.Field) -> type:
    return _type_hints()[f.name]


@functools.cache
def _type_hints() -> dict[str, Any]:
    return typing.get_type_hints(Config)


def _coerce(name: str, kind: Any, value: Any) -> Any:
    """Accept the obvious spellings (1e-3 as text from YAML, '5,10,20' from a flag); reject the rest."""
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):  # np.bool_(True), np.array([5, 10]), np.str_
        value = value.tolist()
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, numbers.Integral) and value in (0, 1):  # as the strings "0" and "1"
                return bool(value)
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
        elif kind is int:
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):  # numpy's integers too
                return int(value)
            if isinstance(value, float) and value.is_integer():  # 1.0 and 1e3 as JSON and YAML writers give them
                return int(value)
            if isinstance(value, str) and _plain(value) and value.strip().lstrip("-").isdigit():
                return int(value)
        elif kind is float:
            real = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if real or isinstance(value, str) and _plain(value):
                number = float(value)
                if not abs(number) <= FLOAT32_MAX:  # NaN too: every setting ends up in float32 arithmetic
                    raise ConfigError(
                        f"{name}={value!r}: must be a finite number (in float32's range, |x| <= {FLOAT32_MAX:.3g})"
                    )
                return number
        elif kind is str:
            if isinstance(value, (str, os.PathLike)):  # a path is its text, ~ the home folder as in a shell
                text = os.fspath(value)
                return os.path.expanduser(text) if name in PATH_SETTINGS else text
        elif typing.get_origin(kind) is tuple:
            items = value.split(",") if isinstance(value, str) else value
            if isinstance(items, numbers.Integral):  # eval_ks: 5, one cut-off
                items = [items]
            if isinstance(items, (list, tuple)):
                return tuple(_coerce(name, int, v.strip() if isinstance(v, str) else v) for v in items)
    except ConfigError:
        raise
    except ValueError:
        pass
    type_name = "true or false (yes/no, 1/0)" if kind is bool else getattr(kind, "__name__", str(kind))
    raise ConfigError(f"{name}={value!r}: expected {type_name}")


def _plain(text: str) -> bool:
    """Number text in ASCII without digit-group underscores: int() and float() read other scripts' digits (٣ is
    3) and 1_0 too."""
    return text.isascii() and "_" not in text
