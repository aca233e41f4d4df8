"""Which intent each user is in now, what each intent stands for (the intent explorer), and how well learned
intents match planted ones (synthetic data)."""

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


ACTIVITY_GROUPS = ("new", "low", "medium", "high")


def activity_groups(lengths: np.ndarray) -> np.ndarray:
    """Each user's activity group (index into ACTIVITY_GROUPS): quartiles of the number of interactions, ties at
    a bound in the lower group (the paper's new, low-, medium- and high-activity users)."""
    return np.searchsorted(np.quantile(lengths, [0.25, 0.5, 0.75]), lengths, side="left")


@torch.no_grad()
def item_distances(model: IntentModel, n_items: int, batch_size: int = 1024) -> np.ndarray:
    """[n_items, K]: the distance from each item's one-item history (its representation) to every centre."""
    device = model_device(model)
    out = []
    with evaluating(model):
        for start in range(1, n_items + 1, batch_size):
            items = torch.arange(start, min(start + batch_size, n_items + 1), device=device)
            histories = torch.zeros(len(items), model.config.max_len, dtype=torch.long, device=device)
            histories[:, -1] = items
            z = model.represent(histories)
            out.append(torch.cdist(z.float(), model.centres.detach().float()).cpu())
    return torch.cat(out).numpy()


def intent_profiles(
    model: IntentModel,
    data: SequenceData,
    intents: np.ndarray,
    distances: np.ndarray,
    top: int = 10,
    representatives: int = 5,
    batch_size: int = 1024,
) -> list[dict]:
    """What each intent anyone is in stands for, largest first: its size and share of users, the users nearest its
    centre, its top items by how often they occur in its members' histories and by how near the centre the
    model places their one-item histories, and its members' activity profile (share of each activity group)."""
    group = activity_groups(data.lengths)
    near_centre = item_distances(model, data.n_items, batch_size)
    item_ids = data.item_ids.tolist()  # plain ints or strings, as JSON writes them
    owner = np.repeat(intents, data.lengths)  # the intent of the user each interaction belongs to
    profiles = []
    for intent in np.argsort(-np.bincount(intents), kind="stable"):
        members = np.flatnonzero(intents == intent)
        if not len(members):
            break
        counts = np.bincount(data.items[owner == intent], minlength=data.n_items + 1)[1:]
        frequent = np.argsort(-counts, kind="stable")[:top]
        nearest = np.argsort(near_centre[:, intent], kind="stable")[:top]
        activity = np.bincount(group[members], minlength=len(ACTIVITY_GROUPS)) / len(members)
        profiles.append(
            {
                "intent": int(intent),
                "users": len(members),
                "share": len(members) / len(intents),
                "mean_distance": float(distances[members].mean()),
                "representative_users": data.user_ids[
                    members[np.argsort(distances[members])[:representatives]]
                ].tolist(),
                "top_items_by_frequency": [[item_ids[i], int(counts[i])] for i in frequent if counts[i]],
                "top_items_by_centre": [[item_ids[i], float(near_centre[i, intent])] for i in nearest],
                "activity": dict(zip(ACTIVITY_GROUPS, activity.tolist())),
            }
        )
    return profiles
