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

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import NextItemRecommender
from .gru4rec import GRUEncoder
from .intent import kmeans
from .transformer import TransformerEncoder, attention_mask

if TYPE_CHECKING:
    from ..config import Config
    from ..data import TrainSet

ICC_DIMS = 16  # text embeddings are reduced to this many PCA components before clustering


class LLMESR(NextItemRecommender):
    def __init__(self, n_items: int, config: Config) -> None:
        super().__init__(config)
        if config.text_dim < 1:
            raise ValueError("llmesr needs item text embeddings: set item_text (a .npy/.pkl file or 'synthetic')")
        if config.icc == "hdbscan" and config.icc_centres == "learned":
            raise ValueError("icc_centres=learned needs a known number of clusters: use icc=kmeans")
        d, D = config.hidden_size, config.text_dim
        self.n_items = n_items
        self.mask_token = n_items + 1  # bert4rec only
        rows = n_items + 1 + (config.backbone == "bert4rec")
        self.register_buffer("text", torch.zeros(rows, D))  # frozen; row 0 padding, [MASK] zero too
        self.adapter = nn.Sequential(nn.Linear(D, max(D // 2, 1)), nn.Linear(max(D // 2, 1), d))
        self.id_embeddings = nn.Embedding(rows, d, padding_idx=0)
        if config.backbone == "gru4rec":
            self.encoder = GRUEncoder(d, config.num_layers, config.dropout)
        else:
            self.encoder = TransformerEncoder(n_items, d, config.num_layers, config.num_heads, config.max_len,
                                              config.dropout, config.attn_dropout, causal=config.backbone == "sasrec",
                                              fast_dropout=config.engine == "fast", item_table=False)
        self.cross = nn.MultiheadAttention(d, 2, dropout=config.attn_dropout, batch_first=True) \
            if config.cross_attention else None
        self.register_buffer("item_cluster", torch.full((n_items + 1,), -1, dtype=torch.long))  # -1: none
        self.centres = nn.Parameter(torch.zeros(config.icc_clusters, d)) \
            if config.icc != "none" and config.icc_centres == "learned" else None
        self.user_text: torch.Tensor | None = None  # [n_users, D'] (set_user_text), not saved
        # set by start_epoch, not saved: training inputs [N, L], similar users [N, k], their representations
        self.train_inputs: torch.Tensor | None = None
        self.neighbours: torch.Tensor | None = None
        self.user_table: torch.Tensor | None = None

    def set_item_text(self, text: torch.Tensor) -> None:
        """[n_items, D] text embeddings of items 1..n."""
        with torch.no_grad():
            self.text[1 : self.n_items + 1] = text

    def set_user_text(self, text: torch.Tensor) -> None:
        """[n_users, D'] text embeddings of the log's users: the distillation neighbours are found by them."""
        self.user_text = text

    @property
    def item_table(self) -> torch.Tensor:
        items = slice(0, self.n_items + 1)
        return torch.cat([self.adapter(self.text[items]), self.id_embeddings.weight[items]], 1)

    def sequence_output(self, inputs: torch.Tensor) -> torch.Tensor:
        sem = self.encoder(inputs, vectors=self.adapter(self.text[inputs]))
        col = self.encoder(inputs, vectors=self.id_embeddings(inputs))
        if self.cross is not None:
            L = inputs.shape[1]
            mask = attention_mask(inputs, self.config.backbone != "bert4rec", sem.dtype)
            mask = mask.expand(-1, 2, L, L).reshape(-1, L, L)  # [B * heads, L, L]
            sem, col = (sem + self.cross(sem, col, col, attn_mask=mask, need_weights=False)[0],
                        col + self.cross(col, sem, sem, attn_mask=mask, need_weights=False)[0])
        return torch.cat([sem, col], -1)

    def last_output(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.config.backbone == "bert4rec":  # the output at a [MASK] after the history predicts the next item
            mask = torch.full((len(inputs), 1), self.mask_token, dtype=inputs.dtype, device=inputs.device)
            inputs = torch.cat([inputs, mask], 1)[:, -self.config.max_len:]
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
        centroids = kmeans(reduced, c.icc_clusters, c.kmeans_iters, c.kmeans_restarts, c.seed)
        return ((reduced[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1).astype(np.int64)

    def _cluster_means(self) -> torch.Tensor:
        """[C, d]: the mean collaborative embedding of each cluster's items (zero for an empty cluster)."""
        labels = self.item_cluster
        member = labels >= 0
        count = int(labels.max()) + 1 if member.any() else 0
        size = max(count, self.centres.shape[0] if self.centres is not None else 0)
        sums = torch.zeros(size, self.id_embeddings.weight.shape[1], device=labels.device,
                           dtype=self.id_embeddings.weight.dtype).index_add(0, labels[member],
                                                                            self.id_embeddings.weight[:len(labels)][member])
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
        if self.config.engine == "fast":
            was_training = self.training
            self.eval()
            self.user_table = torch.cat([self.last_output(batch)
                                         for batch in self.train_inputs.split(self.config.eval_batch_size)])
            self.train(was_training)

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

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        if c.backbone == "bert4rec":  # Cloze over items[:-2]; any item but the first may be masked and predicted
            targets = batch["targets"]
            sequence = torch.cat([batch["inputs"][:, 1:], targets[:, -1:]], 1)  # equals targets where targets > 0
            masked = (torch.rand(targets.shape, device=targets.device) < c.cloze_prob) & (targets > 0)
            masked[:, -1] |= ~masked.any(1)
            h = self.sequence_output(sequence.masked_fill(masked, self.mask_token))
            terms = {"rec": self.rec_loss(h, {**batch, "targets": targets * masked})}
            user = self.last_output(batch["inputs"]) if c.distill_weight else None
        else:
            h = self.sequence_output(batch["inputs"])
            terms = {"rec": self.rec_loss(h, batch)}
            user = h[:, -1]
        if c.distill_weight:
            neighbours = self.neighbours[batch["rows"]]  # [B, k]
            with torch.no_grad():
                if c.engine == "fast":
                    target = self.user_table[neighbours].mean(1)
                else:
                    target = self.last_output(self.train_inputs[neighbours].flatten(0, 1))
                    target = target.view(*neighbours.shape, -1).mean(1)
            terms["distill"] = c.distill_weight * F.mse_loss(user, target)
        if c.icc != "none":
            items = torch.unique(batch["targets"][batch["targets"] > 0])
            labels = self.item_cluster[items]
            items, labels = items[labels >= 0], labels[labels >= 0]
            centres = self.centres if self.centres is not None else self._cluster_means()
            distances = ((self.id_embeddings(items) - centres[labels]) ** 2).sum(-1)
            terms["icc"] = c.icc_weight * distances.sum() / max(len(items), 1)  # 0 when no batch item has a cluster
        return terms
