"""Live traffic from real data: replay a later period as HTTP requests, and the reference.

A replayed request is one (user, time) visit of the later period, sent in time order with
its original time, so the service and monitor see what the shop really saw. The reference
is what the training period's own traffic looked like to a model trained `days` earlier:
users with history before then are known (and served by the model exactly as live), the
rest get the fallback, so the reference carries a realistic share of new users.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
import pandas as pd

from recsys.models.base import EmbeddingModel
from recsys.schemas import DEFAULT_K, ITEM_COL, TS_COL, USER_COL, RequestRecord
from recsys.serving.logic import recommend_one


def visits(interactions: pd.DataFrame) -> pd.DataFrame:
    """Distinct (user, time) visits in time order, with the items bought: one request each."""
    grouped = interactions.groupby([USER_COL, TS_COL], sort=False)[ITEM_COL].agg(list).rename("bought")
    return grouped.reset_index().sort_values(TS_COL, kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class ReplayStats:
    """What a replay sent and got back; a hit is a visit that bought a recommended item,
    and each such purchase is sent to the service as feedback."""

    sent: int
    ok: int
    failed: int
    fallback: int
    hits: int
    failed_feedback: int
    seconds: float

    @property
    def hit_rate(self) -> float:
        return self.hits / self.ok if self.ok else 0.0


def replay(base_url: str, requests: pd.DataFrame, k: int = DEFAULT_K, rate: float | None = None, timeout: float = 10.0) -> ReplayStats:
    """POST each visit to `{base_url}/recommend`, at most `rate` requests/s (None: as fast as served).

    When the visit really bought a recommended item, POST /feedback for it, as a shop would.
    """
    ok = failed = fallback = hits = failed_feedback = 0
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
            if response.status_code != 200:
                failed += 1
                continue
            answer = response.json()
            ok += 1
            fallback += int(answer["fallback"])
            bought = set(getattr(row, "bought", None) or ())
            liked = [item["item_id"] for item in answer["items"] if item["item_id"] in bought]
            hits += int(bool(liked))
            for item_id in liked:  # the user really bought a recommended item: tell the service
                feedback = {"user_id": body["user_id"], "item_id": item_id, "event": "purchase", "request_id": answer["request_id"]}
                try:
                    failed_feedback += int(client.post("/feedback", json=feedback).status_code != 200)
                except httpx.HTTPError:
                    failed_feedback += 1
    return ReplayStats(len(requests), ok, failed, fallback, hits, failed_feedback, time.monotonic() - start)


def reference_records(
    model: EmbeddingModel,
    interactions: pd.DataFrame,
    cut: str | pd.Timestamp,
    days: int = 28,
    max_requests: int = 2000,
    k: int = DEFAULT_K,
    seed: int = 0,
) -> pd.DataFrame:
    """Request-log records (`RequestRecord` fields, and the `hit` online feedback would show) for
    the last `days` of the training period, served as-of `days` before `cut`."""
    cut = pd.Timestamp(cut)
    as_of = cut - pd.Timedelta(days=days)
    before = interactions[interactions[TS_COL] < as_of]
    history = before[USER_COL].value_counts()
    period = visits(interactions[(interactions[TS_COL] >= as_of) & (interactions[TS_COL] < cut)])
    if len(period) > max_requests:
        period = period.sample(max_requests, random_state=seed).sort_values(TS_COL)
    records: list[RequestRecord] = []
    hits: list[bool] = []
    for user, ts, bought in zip(period[USER_COL].astype(str), period[TS_COL], period["bought"]):
        known = user in history.index and user in model.user_index
        rec = recommend_one(model, user if known else "\0unknown", k)  # served exactly as live
        at = ts.isoformat()
        records.append(
            RequestRecord(
                request_id=f"ref-{len(records)}",
                served_at=at,
                event_time=at,
                user_id=user,
                k=k,
                items=[i for i, _ in rec.items],
                scores=[s for _, s in rec.items],
                fallback=not known,
                model_version="reference",
                history_len=rec.history_len,
                rec_popularity=rec.rec_popularity,
            )
        )
        hits.append(bool({i for i, _ in rec.items} & set(bought)))  # what online feedback would show
    if not records:
        raise ValueError(f"no training-period traffic between {as_of} and {cut} to build a reference from")
    return pd.DataFrame([r.model_dump() for r in records]).assign(hit=hits)
