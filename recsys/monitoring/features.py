"""Features of requests: one numeric row per answered request, and the window's quality columns.

Nothing in a request tells us whether a recommendation was *good* (feedback arrives much
later, if ever), so we watch the traffic itself: who asks (known users vs. cold starts, how
much history they have), when they ask, and what we answer (scores, popularity of the items).
When those distributions move away from the reference window, the model is serving a
population it was not trained on. Quality columns (coverage, embedding drift, serving cost)
sit beside them and are tracked per window, never drift-tested.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from recsys.monitoring.request_log import arm_mask

#: Numeric per-request columns compared between windows. All are numbers on purpose: Evidently
#: picks a test per column from its type and cardinality (K-S / Wasserstein for many values,
#: Z-test / chi-square / Jensen-Shannon for few), which suits 0/1 flags and scores alike.
#: No weekday: a window of a few days covers only some weekdays, so against a four-week
#: reference it always "drifts" (seen on Online Retail: it fired on calm autumn windows).
FEATURES: list[str] = ["hour", "known_user", "history_len", "top_score", "mean_score", "rec_popularity", "n_items"]

#: Per-request columns of a challenger experiment (recsys.serving.arms), tracked per window on the
#: dashboard's Challengers tab and never drift-tested: the online hit rate of each arm (NaN on the
#: other arm's requests, so a window's mean is that arm's rate) and, where the shadow ranked the
#: request, the share of the champion's list its list also holds.
ARM_COLUMNS: list[str] = ["hit_champion", "hit_canary", "shadow_overlap"]


def _request_times(records: pd.DataFrame) -> pd.Series:
    """When each request happened: the client's `event_time` (replays of past traffic send
    it), else the server's `served_at`. Everything is put in UTC so windows compare."""

    def parse(col: str) -> pd.Series:
        if col not in records.columns:
            return pd.Series(pd.NaT, index=records.index, dtype="datetime64[ns, UTC]")
        return pd.to_datetime(records[col], errors="coerce", utc=True, format="ISO8601")

    return parse("event_time").fillna(parse("served_at"))


def _score_stats(scores: Any) -> tuple[float, float]:
    """(top, mean) of one request's scores; NaN when absent (Evidently drops NaN per column)."""
    if not isinstance(scores, (list, tuple)) or not scores:
        return math.nan, math.nan
    values = [float(s) for s in scores if isinstance(s, (int, float)) and not isinstance(s, bool)]
    if not values:
        return math.nan, math.nan
    return max(values), sum(values) / len(values)


def request_features(records: pd.DataFrame) -> pd.DataFrame:
    """One numeric row per request, columns `FEATURES`, indexed by when it happened (UTC).

    `history_len` is log1p-scaled because it is heavy-tailed: a few power users would
    otherwise dominate the distribution. Records with no usable timestamp are dropped
    (counted in `attrs["dropped_rows"]`): without a time they belong to no window.
    """
    if records.empty:
        empty = pd.DataFrame({c: pd.Series(dtype=float) for c in FEATURES})
        empty.index = pd.DatetimeIndex([], tz="UTC", name="event_time")
        empty.attrs["dropped_rows"] = 0
        return empty
    times = _request_times(records)
    keep = times.notna()
    records, times = records.loc[keep], times.loc[keep]

    def col(name: str) -> pd.Series:
        return records[name] if name in records.columns else pd.Series(None, index=records.index, dtype=object)

    fallback, items = col("fallback"), col("items")
    stats = [_score_stats(s) for s in col("scores")]
    history = pd.to_numeric(col("history_len"), errors="coerce").fillna(0).clip(lower=0)
    features = pd.DataFrame(
        {
            "hour": times.dt.hour.astype(int).to_numpy(),
            "known_user": [0 if v is True or v == 1 else 1 for v in fallback],
            "history_len": np.log1p(history.to_numpy(dtype=float)),
            "top_score": [t for t, _ in stats],
            "mean_score": [m for _, m in stats],
            "rec_popularity": pd.to_numeric(col("rec_popularity"), errors="coerce").to_numpy(dtype=float),
            "n_items": [len(v) if isinstance(v, (list, tuple)) else 0 for v in items],
        },
        index=pd.DatetimeIndex(times, name="event_time"),
    )
    if "hit" in records.columns:  # online quality, when the caller joined the feedback in
        features["hit"] = pd.to_numeric(records["hit"], errors="coerce").to_numpy(dtype=float)
    if "cpu_us" in records.columns and records["cpu_us"].notna().any():  # what answering cost the service, when logged
        features["cpu_us"] = pd.to_numeric(records["cpu_us"], errors="coerce").to_numpy(dtype=float)
    for column, values in _arm_columns(records).items():
        features[column] = values
    features.attrs["dropped_rows"] = int((~keep).sum())
    return features[[c for c in [*FEATURES, "hit", "cpu_us", *ARM_COLUMNS] if c in features.columns]]


