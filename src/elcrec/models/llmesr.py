"""LLM-ESR (Liu et al., NeurIPS 2024) on a SASRec, GRU4Rec or BERT4Rec backbone, with the item-cluster
constraint (ICC).

Two views of every item share one backbone (`backbone`: SASRec's blocks, position embeddings and
LayerNorm; GRU4Rec's GRU; or BERT4Rec's bidirectional blocks):
  semantic       a(t_i): the frozen text embedding t_i through a 2-layer linear adapter, D -> D/2 -> d;
  collaborative  e_i:    a trainable id embedding, initialised from PCA-d of the text embeddings.
Each view's sequence runs through the backbone (optionally, 2-head cross-attention then lets each view's
outputs read the other's, causally unless the backbone is bidirectional); the user representation is
u = [h_sem; h_col] (2d) and item i scores u . [a(t_i); e_i]. BERT4Rec's [MASK] is one more item row, as in
the public code: a zero text vector (so a(0), the adapter's bias) and a trainable id embedding; u is the
output at a [MASK] appended to the history. Training loss, every term averaged as SASRec's:
  rec      the backbone's next-item loss on the concatenated representations (`loss`: BCE with one sampled
           unseen negative, or softmax CE), at every position, or with bert4rec at the Cloze-masked
           positions of items[:-2] (a `cloze_prob` share of the items after the first, at least one per
           row), as the public code;
  distill  alpha * MSE(u, mean of the detached representations of the user's `distill_neighbours` most
           similar users), similarity = cosine of the user text embeddings (`user_text`) or, by default,
           of the mean text embedding of the users' training items
           (retrieval-augmented self-distillation). engine=reference encodes those users again at every
           step, as the public code (about 20 extra encoder passes per step); engine=fast encodes every
           training user once per epoch (eval mode, no gradient) and reads the neighbours' representations
           from that table, which lags the model by at most one epoch;
  icc      gamma * mean over the batch's distinct target items with a cluster of ||e_i - c_label(i)||².
           Labels: k-means or HDBSCAN over the PCA-reduced, unit-length text embeddings, noise items
           (HDBSCAN) excluded, labels indexed by item id (the public code's are off by one). Centres live
           in the collaborative space: the mean of the cluster's current embeddings (icc_centres=mean) or
           a [C, d] parameter initialised so and trained end to end (icc_centres=learned, ELCRec-style).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError
from ..data.item_text import item_text_matrix, user_text_matrix
from .base import Batch, NextItemRecommender, evaluating
from .bert4rec import append_mask_token, cloze
from .clustering import kmeans, nearest_centre
from .engine import EnginePlan
from .gru4rec import GRUEncoder
from .transformer import TransformerEncoder, attention_mask

if TYPE_CHECKING:
    from ..config import Config
    from ..data import SequenceData, TrainSet

ICC_DIMS = 16  # text embeddings are reduced to this many PCA components before clustering


def backbone(config: Config, plan: EnginePlan) -> nn.Module:
    """The sequence encoder both views share, taking the items' vectors: SASRec's causal blocks, BERT4Rec's
    bidirectional ones, or GRU4Rec's GRU."""
    c = config
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
        causal=c.backbone == "sasrec",
        fast_dropout=plan.fast,
        item_table=False,
    )


