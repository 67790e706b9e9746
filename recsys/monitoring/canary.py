"""Judge a challenger on live traffic: the canary against the champion, and the shadow beside it.

The service (recsys.serving.arms) logs, per answer, the arm that answered, its search latency,
a canary's failure, and the shadow's list. Here a window of that log becomes counts per arm,
and the counts of the canary's windows so far become a decision with reasons, like the retrain
policy's: **rollback** (the canary goes, the champion stays), **hold** (keep serving, gather
more), or **promote** (the canary becomes champion).

The rule, from settings (`RECSYS_CANARY_*`):
- a window in which the canary failed on more than `max_error_rate` of its requests, or whose
  canary search p99 is over `max_p99_ms`, rolls it back at once: no statistics needed for harm
  that is not a matter of taste;
- a window counts when each arm served at least `min_users` users. Over the counting windows,
  pooled, the online hit rate of each arm gets a Wilson interval, and the canary-minus-champion
  difference a Newcombe interval (built from the two). With the champion's rate `h`:
  the canary is rolled back as soon as the whole interval lies below `-margin * h` (worse by more
  than the margin, confidently), and promoted when it lies above `-margin * h` (not worse by more
  than the margin: it was already blessed offline) over at least `windows` counting windows.
  Harm acts at once, safety must persist: a canary that looks fine in one window may not next.

Hit rates count requests (a request is a hit if feedback on its answer followed), and the
requests of one user are not independent: the intervals are somewhat narrower than the truth,
which `min_users` and `windows` temper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from recsys.monitoring.features import overlap
from recsys.monitoring.request_log import arm_mask, online_hits, read_request_log, window_end
from recsys.schemas import Arm
from recsys.settings import Settings

Action = Literal["promote", "hold", "rollback"]


@dataclass(frozen=True)
class ArmCounts:
    """What one arm did in one window."""

    users: int
    requests: int
    hits: int  # requests whose answer drew feedback
    errors: int = 0  # requests of the arm its model failed on (the champion answered them)
    p99_ms: float | None = None  # p99 of its search latency; None without latencies in the log

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class CanaryWindow:
    """Both arms over one monitoring window."""

    end: str  # ISO, on the traffic's clock
    champion: ArmCounts
    canary: ArmCounts


@dataclass(frozen=True)
class Interval:
    """A rate (or a difference of rates) and its confidence interval."""

    rate: float
    low: float
    high: float


@dataclass(frozen=True)
class CanaryRule:
    """The rule, set from Settings (RECSYS_CANARY_MIN_USERS, ...); z is the interval's normal quantile (95%)."""

    min_users: int = 30
    windows: int = 2
    margin: float = 0.05
    max_error_rate: float = 0.0
    max_p99_ms: float = 50.0
    z: float = 1.96

    @classmethod
    def from_settings(cls, settings: Settings) -> CanaryRule:
        return cls(
            min_users=settings.canary_min_users,
            windows=settings.canary_windows,
            margin=settings.canary_margin,
            max_error_rate=settings.canary_max_error_rate,
            max_p99_ms=settings.canary_max_p99_ms,
        )


@dataclass(frozen=True)
class CanaryDecision:
    """What to do with the canary, and why (never an empty list of reasons)."""

    action: Action
    reasons: list[str]
    counting_windows: int = 0
    champion: Interval | None = None  # pooled online hit rate over the counting windows
    canary: Interval | None = None
    difference: Interval | None = None  # canary minus champion
    rolled_back_by: list[str] = field(default_factory=list)  # the guards that fired: "errors", "latency", "hit_rate"


def wilson(hits: int, n: int, z: float = 1.96) -> Interval:
    """The Wilson score interval of a proportion: sound at small n and at rates near 0, unlike the normal one."""
    if n <= 0:
        raise ValueError("a rate needs at least one request")
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def newcombe(a: Interval, b: Interval) -> Interval:
    """The interval of a - b from the two Wilson intervals (Newcombe 1998, method 10)."""
    d = a.rate - b.rate
    return Interval(d, d - math.hypot(a.rate - a.low, b.high - b.rate), d + math.hypot(a.high - a.rate, b.rate - b.low))


