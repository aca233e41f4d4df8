"""LLM-ESR (Liu et al., NeurIPS 2024) on a SASRec, GRU4Rec or BERT4Rec backbone, with the item-cluster
constraint (ICC). The defaults follow the public code (Applied-Machine-Learning-Lab/LLM-ESR; ICC:
springCozyRock/ICC-LLM-ESR); the settings named below choose our variants.

Two views of every item share one backbone:
  semantic       a(t_i): the frozen text embedding t_i through a 2-layer linear adapter, D -> D/2 -> d;
  collaborative  e_i:    a trainable id embedding, initialised from PCA-d of the text embeddings.
The backbone (`backbone`) is the public code's (backbone_code=public, see llmesr_backbones) or this library's
encoder (library). With cross_attention, each view first reads the other (cross_attention_at=embeddings, the
public code: col' = CA(Q = sem, K = V = col) and sem' = CA(Q = col, K = V = sem), two modules whose outputs replace
the views' inputs to the backbone; outputs: one module whose output is added to each view's backbone output).
Attention is causal with backbones sasrec and gru4rec unless causal_attention is off, as in the public code,
whose attention masks only padding. The user representation is u = [h_sem; h_col] (2d) at the last position
and item i scores u . [a(t_i); e_i]. BERT4Rec's [MASK] is one more item row, as in the public code: a zero text
vector (so a(0), the adapter's bias) and an id embedding that starts at zero; u is the output at a [MASK]
appended to the history (in the public backbone at position last + 1, as there). The adapter and the public
modules start from xavier-normal weights, as the public code's. Training loss:
  rec      BCE with one sampled unseen negative (or `loss`=ce) on the concatenated representations: at every
           position (sasrec), at the last one (gru4rec; gru_positions=all: every one), or for bert4rec at the
           labelled positions of the public code's two rows per user: items[:-2] with a cloze_prob share
           selected (a selected item becomes [MASK] 80%, a random item 10%, stays 10%), and items[:-2] with
           only its last item masked (stacked in one batch; both copies use the row's sampled negatives, and
           the first item of a history shorter than max_len, which has none, is never selected);
  distill  alpha * MSE(u, mean of the detached representations of the user's `distill_neighbours` most
           similar users), similarity = cosine of the user text embeddings (`user_text`) or, by default,
           of the mean text embedding of the users' training items (retrieval-augmented self-distillation).
           For bert4rec, u is the output at the last position of each Cloze row and the neighbours' at their
           last input item (distill_at=last, the public code), or both at an appended [MASK] (mask).
           engine=reference encodes u again and the neighbours at every step, with dropout, as the public
           code; engine=fast reuses u from the rec pass and encodes every training user once per epoch (eval
           mode, no gradient) into a table of targets, which lags the model by at most one epoch;
  icc      gamma * mean over the batch's input items, repeats counted (icc_items=inputs, the public code),
           or its distinct target items (targets), that have a cluster, of ||e_i - c_label(i)||².
           Labels: k-means or HDBSCAN over the PCA-reduced, unit-length text embeddings, noise items
           (HDBSCAN) excluded, labels indexed by item id (the public code's are off by one). Centres live
           in the collaborative space (the public code's are a random frozen projection of UMAP centres):
           the mean of the cluster's current embeddings, a target without gradient (icc_centres=mean), or
           a [C, d] parameter initialised so and trained end to end (icc_centres=learned, ELCRec-style).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError
from ..data.item_text import item_text_matrix, user_text_matrix
from ..distributed import gather_objects, gather_rows, rank, world_size
from .base import Batch, NextItemRecommender, evaluating
from .clustering import kmeans, nearest_centre
from .engine import EnginePlan
from .gru4rec import GRUEncoder
from .llmesr_backbones import (
    CrossAttention,
    PublicGRU,
    PublicTransformer,
    cloze_copies,
    cross_mask,
    item_positions,
    xavier_init,
)
from .transformer import TransformerEncoder, attention_mask

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ..config import Config
    from ..data import SequenceData, TrainSet

ICC_DIMS = 16  # text embeddings are reduced to this many PCA components before clustering


def backbone(config: Config, plan: EnginePlan, causal: bool) -> nn.Module:
    """The sequence encoder both views share, taking the items' vectors: the public code's or this library's."""
    c = config
    if c.backbone_code == "public":
        return PublicGRU(c) if c.backbone == "gru4rec" else PublicTransformer(c, causal, plan.fast)
    if c.backbone == "gru4rec":
        return GRUEncoder(c.hidden_size, c.num_layers, c.dropout)
    return TransformerEncoder(
        0,
        c.hidden_size,
        c.num_layers,
        c.num_heads,
        c.max_len,
        c.dropout,
        c.attn_dropout,
        causal=causal,
        fast_dropout=plan.fast,
        item_table=False,
    )


