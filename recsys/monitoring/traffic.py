"""Live traffic from real data: replay a later period as HTTP requests, and the reference.

A replayed request is one (user, time) visit of the later period, sent in time order with
its original time, so the service and monitor see what the shop really saw. The reference
is what the training period's own traffic looked like to a model trained `days` earlier:
users with history before then are known, the rest get the fallback, as in live serving.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
import pandas as pd

from recsys.models.base import EmbeddingModel
from recsys.schemas import DEFAULT_K, TS_COL, USER_COL
from recsys.serving.logic import recommend_one


def visits(interactions: pd.DataFrame) -> pd.DataFrame:
    """Distinct (user, time) visits in time order: one recommendation request each."""
    return interactions[[USER_COL, TS_COL]].drop_duplicates().sort_values(TS_COL, kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class ReplayStats:
    sent: int
    ok: int
    failed: int
    fallback: int
    seconds: float


def replay(
    base_url: str, requests: pd.DataFrame, k: int = DEFAULT_K, rate: float | None = None, timeout: float = 10.0
) -> ReplayStats:
    """POST each visit to `{base_url}/recommend`, at most `rate` requests/s (None: as fast as served)."""
    ok = failed = fallback = 0
    start = time.monotonic()
    with httpx.Client(base_url=base_url, timeout=timeout) as client:
        for n, row in enumerate(requests.itertuples(index=False)):
            if rate:
                delay = start + n / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            body = {"user_id": str(getattr(row, USER_COL)), "k": k, "timestamp": getattr(row, TS_COL).isoformat()}
            try:
                response = client.post("/recommend", json=body)
            except httpx.HTTPError:
                failed += 1
                continue
            if response.status_code == 200:
                ok += 1
                fallback += int(response.json()["fallback"])
            else:
                failed += 1
    return ReplayStats(len(requests), ok, failed, fallback, time.monotonic() - start)


def reference_records(
    model: EmbeddingModel, interactions: pd.DataFrame, cut: str | pd.Timestamp, days: int = 28,
    max_requests: int = 2000, k: int = DEFAULT_K, seed: int = 0,
) -> pd.DataFrame:
    """Request-log records for the last `days` of the training period, as-of `days` before `cut`."""
    cut = pd.Timestamp(cut)
    as_of = cut - pd.Timedelta(days=days)
    before = interactions[interactions[TS_COL] < as_of]
    history = before[USER_COL].value_counts()
    period = visits(interactions[(interactions[TS_COL] >= as_of) & (interactions[TS_COL] < cut)])
    if len(period) > max_requests:
        period = period.sample(max_requests, random_state=seed).sort_values(TS_COL)
    records = []
    for user, ts in zip(period[USER_COL].astype(str), period[TS_COL]):
        known = user in history.index and user in model.user_index
        rec = recommend_one(model, user if known else "\0unknown", k)
        records.append(
            {
                "request_id": f"ref-{len(records)}",
                "served_at": ts.isoformat(),
                "event_time": ts.isoformat(),
                "user_id": user,
                "k": k,
                "items": [i for i, _ in rec.items],
                "scores": [s for _, s in rec.items],
                "fallback": not known,
                "model_version": "reference",
                "history_len": int(history.get(user, 0)),
                "rec_popularity": rec.rec_popularity,
            }
        )
    if not records:
        raise ValueError(f"no training-period traffic between {as_of} and {cut} to build a reference from")
    return pd.DataFrame(records)


def window_end(records: pd.DataFrame) -> str:
    """One second after the latest event time of a log window: the end of the new data."""
    times = pd.to_datetime(records["event_time"].fillna(records["served_at"]), format="ISO8601", utc=True)
    return (times.max().tz_localize(None) + pd.Timedelta(seconds=1)).isoformat()