def decide_canary(windows: Sequence[CanaryWindow], rule: CanaryRule) -> CanaryDecision:
    """Roll back, hold or promote the canary, from all the windows it has served so far (oldest first)."""
    guards, reasons = [], []
    for w in windows:
        c = w.canary
        if c.requests and c.error_rate > rule.max_error_rate:
            guards.append("errors")
            reasons.append(f"window ending {w.end}: the canary failed on {c.errors} of {c.requests} requests ({c.error_rate:.1%} > {rule.max_error_rate:.1%})")
        if c.p99_ms is not None and c.p99_ms > rule.max_p99_ms:
            guards.append("latency")
            reasons.append(f"window ending {w.end}: canary search p99 {c.p99_ms:.1f} ms > {rule.max_p99_ms:g} ms")
    if guards:
        return CanaryDecision("rollback", [*reasons, "rolled back at once"], rolled_back_by=sorted(set(guards)))
    counting = [w for w in windows if min(w.champion.users, w.canary.users) >= rule.min_users]
    if not counting:
        latest = f"latest: champion {windows[-1].champion.users}, canary {windows[-1].canary.users}" if windows else "no window yet"
        return CanaryDecision("hold", [f"no window with {rule.min_users} users in each arm ({latest}): hold"])
    champion = wilson(sum(w.champion.hits for w in counting), sum(w.champion.requests for w in counting), rule.z)
    canary = wilson(sum(w.canary.hits for w in counting), sum(w.canary.requests for w in counting), rule.z)
    diff = newcombe(canary, champion)
    floor = -rule.margin * champion.rate
    n = len(counting)
    reasons.append(
        f"online hit rate over {n} counting window(s): canary {canary.rate:.3f} [{canary.low:.3f}, {canary.high:.3f}], "
        f"champion {champion.rate:.3f} [{champion.low:.3f}, {champion.high:.3f}]; difference {diff.rate:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}]"
    )
    margin = f"-{rule.margin:.0%} of the champion's rate ({floor:+.3f})"
    if diff.high < floor:
        action: Action = "rollback"
        reasons.append(f"the canary is worse by more than the margin: {diff.high:+.3f} < {margin}: roll back")
    elif diff.low >= floor and n >= rule.windows:
        action = "promote"
        reasons.append(f"the canary is not worse by more than the margin: {diff.low:+.3f} >= {margin}, over {n} >= {rule.windows} windows: promote")
    elif diff.low >= floor:
        action = "hold"
        reasons.append(f"not worse by more than the margin, but over {n} < {rule.windows} counting windows: hold")
    else:
        action = "hold"
        reasons.append(f"the interval straddles {margin}: hold for more traffic")
    return CanaryDecision(action, reasons, n, champion, canary, diff, ["hit_rate"] if action == "rollback" else [])


def arm_counts(requests: pd.DataFrame, hits: pd.Series, arm: Arm) -> ArmCounts:
    """One arm's counts in a window of the request log (`read_request_log`); `hits` per request (`online_hits`)."""
    failed = requests["canary_error"].notna()
    mine = arm_mask(requests, arm)
    latencies = requests.loc[mine & ~failed, "latency_us"].dropna().to_numpy(dtype=float)
    return ArmCounts(
        users=int(requests.loc[mine, "user_id"].nunique()),
        requests=int(mine.sum()),
        hits=int(hits[mine].sum()),
        errors=int((mine & failed).sum()),
        p99_ms=float(np.percentile(latencies, 99)) / 1000 if len(latencies) else None,
    )


def canary_window(requests: pd.DataFrame, hits: pd.Series, end: str) -> CanaryWindow:
    """Both arms' counts in one window of the request log."""
    return CanaryWindow(end, arm_counts(requests, hits, "champion"), arm_counts(requests, hits, "canary"))