class LLMESR(NextItemRecommender):
    def __init__(self, n_items: int, config: Config, text_dim: int) -> None:
        super().__init__(config)
        if config.icc == "hdbscan" and config.icc_centres == "learned":
            raise ValueError("icc_centres=learned needs a known number of clusters: use icc=kmeans")
        self.plan = EnginePlan.of(config)
        self.cloze = config.backbone == "bert4rec"  # Cloze training, scored from an appended [MASK]
        d, D = config.hidden_size, text_dim
        self.n_items = n_items
        self.mask_token = n_items + 1  # the Cloze backbone only
        rows = n_items + 1 + self.cloze
        self.register_buffer("text", torch.zeros(rows, D))  # frozen; row 0 padding, [MASK] zero too
        self.adapter = nn.Sequential(nn.Linear(D, max(D // 2, 1)), nn.Linear(max(D // 2, 1), d))
        self.id_embeddings = nn.Embedding(rows, d, padding_idx=0)
        self.encoder = backbone(config, self.plan)
        self.cross = (
            nn.MultiheadAttention(d, 2, dropout=config.attn_dropout, batch_first=True)
            if config.cross_attention
            else None
        )
        self.register_buffer("item_cluster", torch.full((n_items + 1,), -1, dtype=torch.long))  # -1: none
        self.centres = (
            nn.Parameter(torch.zeros(config.icc_clusters, d))
            if config.icc != "none" and config.icc_centres == "learned"
            else None
        )
        self.user_text: torch.Tensor | None = None  # [n_users, D'] (set_user_text), not saved
        # set by start_epoch, not saved: training inputs [N, L], similar users [N, k], their representations
        self.train_inputs: torch.Tensor | None = None
        self.neighbours: torch.Tensor | None = None
        self.user_table: torch.Tensor | None = None

    @classmethod
    def create(cls, config: Config, data: SequenceData) -> LLMESR:
        """A model with `item_text`'s embeddings of the data's items (and `user_text`'s of its users)."""
        if not config.item_text:
            raise ValueError(
                "llmesr needs item text embeddings: set item_text (a .npy/.pkl file, a CSV/TSV/Parquet "
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

    def sequence_output(self, inputs: torch.Tensor) -> torch.Tensor:
        sem = self.encoder(inputs, vectors=self.adapter(self.text[inputs]))
        col = self.encoder(inputs, vectors=self.id_embeddings(inputs))
        if self.cross is not None:
            L = inputs.shape[1]
            mask = attention_mask(inputs, not self.cloze, sem.dtype)
            mask = mask.expand(-1, 2, L, L).reshape(-1, L, L)  # [B * heads, L, L]
            sem, col = (
                sem + self.cross(sem, col, col, attn_mask=mask, need_weights=False)[0],
                col + self.cross(col, sem, sem, attn_mask=mask, need_weights=False)[0],
            )
        return torch.cat([sem, col], -1)

    def last_output(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.cloze:  # the output at a [MASK] after the history predicts the next item
            inputs = append_mask_token(inputs, self.mask_token, self.config.max_len)
        return self.sequence_output(inputs)[:, -1]

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

            return HDBSCAN(min_cluster_size=5, copy=True).fit_predict(reduced).astype(np.int64)  # -1 = noise
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
                    [self.last_output(batch) for batch in self.train_inputs.split(self.config.eval_batch_size)]
                )

    def _similar_users(self, train: TrainSet) -> np.ndarray:
        """[N, k] for each training row the rows whose users' text embeddings (or, without user text, mean
        text embeddings of their input items) are most similar (cosine, faiss exact search), itself excluded."""
        import faiss

        if self.user_text is not None:
            users = self.user_text.float().cpu()[torch.from_numpy(train.users)]
        else:
            inputs = torch.from_numpy(train.inputs)
            present = (inputs > 0).float()
            text = self.text.float().cpu()
            users = (text[inputs] * present[..., None]).sum(1) / present.sum(1, keepdim=True).clamp(min=1)
        users = F.normalize(users, dim=1).numpy()
        index = faiss.IndexFlatIP(users.shape[1])
        index.add(users)
        k = min(self.config.distill_neighbours, len(users) - 1)
        _, found = index.search(users, k + 1)
        return np.stack([row[row != i][:k] for i, row in enumerate(found)])

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        if self.cloze:  # Cloze over items[:-2]; any item but the first (it has no sampled negative) may be masked
            sequence, masked = cloze(batch, c.cloze_prob, maskable=batch.targets > 0)
            h = self.sequence_output(sequence.masked_fill(masked, self.mask_token))
            terms = {"rec": self.rec_loss(h, replace(batch, targets=batch.targets * masked))}
            user = self.last_output(batch.inputs) if c.distill_weight else None
        else:
            h = self.sequence_output(batch.inputs)
            terms = {"rec": self.rec_loss(h, batch)}
            user = h[:, -1]
        if c.distill_weight:
            neighbours = self.neighbours[batch.rows]  # [B, k]
            with torch.no_grad():
                if self.plan.fast:
                    target = self.user_table[neighbours].mean(1)
                else:
                    target = self.last_output(self.train_inputs[neighbours].flatten(0, 1))
                    target = target.view(*neighbours.shape, -1).mean(1)
            terms["distill"] = c.distill_weight * F.mse_loss(user, target)
        if c.icc != "none":
            items = torch.unique(batch.targets[batch.targets > 0])
            labels = self.item_cluster[items]
            items, labels = items[labels >= 0], labels[labels >= 0]
            centres = self.centres if self.centres is not None else self._cluster_means()
            distances = ((self.id_embeddings(items) - centres[labels]) ** 2).sum(-1)
            terms["icc"] = c.icc_weight * distances.sum() / max(len(items), 1)  # 0 when no batch item has a cluster
        return terms
