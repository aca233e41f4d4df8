"""Which intent each user is in now, and how well learned intents match planted ones (synthetic data)."""

from __future__ import annotations

import numpy as np
import torch

from ..data import SequenceData, pad_left
from ..models import evaluating, model_device
from ..models.intent import IntentModel


@torch.no_grad()
def user_intents(
    model: IntentModel, data: SequenceData, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every user, from the last max_len items of the sequence: the representation intents are assigned
    from [N, d], the intent id (nearest centre) and the distance to it."""
    if not isinstance(model, IntentModel):
        raise ValueError(f"{type(model).__name__} learns no intents; use an iclrec or elcrec run")
    histories = pad_left(data.items, data.offsets[:-1], data.offsets[1:], model.config.max_len)
    device = model_device(model)
    representations, ids, distances = [], [], []
    with evaluating(model):
        for start in range(0, len(histories), batch_size):
            batch = torch.from_numpy(histories[start : start + batch_size]).to(device)
            z = model.represent(batch)
            intent, distance = model.nearest(z)
            representations.append(z.float().cpu())
            ids.append(intent.cpu())
            distances.append(distance.float().cpu())
    return torch.cat(representations).numpy(), torch.cat(ids).numpy(), torch.cat(distances).numpy()


def planted_intents(data: SequenceData, max_len: int) -> np.ndarray:
    """Each user's most frequent planted intent over the window the model reads (synthetic data only)."""
    if data.intents is None:
        raise ValueError(f"{data.name} has no planted intents (only the built-in synthetic data has them)")
    window = pad_left(data.intents + 1, data.offsets[:-1], data.offsets[1:], max_len)  # 0 marks padding
    counts = np.zeros((data.n_users, data.intents.max() + 2), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(data.n_users), max_len), window.ravel()), 1)
    return counts[:, 1:].argmax(1)


def intent_agreement(learned: np.ndarray, planted: np.ndarray) -> dict[str, float]:
    """NMI and ARI between learned and planted intents (1 = identical partitions, about 0 = chance)."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return {
        "NMI": float(normalized_mutual_info_score(planted, learned)),
        "ARI": float(adjusted_rand_score(planted, learned)),
    }