def log_windows(requests: pd.DataFrame, hits: pd.Series, size: int) -> list[CanaryWindow]:
    """Consecutive windows of `size` requests, oldest first; the last may be partial.

    The partial one is kept so that the error and latency guards act on the newest requests at
    once; it counts towards promotion only once both arms reach `min_users` in it.
    """
    if size <= 0:
        raise ValueError(f"a window needs at least one request, got {size}")
    chunks = [(requests.iloc[i : i + size], hits.iloc[i : i + size]) for i in range(0, len(requests), size)]
    return [canary_window(chunk, chunk_hits, window_end(chunk)) for chunk, chunk_hits in chunks]


def windows_since(request_log: Path, events_log: Path, since: str, size: int) -> list[CanaryWindow]:
    """The canary's windows: the request log's lines served since it was deployed (`since`, the server's clock).

    Hits are the feedback events' answers (`online_hits`); without an events log there are none
    to count, so every request is a miss and the hit-rate rule holds (the guards still act).
    """
    if not Path(request_log).is_file():
        return []
    requests = read_request_log(request_log)
    served = pd.to_datetime(requests["served_at"], format="ISO8601", utc=True)
    requests = requests[served >= pd.Timestamp(since)].reset_index(drop=True)
    hits = online_hits(requests, events_log)
    return log_windows(requests, hits if hits is not None else pd.Series(0.0, index=requests.index), size)


@dataclass(frozen=True)
class ShadowWindow:
    """The shadow over one window: how far its lists are from the champion's, how fast, how good (with a bias)."""

    requests: int
    scored: int  # requests the shadow ranked (its share of the window)
    errors: int
    overlap_at_k: float | None  # mean share of the champion's list the shadow's list also holds
    p50_ms: float | None  # the shadow's search latency
    p99_ms: float | None
    champion_hit_rate: float | None  # on the scored requests: feedback named an item of the champion's list
    counterfactual_hit_rate: float | None  # the same with the shadow's list


def shadow_window(requests: pd.DataFrame, feedback: pd.DataFrame) -> ShadowWindow:
    """The shadow's figures in a window of the request log, against the feedback events (`read_feedback`).

    The counterfactual hit rate is biased towards the champion: users saw the champion's list,
    so what they clicked or bought was shaped by it, and an item only the shadow proposed could
    not be chosen from a list. A shadow that only matches it is likely better; one below it is
    not proven worse. Both hit rates use one definition (feedback named an item of the list) on
    the same requests, so their gap, not their level, is what to read.
    """
    scored = requests[requests["shadow_items"].notna()]
    errors = int(requests["shadow_error"].notna().sum())
    if scored.empty:
        return ShadowWindow(len(requests), 0, errors, None, None, None, None, None)
    chosen = feedback.groupby("answer_request_id")["item_id"].agg(set) if len(feedback) else pd.Series(dtype=object)
    overlaps, champion_hits, shadow_hits = [], [], []
    for request_id, items, shadow in zip(scored["request_id"], scored["items"], scored["shadow_items"]):
        overlaps.append(overlap(items, shadow))
        picked = chosen.get(request_id, set())
        champion_hits.append(bool(picked & set(items)))
        shadow_hits.append(bool(picked & set(shadow)))
    latencies = scored["shadow_us"].dropna().to_numpy(dtype=float) / 1000
    p50, p99 = (float(np.percentile(latencies, q)) for q in (50, 99)) if len(latencies) else (None, None)
    return ShadowWindow(
        requests=len(requests),
        scored=len(scored),
        errors=errors,
        overlap_at_k=float(np.mean(overlaps)),
        p50_ms=p50,
        p99_ms=p99,
        champion_hit_rate=float(np.mean(champion_hits)),
        counterfactual_hit_rate=float(np.mean(shadow_hits)),
    )
