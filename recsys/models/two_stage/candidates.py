"""Stage one: the union of each retriever's top N for a user, with every retriever's score and rank.

Every retriever scores every item (a dot product, or a count), so a candidate proposed by one
retriever still carries the others' scores; its rank in a retriever that did not propose it
is the sentinel N. Seen items are never proposed (when excluded), and the count retrievers
propose only items they counted: a zero trend is no trend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.models.base import HISTORY_ROW_FAMILIES
from recsys.models.two_stage.snapshot import COUNTS, RETRIEVERS, Snapshot

BATCH = 512  # users scored at once: a (BATCH, n_items) matrix per retriever


@dataclass(frozen=True)
class Candidates:
    """Per user (rows): candidate item indices (-1 pads), and each retriever's score and rank of them."""

    items: np.ndarray  # (n_users, L) int64, -1 where padded
    scores: np.ndarray  # (n_users, L, n_retrievers) float32
    ranks: np.ndarray  # (n_users, L, n_retrievers) int32, N where the retriever did not propose it

    @property
    def valid(self) -> np.ndarray:
        return self.items >= 0


def retriever_scores(snapshot: Snapshot, users: np.ndarray) -> np.ndarray:
    """(n_retrievers, len(users), n_items) scores of every retriever, in RETRIEVERS order (0 for one not fit).

    Each user is scored alone, and EASE and item-kNN from their seen items: their export's user
    vector is the binary history row over the trained items (recsys.models.item_item), so the
    dot product is the sum of the item-item rows of the seen items. Its cost grows with the
    history, not the catalogue, which is what lets the service run stage one per request; and
    a user gets the same floats alone (serving) as in a batch (the export). iALS and the
    sequence model score with the user's vector as of the snapshot.
    """
    models, pop = snapshot.models, snapshot.base.popularity
    out = np.zeros((len(RETRIEVERS), len(users), snapshot.base.n_items), dtype=np.float32)
    for row, user in enumerate(users):
        columns = snapshot.trained_column[snapshot.base.seen(int(user))]
        for r, name in enumerate(RETRIEVERS):
            if name in HISTORY_ROW_FAMILIES:
                out[r, row] = models[name].item_vectors.T[columns].sum(axis=0)
            elif name in models and name not in COUNTS:  # iALS, and the sequence model where it was fit
                out[r, row] = models[name].item_vectors @ models[name].user_vectors[user]
    out[RETRIEVERS.index("popularity")] = pop / max(pop.max(), 1.0)
    out[RETRIEVERS.index("trend")] = snapshot.trend / max(snapshot.trend.max(), 1.0)
    return out


def candidates(snapshot: Snapshot, users: np.ndarray, n: int, exclude_seen: bool = True) -> Candidates:
    """The union of each retriever's top `n` unseen items for each user in `users` (no duplicates)."""
    parts = [_batch(snapshot, users[start : start + BATCH], n, exclude_seen) for start in range(0, len(users), BATCH)]
    items, scores, ranks = (np.concatenate([p[k] for p in parts]) for k in range(3))
    width = int((items >= 0).sum(axis=1).max(initial=0))  # pads sort last: drop the columns that are pads for everyone
    return Candidates(items[:, :width], scores[:, :width], ranks[:, :width])


def _batch(snapshot: Snapshot, users: np.ndarray, n: int, exclude_seen: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores = retriever_scores(snapshot, users)
    n_items = scores.shape[2]
    n = min(n, n_items)
    proposable = np.ones(scores.shape, dtype=bool)
    for r, name in enumerate(RETRIEVERS):
        if name in COUNTS:
            proposable[r] = scores[r] > 0  # the counts propose only what they counted
        elif name not in snapshot.retrievers:
            proposable[r] = False  # an optional retriever that was not fit proposes nothing
    if exclude_seen:
        for row, user in enumerate(users):
            proposable[:, row, snapshot.base.seen(int(user))] = False
    ranked = np.where(proposable, scores, -np.inf)
    ranks = np.full(scores.shape, n, dtype=np.int32)
    rows = np.arange(len(users))[:, None]
    proposals = []
    for r in range(len(RETRIEVERS)):
        top = np.argpartition(-ranked[r], n - 1, axis=1)[:, :n]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(ranked[r], top, axis=1), axis=1, kind="stable"), axis=1)
        ranks[r, rows, top] = np.arange(n, dtype=np.int32)
        proposals.append(np.where(np.take_along_axis(proposable[r], top, axis=1), top, n_items))
        ranks[r][~proposable[r]] = n
    union = np.sort(np.concatenate(proposals, axis=1), axis=1)
    union[:, 1:][union[:, 1:] == union[:, :-1]] = n_items  # duplicates become pads
    union = np.sort(union, axis=1)
    safe = np.where(union < n_items, union, 0)
    gathered_scores = np.stack([np.take_along_axis(scores[r], safe, axis=1) for r in range(len(RETRIEVERS))], axis=-1)
    gathered_ranks = np.stack([np.take_along_axis(ranks[r], safe, axis=1) for r in range(len(RETRIEVERS))], axis=-1)
    return np.where(union < n_items, union, -1), gathered_scores, gathered_ranks