def _arm_columns(records: pd.DataFrame) -> dict[str, np.ndarray]:
    """The `ARM_COLUMNS` a window has: hit per arm while a canary answers, overlap while a shadow ranks."""
    out: dict[str, np.ndarray] = {}
    if {"hit", "arm", "canary_error"} <= set(records.columns) and arm_mask(records, "canary").any():
        hit = pd.to_numeric(records["hit"], errors="coerce")
        for arm in ("champion", "canary"):
            out[f"hit_{arm}"] = hit.where(arm_mask(records, arm)).to_numpy(dtype=float)
    if "shadow_items" in records.columns and records["shadow_items"].notna().any():
        pairs = zip(records["items"], records["shadow_items"])
        out["shadow_overlap"] = np.array([overlap(items, shadow) if isinstance(shadow, (list, tuple)) else math.nan for items, shadow in pairs], dtype=float)
    return out


def overlap(items: Sequence[str], shadow: Sequence[str]) -> float:
    """overlap@k of two lists: the share of the longer one's items that both hold."""
    return len(set(items) & set(shadow)) / max(len(items), len(shadow), 1)


def add_cost(features: pd.DataFrame, price_per_core_hour: float) -> pd.DataFrame:
    """`features` with `cost_per_1k`: each answer's CPU time at `price_per_core_hour`, times 1,000.

    Its mean over a window is the serving cost of 1,000 recommendations (one per user asked),
    shown beside the online hit rate. Unchanged when the log has no CPU times (older services,
    the reference window made from training data).
    """
    if "cpu_us" not in features.columns:
        return features
    return features.assign(cost_per_1k=features["cpu_us"] * 1e-6 / 3600 * price_per_core_hour * 1000)


def add_coverage(features: pd.DataFrame, records: pd.DataFrame, catalogue_size: int) -> pd.DataFrame:
    """`features` with `coverage`: distinct items recommended in the whole window over the
    catalogue, the same on every row so Evidently's MeanValue reports it per window."""
    recommended = {item for row in records["items"] if isinstance(row, (list, tuple)) for item in row}
    return features.assign(coverage=len(recommended) / max(catalogue_size, 1))


def served_centroid(records: pd.DataFrame, item_index: dict[str, int], item_vectors: np.ndarray) -> np.ndarray:
    """Mean vector of every item recommended in the window: where in embedding space the
    service's answers (and so the users' query vectors) sit."""
    rows = [item_index[i] for items in records["items"] if isinstance(items, (list, tuple)) for i in items if i in item_index]
    return item_vectors[rows].mean(axis=0) if rows else np.zeros(item_vectors.shape[1], dtype=item_vectors.dtype)


def add_embedding_drift(features: pd.DataFrame, centroid: np.ndarray, reference_centroid: np.ndarray) -> pd.DataFrame:
    """`features` with `embedding_drift`: cosine distance between the window's and the
    reference's served-item centroids (0: same region of the embedding space), on every row.

    In float64 and never below 0: in float32 a centroid's distance to itself came out at
    -6e-8 or +6e-8 from one run to the next (the dot product's summation order)."""
    centroid, reference_centroid = np.asarray(centroid, dtype=np.float64), np.asarray(reference_centroid, dtype=np.float64)
    norm = float(np.linalg.norm(centroid) * np.linalg.norm(reference_centroid))
    distance = max(0.0, 1.0 - float(centroid @ reference_centroid) / norm) if norm else 0.0
    return features.assign(embedding_drift=distance)