def mean_item_text(inputs: torch.Tensor, text: torch.Tensor, chunk_values: int = 2**26) -> torch.Tensor:
    """[N, L] item ids -> [N, D]: each row's mean text embedding over its items (zero for none), computed a
    chunk of rows at a time: the [N, L, D] embeddings of every position at once outgrow memory (N = 22,363,
    L = 200, D = 1536 on Beauty: 27 GB)."""
    rows = max(1, chunk_values // (inputs.shape[1] * text.shape[1]))
    means = []
    for chunk in inputs.split(rows):
        present = (chunk > 0).float()
        means.append((text[chunk] * present[..., None]).sum(1) / present.sum(1, keepdim=True).clamp(min=1))
    return torch.cat(means)


class LLMESR(NextItemRecommender):
    def __init__(self, n_items: int, config: Config, text_dim: int) -> None:
        super().__init__(config)
        if config.icc == "hdbscan" and config.icc_centres == "learned":
            raise ValueError("icc_centres=learned needs a known number of clusters: use icc=kmeans")
        self.plan = EnginePlan.of(config)
        self.cloze = config.backbone == "bert4rec"  # Cloze training, scored from an appended [MASK]
        self.public = config.backbone_code == "public"
        self.causal = config.causal_attention and not self.cloze
        d, D = config.hidden_size, text_dim
        self.n_items = n_items
        self.mask_token = n_items + 1  # the Cloze backbone only
        rows = n_items + 1 + self.cloze
        self.register_buffer("text", torch.zeros(rows, D))  # frozen; row 0 padding, [MASK] zero too
        self.adapter = nn.Sequential(nn.Linear(D, max(D // 2, 1)), nn.Linear(max(D // 2, 1), d))
        xavier_init(self.adapter)
        self.id_embeddings = nn.Embedding(rows, d, padding_idx=0)
        self.encoder = backbone(config, self.plan, self.causal)
        at_embeddings = config.cross_attention and config.cross_attention_at == "embeddings"
        # the public code's id2llm (the semantic stream: queries from the collaborative view) and llm2id
        self.cross_sem = CrossAttention(d) if at_embeddings else None
        self.cross_col = CrossAttention(d) if at_embeddings else None
        self.cross = (
            nn.MultiheadAttention(d, 2, dropout=config.attn_dropout, batch_first=True)
            if config.cross_attention and not at_embeddings
            else None
        )
        self.register_buffer("item_cluster", torch.full((n_items + 1,), -1, dtype=torch.long))  # -1: none
        self.centres = (
            nn.Parameter(torch.zeros(config.icc_clusters, d))
            if config.icc != "none" and config.icc_centres == "learned"
            else None
        )
        self.user_text: torch.Tensor | None = None  # [n_users, D'] (create sets it), not saved
        # set by start_epoch, not saved: training inputs [N, L], similar users [N, k], their representations
        self.train_inputs: torch.Tensor | None = None
        self.neighbours: torch.Tensor | None = None
        self.user_table: torch.Tensor | None = None

    @classmethod
    def create(cls, config: Config, data: SequenceData) -> LLMESR:
        """A model with `item_text`'s embeddings of the data's items (and `user_text`'s of its users)."""
        if not config.item_text:
            raise ValueError(
                "llmesr needs item text embeddings: set item_text (--item-text: a .npy/.pkl file, a CSV/TSV/Parquet "
                "of item_id,text, or 'synthetic')"
            )
        text = item_text_matrix(config.item_text, data)
        model = cls(data.n_items, config, text.shape[1])
        with torch.no_grad():
            model.text[1 : data.n_items + 1] = torch.from_numpy(text)
        if config.user_text:  # [n_users, D'] embeddings of the log's users: the distillation neighbours
            model.user_text = torch.from_numpy(user_text_matrix(config.user_text, data))
        return model

    @classmethod
    def from_weights(cls, config: Config, n_items: int, weights: dict[str, Any]) -> LLMESR:
        """The text table is a buffer of the weights: its width is the text embeddings'."""
        if "text" not in weights:
            raise ValueError("the weights hold no text table (an llmesr state dict has one)")
        return cls(n_items, config, weights["text"].shape[1])

    @property
    def item_table(self) -> torch.Tensor:
        items = slice(0, self.n_items + 1)
        return torch.cat([self.adapter(self.text[items]), self.id_embeddings.weight[items]], 1)

    def text_vectors(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, L] tokens -> [B, L, d]: the adapter's view of each token's text. The fast engine adapts each distinct
        token of the batch once (far fewer than its positions, padding included); the reference, every position."""
        if not self.plan.fast:
            return self.adapter(self.text[tokens])
        distinct, where = tokens.unique(return_inverse=True)
        return self.adapter(self.text[distinct])[where]

    def sequence_output(self, inputs: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """[B, L] tokens -> [B, L, 2d]; `positions` [B, L] of the public backbone (default: from the first item)."""
        L = inputs.shape[1]
        if self.public:  # its attention reads padded slots and its GRU the padding: max_len wide, as there
            positions = item_positions(inputs) if positions is None else positions
            inputs, positions = (F.pad(t, (self.config.max_len - L, 0)) for t in (inputs, positions))
        sem, col = self.text_vectors(inputs), self.id_embeddings(inputs)
        if self.public:
            sem, col = self.encoder.embed(sem, positions), self.encoder.embed(col, positions)
        if self.cross_sem is not None:
            blocked = cross_mask(inputs, self.causal)
            sem, col = self.cross_sem(col, sem, blocked), self.cross_col(sem, col, blocked)
        sem, col = self.encoder(inputs, vectors=sem), self.encoder(inputs, vectors=col)
        if self.cross is not None:
            width = inputs.shape[1]  # max_len with the public backbone, which pads the inputs
            mask = attention_mask(inputs, self.causal, sem.dtype).expand(-1, 2, width, width).flatten(0, 1)
            sem, col = (
                sem + self.cross(sem, col, col, attn_mask=mask, need_weights=False)[0],
                col + self.cross(col, sem, sem, attn_mask=mask, need_weights=False)[0],
            )
        return torch.cat([sem, col], -1)[:, -L:]

    def last_output(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.cloze:  # the output at a [MASK] after the history predicts the next item
            tokens = torch.cat([inputs, torch.full_like(inputs[:, :1], self.mask_token)], 1)
            width = min(tokens.shape[1], self.config.max_len)
            return self.sequence_output(tokens[:, -width:], item_positions(tokens)[:, -width:])[:, -1]
        return self.sequence_output(inputs)[:, -1]

    def distill_output(self, inputs: torch.Tensor) -> torch.Tensor:
        """[B, L] -> [B, 2d], the representation distillation compares: the scoring one, or with bert4rec and
        distill_at=last the output at the last input item."""
        if self.cloze and self.config.distill_at == "last":
            return self.sequence_output(inputs)[:, -1]
        return self.last_output(inputs)

    @torch.no_grad()
    def prepare(self, train: TrainSet) -> None:
        from sklearn.decomposition import PCA

        c = self.config
        text = self.text[1 : self.n_items + 1].float().cpu().numpy()
        d = c.hidden_size
        components = min(d, *text.shape)
        start = np.zeros((len(text), d), dtype=np.float32)
        start[:, :components] = PCA(components, random_state=c.seed).fit_transform(text)
        self.id_embeddings.weight[1 : self.n_items + 1] = torch.from_numpy(start)
        if self.cloze:  # [MASK]'s id row starts at zero, as the public code's
            self.id_embeddings.weight[self.mask_token] = 0.0
        if c.icc != "none":
            self.item_cluster[1:] = torch.from_numpy(self._item_clusters(text))
            if self.centres is not None:
                self.centres.copy_(self._cluster_means())

    def _item_clusters(self, text: np.ndarray) -> np.ndarray:
        from sklearn.decomposition import PCA

        c = self.config
        reduced = PCA(min(ICC_DIMS, *text.shape), random_state=c.seed).fit_transform(text)
        reduced /= np.linalg.norm(reduced, axis=1, keepdims=True).clip(min=1e-12)
        if c.icc == "hdbscan":
            from sklearn.cluster import HDBSCAN

            labels = HDBSCAN(min_cluster_size=5, copy=True).fit_predict(reduced).astype(np.int64)  # -1 = noise
            if labels.max() < 0:  # the constraint would read 0 at every step
                raise ValueError(
                    f"icc=hdbscan found no cluster among the {len(labels)} items' texts (every item is noise at "
                    "min_cluster_size 5): use icc=kmeans, or icc=none"
                )
            log.info(f"icc=hdbscan: {labels.max() + 1} item clusters, {(labels < 0).sum():,} items in none (noise)")
            return labels
        if len(reduced) < c.icc_clusters:
            raise ConfigError(f"icc_clusters={c.icc_clusters} exceeds the {len(reduced)} items; lower icc_clusters")
        centroids = kmeans(reduced, c.icc_clusters, c.kmeans_iters, c.kmeans_restarts, c.seed)
        return nearest_centre(torch.from_numpy(reduced).double(), torch.from_numpy(centroids).double()).numpy()

    def _cluster_means(self) -> torch.Tensor:
        """[C, d]: the mean collaborative embedding of each cluster's items (zero for an empty cluster)."""
        labels = self.item_cluster
        member = labels >= 0
        count = int(labels.max()) + 1 if member.any() else 0
        size = max(count, self.centres.shape[0] if self.centres is not None else 0)
        sums = torch.zeros(
            size, self.id_embeddings.weight.shape[1], device=labels.device, dtype=self.id_embeddings.weight.dtype
        ).index_add(0, labels[member], self.id_embeddings.weight[: len(labels)][member])
        counts = torch.bincount(labels[member], minlength=size).clamp(min=1)
        return sums / counts[:, None]

    @torch.no_grad()
    def start_epoch(self, train: TrainSet) -> None:
        """Find every training row's similar users once (after a resume too); with engine=fast, encode every
        training user for this epoch's distillation targets."""
        if not self.config.distill_weight:
            return
        if self.neighbours is None:
            self.train_inputs = torch.from_numpy(train.inputs).to(self.text.device)
            self.neighbours = torch.from_numpy(self._similar_users(train)).to(self.text.device)
        if self.plan.fast:
            with evaluating(self):
                self.user_table = torch.cat(
                    [self.distill_output(batch) for batch in self.train_inputs.split(self.config.eval_batch_size)]
                )

    def _similar_users(self, train: TrainSet) -> np.ndarray:
        """[N, k] for each training row the rows whose users' text embeddings (or, without user text, mean
        text embeddings of their input items) are most similar (cosine, faiss exact search), itself excluded."""
        import faiss

        if self.user_text is not None:
            users = self.user_text.float().cpu()[torch.from_numpy(train.users)]
        else:
            users = mean_item_text(torch.from_numpy(train.inputs), self.text.float().cpu())
        if len(users) < 2:  # the mean over no neighbour is NaN
            raise ValueError(
                f"distillation needs 2 or more training sequences to find neighbours among, not {len(users)}: "
                "set distill_weight=0"
            )
        users = F.normalize(users, dim=1).numpy()
        index = faiss.IndexFlatIP(users.shape[1])
        index.add(users)
        k = min(self.config.distill_neighbours, len(users) - 1)
        mine = np.array_split(np.arange(len(users)), world_size())[rank()]  # each process searches for its share
        _, found = index.search(users[mine], k + 1)
        found = np.concatenate(gather_objects(found)) if world_size() > 1 else found
        return np.stack([row[row != i][:k] for i, row in enumerate(found)])

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        train = self.cloze_rows(batch) if self.cloze else batch
        h = self.sequence_output(train.inputs)
        last_only = c.backbone == "gru4rec" and c.gru_positions == "last"
        terms = {"rec": self.rec_loss(h[:, -1:], train.last(1)) if last_only else self.rec_loss(h, train)}
        if c.distill_weight:
            if self.cloze and c.distill_at == "mask":
                user = self.last_output(batch.inputs)
            else:  # the public code encodes the rows again (fresh dropout); the fast engine reuses the rec pass
                user = (h if self.plan.fast else self.sequence_output(train.inputs))[:, -1]
            neighbours = self.neighbours[batch.rows]  # [B, k]
            with torch.no_grad():
                if self.plan.fast:
                    target = self.user_table[neighbours].mean(1)
                else:
                    target = self.distill_output(self.train_inputs[neighbours].flatten(0, 1))
                    target = target.view(*neighbours.shape, -1).mean(1)
            target = target.repeat(len(user) // len(target), 1)  # both Cloze copies of a user
            terms["distill"] = c.distill_weight * F.mse_loss(user, target)
        if c.icc != "none":  # over the global batch's items, in every process alike (DDP averages it to itself)
            if c.icc_items == "inputs":
                inputs = gather_rows(train.inputs)
                items = inputs[(inputs > 0) & (inputs <= self.n_items)]  # [MASK] is no item
            else:
                targets = gather_rows(batch.targets)
                items = torch.unique(targets[targets > 0])
            labels = self.item_cluster[items]
            items, labels = items[labels >= 0], labels[labels >= 0]
            if self.centres is not None:
                centres = self.centres
            else:
                with torch.no_grad():
                    centres = self._cluster_means()
            distances = ((self.id_embeddings(items) - centres[labels]) ** 2).sum(-1)
            terms["icc"] = c.icc_weight * distances.sum() / max(len(items), 1)  # 0 when no batch item has a cluster
        return terms

    def cloze_rows(self, batch: Batch) -> Batch:
        """The public code's two Cloze rows of each training row (cloze_copies) as one batch [2B, L]: the labels
        at the selected items, the row's sampled negatives there."""
        sequence = torch.cat([batch.inputs[:, 1:], batch.targets[:, -1:]], 1)  # items[:-2], the last max_len
        # an item with a sampled negative: every one but the first of a history shorter than max_len
        maskable = batch.targets > 0
        tokens, labelled = cloze_copies(sequence, maskable, self.config.cloze_prob, self.mask_token, self.n_items)
        labels = sequence.repeat(2, 1) * labelled
        negatives = None if batch.negatives is None else batch.negatives.repeat(2, 1) * labelled
        return replace(batch, inputs=tokens, targets=labels, rows=batch.rows.repeat(2), negatives=negatives)
