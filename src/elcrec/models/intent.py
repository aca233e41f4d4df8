"""Intent learning: ICLRec (alternating k-means EM) and ELCRec (end-to-end learnable cluster centres).

Sequence representation for clustering: the encoder output averaged over all max_len positions, padding
included, as the reference (pooling=all), or over item positions only (pooling=items). Both add, to CL4SRec's
rec + instance CL, the intent CL (PCL):
    PCL = (nce(p1, c) + nce(p2, c)) / 2,   p = mean-pooled view outputs, c = each sequence's intent.

ICLRec: every epoch, k-means (faiss) over all training sequences (eval mode); each sequence's intent is
the nearest centroid to its (detached) train-mode representation; centroids L2-normalised.

ELCRec: centres are a learnable [K, d] parameter, k-means-initialised once from the untrained encoder.
Each step: centres renormalised in place; z = normalize(mean_l h); intent = argmin_k ||z - c_k||²;
    cluster = trade_off * (mean_{i,k} ||z_i - c_k||² - mean_{j,k} ||c_j - c_k||²)
and instance CL reads every position with its nearest centre added (shift) or concatenated (concat).
The pull term averages over every centre (cluster_pull=all, the reference), which draws each z towards
the mean of all centres; cluster_pull=nearest pulls z only towards its own centre (the k-means objective).
Pooled outputs share one dominant direction (mean pairwise cosine 0.97 on Beauty with the public
checkpoint, which puts 99.8% of users in one intent), so intent_centering=True standardises them with
running statistics before normalising; with it and pooling=items, intents follow the planted ones on
synthetic data (tests/test_cluster_recovery.py).
Ablations (paper): elcm=False drops the cluster loss and keeps k-means centres (those of the untrained encoder,
or, with centres_without_elcm=every_epoch, fitted again before every epoch as ICLRec does); icl=False drops
the intent fusion and PCL. Both off is CL4SRec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError
from ..distributed import broadcast, gather_rows, gather_to_main, rank, world_size
from .base import Batch, evaluating, rows
from .clustering import kmeans, nearest_centre, squared_distances
from .contrastive import CL4SRec, nce

if TYPE_CHECKING:
    from ..config import Config
    from ..data import TrainSet


class IntentModel(CL4SRec):
    """Shared: mean-pooled representations of all training sequences, and the PCL term."""

    @torch.no_grad()
    def pooled(self, inputs: np.ndarray, batch_size: int = 1024) -> np.ndarray | None:
        """Pooled eval-mode representations of `inputs`. Under torch.distributed each process encodes its
        share and rank 0 receives them all, in order (the others get None)."""
        device = self.item_table.device
        share = torch.from_numpy(np.array_split(inputs, world_size())[rank()])
        # one output block allocated up front: per-batch results kept between the encoder's freed buffers
        # fragmented the heap (with keep_freed_memory)
        out = torch.empty(len(share), self.config.hidden_size, device=device)
        with evaluating(self):
            for start in range(0, len(share), batch_size):
                batch = share[start : start + batch_size].to(device)
                out[start : start + len(batch)] = self.pool(self.sequence_output(batch), batch).float()
        gathered = gather_to_main(out)
        return None if gathered is None else gathered.cpu().numpy()

    def cluster(self, train: TrainSet) -> torch.Tensor:
        """k-means centroids [K, d] of the pooled representations of all training sequences (ICLRec's
        E-step, ELCRec's initialisation), computed on rank 0 and sent to every process."""
        c = self.config
        if len(train.inputs) < c.num_clusters:
            raise ConfigError(
                f"num_clusters={c.num_clusters} exceeds the {len(train.inputs)} training sequences; lower num_clusters"
            )
        x = self.pooled(train.inputs, c.eval_batch_size)
        centroids = torch.zeros(c.num_clusters, c.hidden_size)
        if x is not None:
            centroids = torch.from_numpy(
                kmeans(
                    self.clustered(x),
                    c.num_clusters,
                    c.kmeans_iters,
                    c.kmeans_restarts,
                    c.seed,
                    gpu=self.item_table.device.type == "cuda",
                )
            )
        return broadcast(centroids.to(self.item_table.device))

    def clustered(self, x: np.ndarray) -> np.ndarray:
        """What k-means clusters: the pooled representations as they are."""
        return x

    def pool(self, h: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """[B, L, d] -> [B, d]: mean over all positions (pooling=all, the reference) or over item positions."""
        if self.config.pooling == "all":
            return h.mean(1)
        present = (inputs > 0).unsqueeze(-1).to(h.dtype)
        return (h * present).sum(1) / present.sum(1).clamp(min=1)

    @property
    def centres(self) -> torch.Tensor:
        raise NotImplementedError

    def represent(self, histories: torch.Tensor) -> torch.Tensor:
        """[B, max_len] full-width histories -> [B, d], the representation intents are assigned from."""
        raise NotImplementedError

    @torch.no_grad()
    def assign(self, histories: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Intent of each full-width [B, max_len] history (nearest centre) and the distance to it."""
        return self.nearest(self.represent(histories))

    @torch.no_grad()
    def nearest(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest centre of each representation [B, d] and the distance to it."""
        best = squared_distances(z, self.centres).min(1)
        return best.indices, best.values.clamp(min=0).sqrt()

    def intent_cl(self, views: torch.Tensor, out: torch.Tensor, intents: torch.Tensor) -> torch.Tensor:
        """PCL between the pooled view outputs and each sequence's intent."""
        out = self.plan.intent_view_outputs(self.sequence_output, views, out)
        p1, p2 = self.pool(out, views).chunk(2)
        t = self.config.temperature
        return (nce(p1, intents, t) + nce(p2, intents, t)) / 2


class ICLRec(IntentModel):
    def __init__(self, n_items: int, config: Config) -> None:
        super().__init__(n_items, config)
        self.register_buffer("centroids", torch.zeros(config.num_clusters, config.hidden_size))
        self.register_buffer("unit_centroids", torch.zeros(config.num_clusters, config.hidden_size))

    def start_epoch(self, train: TrainSet) -> None:
        centroids = self.cluster(train)
        self.centroids.copy_(centroids)
        self.unit_centroids.copy_(F.normalize(centroids, dim=1))

    @property
    def centres(self) -> torch.Tensor:
        return self.centroids

    def represent(self, histories: torch.Tensor) -> torch.Tensor:
        return self.pool(self.sequence_output(histories), histories)

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        inputs = batch.inputs
        h, views, out = self.encode_with_views(inputs)
        nearest = nearest_centre(self.pool(h.detach(), inputs), self.centroids)
        return {
            "rec": self.rec_loss(h, batch),
            "cl": self.instance_cl(out, views),
            "intent_cl": c.intent_cl_weight * self.intent_cl(views, out, self.unit_centroids[nearest]),
        }


class ELCRec(IntentModel):
    def __init__(self, n_items: int, config: Config) -> None:
        super().__init__(n_items, config)
        # the reference's name, so its checkpoints load as they are
        self.cluster_centers = nn.Parameter(
            torch.zeros(config.num_clusters, config.hidden_size), requires_grad=config.elcm
        )
        # optional: standardise representations (running statistics, like BatchNorm) before normalising
        self.centering = nn.BatchNorm1d(config.hidden_size, affine=False) if config.intent_centering else None

    @property
    def centres(self) -> torch.Tensor:
        return self.cluster_centers

    def prepare(self, train: TrainSet) -> None:
        self.fit_centres(train)
        if self.centering is not None:
            broadcast(self.centering.running_mean)
            broadcast(self.centering.running_var)

    def start_epoch(self, train: TrainSet) -> None:
        """Without ELCM, every_epoch fits the centres again before each epoch (ICLRec's E-step)."""
        if not self.config.elcm and self.config.centres_without_elcm == "every_epoch":
            self.fit_centres(train)

    def fit_centres(self, train: TrainSet) -> None:
        with torch.no_grad():
            self.cluster_centers.copy_(F.normalize(self.cluster(train), dim=1))

    def clustered(self, x: np.ndarray) -> np.ndarray:
        """With intent_centering, k-means clusters what the loss will see: standardised, unit-length vectors
        (and the running statistics start from the data's)."""
        if self.centering is None:
            return x
        mean, var = x.mean(0), x.var(0)
        self.centering.running_mean.copy_(torch.from_numpy(mean))
        self.centering.running_var.copy_(torch.from_numpy(var))
        return F.normalize(torch.from_numpy((x - mean) / np.sqrt(var + self.centering.eps)), dim=1).numpy()

    def fuse(self, out: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """Give every position of the views' outputs its nearest centre: added (shift) or concatenated (concat)."""
        centres = self.cluster_centers
        nearest = self.plan.at_items(lambda h: rows(centres, nearest_centre(h, centres.detach())), out.detach(), views)
        return out + nearest if self.config.intent_fusion == "shift" else torch.cat([out, nearest], -1)

    def unit_representation(self, h: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """z [B, d]: the pooled outputs h [B, L, d] (standardised with intent_centering), unit length."""
        x = self.pool(h, inputs)
        c = self.centering
        if c is not None and c.training:  # by the statistics of the global batch, as in one process
            everyone = gather_rows(x)  # gradients reach each process's rows from every process's loss
            if len(everyone) < 2:  # one row (a last batch): no statistics; standardised by the running ones
                everyone = F.batch_norm(everyone, c.running_mean, c.running_var, eps=c.eps)
            else:  # every process updates the running statistics alike
                everyone = c(everyone)
            x = everyone.chunk(world_size())[rank()]
        elif c is not None:
            x = c(x)
        return F.normalize(x, dim=1)

    def represent(self, histories: torch.Tensor) -> torch.Tensor:
        return self.unit_representation(self.sequence_output(histories), histories)

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        inputs = batch.inputs
        h, views, out = self.encode_with_views(inputs)
        terms = {"rec": self.rec_loss(h, batch), "cl": self.instance_cl(self.fuse(out, views) if c.icl else out, views)}
        with torch.no_grad():
            self.cluster_centers.copy_(F.normalize(self.cluster_centers, dim=1))
        distances = squared_distances(self.unit_representation(h, inputs), self.cluster_centers)  # [B, K]
        if c.elcm:
            centres = self.cluster_centers
            pull = distances.mean() if c.cluster_pull == "all" else distances.min(1).values.mean()
            terms["cluster"] = c.trade_off * (pull - squared_distances(centres, centres).mean())
        if c.icl:
            terms["intent_cl"] = c.intent_cl_weight * self.intent_cl(
                views, out, self.cluster_centers[distances.argmin(1)]
            )
        return terms
