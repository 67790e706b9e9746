"""Stage two's inputs: what the ranker knows about each (user, candidate) pair, all from a Snapshot.

Beside each retriever's score and rank, the features no single retriever sees: the item's
popularity, its recent trend and how long ago anyone last touched it; the user's activity; how
close the candidate is to the user's latest items (item-kNN cosine); and, where the catalogue
has them, the user's affinity for the candidate's category and price. Counts and durations are
log-scaled, so a ranker trained on a history fits the larger window it serves with.
"""

from __future__ import annotations

import numpy as np

from recsys.models.two_stage.candidates import Candidates
from recsys.models.two_stage.snapshot import RETRIEVERS, Snapshot

NAMES = (
    *(f"{r}_score" for r in RETRIEVERS),
    *(f"{r}_rank" for r in RETRIEVERS),
    "item_log_popularity",
    "item_log_trend",
    "item_trend_lift",
    "item_log_days_since_seen",
    "user_log_history",
    "user_log_days_since_active",
    "recent_similarity_mean",
    "recent_similarity_max",
    "category_affinity",
    "price_distance",
)


def features(snapshot: Snapshot, users: np.ndarray, cands: Candidates) -> np.ndarray:
    """(len(users), L, len(NAMES)) float32 features; padded candidates get zeros."""
    item = np.where(cands.valid, cands.items, 0)
    pop, trend = snapshot.base.popularity, snapshot.trend
    lift = np.log((trend + 1.0) / (trend.sum() + 1.0)) - np.log((pop + 1.0) / (pop.sum() + 1.0))
    shape = item.shape
    similarity = _recent_similarity(snapshot, users, item)
    columns = [
        *np.moveaxis(cands.scores, -1, 0),
        *np.log1p(np.moveaxis(cands.ranks, -1, 0).astype(np.float32)),
        np.log1p(pop)[item],
        np.log1p(trend)[item],
        lift[item],
        np.log1p(snapshot.days_since_seen)[item],
        np.broadcast_to(np.log1p(snapshot.history_len[users])[:, None], shape),
        np.broadcast_to(np.log1p(snapshot.days_since_active[users])[:, None], shape),
        similarity.mean(axis=-1),
        similarity.max(axis=-1),
        _category_affinity(snapshot, users, item),
        _price_distance(snapshot, users, item),
    ]
    out = np.stack(columns, axis=-1).astype(np.float32)
    out[~cands.valid] = 0.0
    return out


def _recent_similarity(snapshot: Snapshot, users: np.ndarray, item: np.ndarray) -> np.ndarray:
    """(users, L, m) item-kNN cosine of each candidate to each of the user's last m items (0 for pads).

    The item-kNN export holds the pruned similarity of every item to each trained item, in
    columns ordered like the trained items (those with a count), so column = rank among them.
    """
    knn = snapshot.models["item_knn"]
    recent = snapshot.recent[users]  # (users, m)
    cols = np.where(recent >= 0, snapshot.trained_column[np.maximum(recent, 0)], 0)
    sim = knn.item_vectors[item[:, :, None], cols[:, None, :]]
    return np.where((recent >= 0)[:, None, :], sim, 0.0)


def _category_affinity(snapshot: Snapshot, users: np.ndarray, item: np.ndarray) -> np.ndarray:
    """The user's share of history in the candidate's category (0 where it has none)."""
    category = snapshot.item_category[item]
    share = np.take_along_axis(snapshot.category_share[users], np.maximum(category, 0), axis=1)
    return np.where(category >= 0, share, 0.0)


def _price_distance(snapshot: Snapshot, users: np.ndarray, item: np.ndarray) -> np.ndarray:
    """|log price − the user's mean log price| (0 where either is unknown)."""
    distance = np.abs(snapshot.item_log_price[item] - snapshot.user_log_price[users][:, None])
    return np.nan_to_num(distance, nan=0.0)
