"""One ranking protocol for every model: full ranking over all items, seen items excluded.

Per-user metrics take the user's relevant items (`truth`) and the ranked recommendations
(`recs`); `evaluate` averages them over every test user. A test user unknown to the model
gets the popularity fallback, exactly as the service would answer.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd

from recsys.models.base import EmbeddingModel
from recsys.schemas import DEFAULT_K, ITEM_COL, USER_COL

KS = (10, 20)
BOOTSTRAP = 200  # resamples of test users behind a metric's _lo/_hi
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


def recommend_ids(model: EmbeddingModel, user_ids: Sequence[str], k: int, batch: int = 1024, exclude: pd.DataFrame | None = None) -> list[list[str]]:
    """Top-k item ids for each user id (popularity for users the model does not know).

    `exclude` holds the interactions whose items must not be recommended (the split's train
    set), so models trained on different data are judged on the same ranking task; without
    it each model excludes its own seen items.
    """
    if exclude is None:
        wanted = set(user_ids)
        banned = {u: model.seen(model.user_index[u]) for u in wanted if u in model.user_index}
    else:
        rows = exclude[exclude[USER_COL].isin(set(user_ids))]
        idx = rows[ITEM_COL].map(model.item_index).dropna().astype(int)
        banned = {u: g.to_numpy() for u, g in idx.groupby(rows.loc[idx.index, USER_COL])}
    out: list[list[str]] = []
    for start in range(0, len(user_ids), batch):
        chunk = list(user_ids[start : start + batch])
        known = np.array([model.user_index.get(u, -1) for u in chunk])
        scores = np.empty((len(chunk), model.n_items), dtype=np.float32)
        scores[known >= 0] = model.user_vectors[known[known >= 0]] @ model.item_vectors.T
        scores[known < 0] = model.popularity_percentile  # the fallback, as served
        for row, user in enumerate(chunk):
            scores[row, banned.get(user, [])] = -np.inf
        out.extend(model.item_ids[r].tolist() for r in top_k_stable(scores, k))
    return out


def top_k_stable(scores: np.ndarray, k: int) -> list[np.ndarray]:
    """Each row's k best columns, ties to the lower index: a stable argsort's top k.

    Sorting whole rows (thousands of items) to keep ten took most of an evaluation; only the
    items scoring at least the row's k-th best (found by a partition) are sorted here.
    """
    k = min(k, scores.shape[1])
    if k == 0:
        return [np.empty(0, dtype=int) for _ in scores]
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
    top = []
    for row, bar in zip(scores, kth):
        candidates = np.flatnonzero(row >= bar)  # ascending: the stable sort keeps ties in index order
        top.append(candidates[np.argsort(-row[candidates], kind="stable")[:k]])
    return top


def per_user_metrics(truth: pd.Series, recs: list[list[str]], ks: Sequence[int], names: Sequence[str] = METRICS) -> dict[str, np.ndarray]:
    """Each metric@k for every user (rows aligned with `truth`), the input of means and CIs."""
    return {f"{name}_at_{k}": np.array([_FUNCTIONS[name](t, r, k) for t, r in zip(truth.tolist(), recs)], dtype=float) for k in ks for name in names}


def bootstrap_ci(values: Sequence[float] | np.ndarray, n: int = 200, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over users (resampling users with replacement)."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def evaluate(
    model: EmbeddingModel,
    test: pd.DataFrame,
    ks: Sequence[int] = KS,
    bootstrap: int = 0,
    seed: int = 0,
    exclude: pd.DataFrame | None = None,
    max_users: int | None = None,
    intervals: Collection[str] | None = None,
) -> dict[str, float]:
    """Mean of every metric@k over the test users, plus coverage and mean popularity of recs.

    With `bootstrap` > 0, each metric (or only those named in `intervals`, e.g. the one a
    blessing decides on, sparing the others' resampling) also gets `<metric>_lo`/`<metric>_hi`:
    a 95% bootstrap interval over users, so two runs can be compared with their noise in view.
    Above `max_users` test users, a fixed random sample of them is ranked (`sample_users`).
    """
    truth, n_test_users = ranked_truth(test, max_users, seed)
    users = truth.index.tolist()
    recs = recommend_ids(model, users, max(ks), exclude=exclude)
    result: dict[str, float] = {}
    for key, values in per_user_metrics(truth, recs, ks).items():
        result[key] = float(np.mean(values)) if len(values) else 0.0
        if bootstrap > 0 and (intervals is None or key in intervals):
            result[f"{key}_lo"], result[f"{key}_hi"] = bootstrap_ci(values, bootstrap, seed)
    top_k = [r[: min(ks)] for r in recs]
    distinct = {item for r in top_k for item in r}
    result["coverage"] = len(distinct) / max(model.n_items, 1)
    percentile = {i: p for i, p in zip(model.item_ids.tolist(), model.popularity_percentile.tolist())}
    result["avg_popularity"] = float(np.mean([percentile[i] for r in top_k for i in r])) if distinct else 0.0
    result["n_users"] = float(len(users))
    result["n_test_users"] = float(n_test_users)
    return result


def sample_users(users: pd.Index, max_users: int | None, seed: int = 0) -> pd.Index:
    """The test user ids, sorted, or a fixed random sample of `max_users` of them.

    Full ranking costs users × items; past a few hundred thousand users a sample of them
    measures the same mean, with its bootstrap interval saying how closely. The sample depends
    only on the test users and the seed, so every model of a run is scored on the same users.
    """
    ordered = users.sort_values()
    if max_users is None or len(ordered) <= max_users:
        return ordered
    return ordered[np.sort(np.random.default_rng(seed).choice(len(ordered), max_users, replace=False))]


def ranked_truth(test: pd.DataFrame, max_users: int | None, seed: int = 0) -> tuple[pd.Series, int]:
    """Each ranked user's test items (a set per user id, sorted by id) and the number of test users.

    Users are sampled before their item sets are built: at 20M interactions a set for each of
    850k test users held about 2 GiB that a 10k-user sample never needed.
    """
    every = pd.Index(test[USER_COL].unique())
    ranked = sample_users(every, max_users, seed)
    if len(ranked) < len(every):
        test = test[test[USER_COL].isin(ranked)]
    return test.groupby(USER_COL, observed=True)[ITEM_COL].agg(set), len(every)


def metric_curve(
    model: EmbeddingModel,
    test: pd.DataFrame,
    max_k: int = 20,
    names: Sequence[str] = ("ndcg", "recall"),
    max_users: int | None = None,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Mean metric@K for K = 1..max_k: how quality builds up along the ranked list."""
    truth, _ = ranked_truth(test, max_users, seed)
    recs = recommend_ids(model, truth.index.tolist(), max_k)
    values = per_user_metrics(truth, recs, range(1, max_k + 1), names)
    return {name: [float(values[f"{name}_at_{k}"].mean()) if len(truth) else 0.0 for k in range(1, max_k + 1)] for name in names}
