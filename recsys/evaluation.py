"""One ranking protocol for every model: full ranking over all items, seen items excluded.

Per-user metrics take the user's relevant items (`truth`) and the ranked recommendations
(`recs`); `evaluate` averages them over every test user. A test user unknown to the model
gets the popularity fallback, exactly as the service would answer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from recsys.models.base import EmbeddingModel
from recsys.schemas import DEFAULT_K, ITEM_COL, USER_COL

KS = (10, 20)
METRICS = ("precision", "recall", "f1", "ndcg", "map", "hitrate")


def _hits(truth: set[str], recs: Sequence[str], k: int) -> np.ndarray:
    return np.array([r in truth for r in list(recs)[:k]], dtype=float)


def precision_at_k(truth: set[str], recs: Sequence[str], k: int = DEFAULT_K) -> float:
    """Share of the top-k that is relevant (k in the denominator, even if fewer were given)."""
    return float(_hits(truth, recs, k).sum() / k)


def recall_at_k(truth: set[str], recs: Sequence[str], k: int = DEFAULT_K) -> float:
    """Share of the relevant items found in the top-k."""
    return float(_hits(truth, recs, k).sum() / len(truth)) if truth else 0.0


def f1_at_k(truth: set[str], recs: Sequence[str], k: int = DEFAULT_K) -> float:
    """Harmonic mean of precision@k and recall@k for one user."""
    p, r = precision_at_k(truth, recs, k), recall_at_k(truth, recs, k)
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def ndcg_at_k(truth: set[str], recs: Sequence[str], k: int = DEFAULT_K) -> float:
    """Binary-relevance NDCG: DCG of the top-k over the DCG of an ideal ranking."""
    hits = _hits(truth, recs, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = discounts[: min(len(truth), k)].sum()
    return float((hits * discounts[: len(hits)]).sum() / ideal) if ideal > 0 else 0.0


def map_at_k(truth: set[str], recs: Sequence[str], k: int = DEFAULT_K) -> float:
    """Average precision at k: mean of precision@i at each hit i, over min(|truth|, k)."""
    hits = _hits(truth, recs, k)
    if not truth or hits.sum() == 0:
        return 0.0
    precisions = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precisions * hits).sum() / min(len(truth), k))


def hitrate_at_k(truth: set[str], recs: Sequence[str], k: int = DEFAULT_K) -> float:
    """1 if any relevant item is in the top-k, else 0."""
    return float(_hits(truth, recs, k).any())


_FUNCTIONS = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "f1": f1_at_k,
    "ndcg": ndcg_at_k,
    "map": map_at_k,
    "hitrate": hitrate_at_k,
}


def recommend_ids(model: EmbeddingModel, user_ids: Sequence[str], k: int, batch: int = 1024) -> list[list[str]]:
    """Top-k item ids for each user id (popularity for users the model does not know)."""
    out: list[list[str]] = [[] for _ in user_ids]
    known = [(pos, model.user_index[u]) for pos, u in enumerate(user_ids) if u in model.user_index]
    for start in range(0, len(known), batch):
        chunk = known[start : start + batch]
        top, _ = model.recommend(np.array([u for _, u in chunk]), k)
        for (pos, _), row in zip(chunk, top):
            out[pos] = model.item_ids[row].tolist()
    fallback = model.item_ids[model.popular(k)[0]].tolist()
    return [recs if recs or u in model.user_index else fallback for u, recs in zip(user_ids, out)]


def evaluate(model: EmbeddingModel, test: pd.DataFrame, ks: Sequence[int] = KS) -> dict[str, float]:
    """Mean of every metric@k over the test users, plus coverage and mean popularity of recs."""
    truth = test.groupby(USER_COL)[ITEM_COL].agg(set)
    users = truth.index.tolist()
    recs = recommend_ids(model, users, max(ks))
    result: dict[str, float] = {}
    for k in ks:
        for name in METRICS:
            values = [_FUNCTIONS[name](t, r, k) for t, r in zip(truth.tolist(), recs)]
            result[f"{name}_at_{k}"] = float(np.mean(values)) if values else 0.0
    top_k = [r[: min(ks)] for r in recs]
    distinct = {item for r in top_k for item in r}
    result["coverage"] = len(distinct) / max(model.n_items, 1)
    percentile = {i: p for i, p in zip(model.item_ids.tolist(), model.popularity_percentile.tolist())}
    result["avg_popularity"] = float(np.mean([percentile[i] for r in top_k for i in r])) if distinct else 0.0
    result["n_users"] = float(len(users))
    return result
