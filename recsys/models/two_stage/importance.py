"""Which of the ranker's features it leans on: permutation importance by feature group.

A group's importance is how much the NDCG@k of the ranker's ordering of its candidate lists
drops when that group's values are shuffled among all real candidates of all lists (the
group's columns move together, so a score and its rank stay a consistent pair). Shuffling
among all candidates, not within a list, also breaks the features that are the same for a
whole list (the user's activity), which a within-list shuffle would leave intact.

Groups, not single features: each retriever's score and rank say one thing twice, and the
item statistics are counts of the same events; shuffling one of a pair leaves its twin to
carry it. Only numpy and a scoring function are needed, so it is measured in a few forward
passes and tested without Keras.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from recsys.models.two_stage.features import NAMES
from recsys.models.two_stage.snapshot import RETRIEVERS

#: Feature groups, each shuffled as one: every retriever, then what the ranker knows beside them.
GROUPS: dict[str, tuple[str, ...]] = {
    **{r: (f"{r}_score", f"{r}_rank") for r in RETRIEVERS},
    "item_statistics": ("item_log_popularity", "item_log_trend", "item_trend_lift", "item_log_days_since_seen"),
    "user_activity": ("user_log_history", "user_log_days_since_active"),
    "recent_similarity": ("recent_similarity_mean", "recent_similarity_max"),
    "category_affinity": ("category_affinity",),
    "price_distance": ("price_distance",),
}


@dataclass(frozen=True)
class GroupDrop:
    """One group: its features, the NDCG@k with it shuffled (mean over repeats), the drop from the intact lists.

    `spread` is the standard deviation of the shuffled NDCG@k over the repeats: a drop within
    it is noise, not a feature the ranker leans on.
    """

    group: str
    features: tuple[str, ...]
    ndcg: float
    drop: float
    spread: float


@dataclass(frozen=True)
class Importance:
    """Permutation importance of every feature group on some labelled lists, largest drop first."""

    measured_on: str  # which lists: what a reader needs to judge in-sample or held out
    lists: int
    k: int
    repeats: int
    ndcg: float  # the ranker's NDCG@k on the intact lists
    groups: tuple[GroupDrop, ...]

    def as_dict(self) -> dict:
        return asdict(self)

    def metrics(self) -> dict[str, float]:
        """One metric per group, `importance_<group>_ndcg_drop`, to compare runs side by side."""
        return {f"importance_{g.group}_ndcg_drop": g.drop for g in self.groups}

    def markdown(self) -> str:
        """The table a person reads in the MLflow UI."""
        rows = [f"| {g.group} | {g.drop:+.4f} | {g.spread:.4f} | {g.ndcg:.4f} | {', '.join(g.features)} |" for g in self.groups]
        return "\n".join(
            [
                f"# Ranker feature importance (permutation, NDCG@{self.k})",
                "",
                f"Measured on {self.measured_on}: {self.lists} lists, NDCG@{self.k} {self.ndcg:.4f} intact, "
                f"each group shuffled among all real candidates {self.repeats} times.",
                "",
                f"| group | NDCG@{self.k} drop | spread over repeats | NDCG@{self.k} shuffled | features |",
                "|---|---:|---:|---:|---|",
                *rows,
                "",
            ]
        )


def list_ndcg(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Mean NDCG@k over lists ordered by `scores`: label 1 relevant, 0 not, negative a pad (never ranked).

    The ideal is the list's own (its relevant candidates first): this measures the ordering
    of the candidates, not the retrievers' recall. Lists without a relevant candidate count 0.
    """
    order = np.argsort(-np.where(labels >= 0, scores, -np.inf), axis=1, kind="stable")[:, :k]
    discounts = 1.0 / np.log2(np.arange(2, order.shape[1] + 2))
    dcg = ((np.take_along_axis(labels, order, axis=1) > 0) * discounts).sum(axis=1)
    relevant = np.minimum((labels > 0).sum(axis=1), order.shape[1])
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[relevant]
    return float(np.mean(np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0))) if len(labels) else 0.0


def permutation_importance(
    score: Callable[[np.ndarray], np.ndarray],
    features: np.ndarray,
    labels: np.ndarray,
    measured_on: str,
    groups: Mapping[str, Sequence[str]] = GROUPS,
    names: Sequence[str] = NAMES,
    k: int = 10,
    repeats: int = 3,
    seed: int = 0,
) -> Importance:
    """Each group's drop in NDCG@k when its columns are shuffled among the real candidates.

    `score` maps (lists, L, features) to (lists, L) scores; `labels` are 1, 0 and negative pads.
    """
    rng = np.random.default_rng(seed)
    ndcg = list_ndcg(score(features), labels, k)
    flat = features.reshape(-1, features.shape[-1])
    real = np.flatnonzero((labels >= 0).ravel())
    drops = []
    for group, members in groups.items():
        columns = [names.index(name) for name in members]
        shuffled_ndcg = []
        for _ in range(repeats):
            shuffled = flat.copy()
            shuffled[np.ix_(real, columns)] = flat[np.ix_(rng.permutation(real), columns)]
            shuffled_ndcg.append(list_ndcg(score(shuffled.reshape(features.shape)), labels, k))
        mean = float(np.mean(shuffled_ndcg))
        drops.append(GroupDrop(group, tuple(members), mean, ndcg - mean, float(np.std(shuffled_ndcg))))
    return Importance(measured_on, len(labels), k, repeats, ndcg, tuple(sorted(drops, key=lambda d: -d.drop)))
