"""Turn a window's drift check into a retrain decision, behind guardrails.

Two signals call for a retrain: drift of the request features past `threshold`, and online
quality (hit rate from feedback) fallen more than `max_hit_rate_drop` below its mean over the
serving version's calm (signal-free) windows, which one noisy window cannot move much. A retrain costs compute and risks the champion, so a signal
alone is not enough: the window must
be big enough, drift must persist over `consecutive` windows (hysteresis), the last retrain
must be at least `cooldown_hours` ago, at most `max_retrains_per_day` may run in 24 hours,
enough new interactions must have arrived, and the new data must pass the GX gate. Time is
the traffic's own clock (window end), so a replay of past traffic is judged as it happened.
Every decision names each rule that held it back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from recsys.monitoring.drift import DriftResult
from recsys.settings import Settings


@dataclass(frozen=True)
class PolicyConfig:
    """The thresholds, set from Settings (RECSYS_DRIFT_THRESHOLD, ...)."""

    threshold: float = 0.5
    min_window: int = 100
    consecutive: int = 2
    cooldown_hours: float = 24.0
    max_retrains_per_day: int = 1
    min_new_interactions: int = 500
    max_hit_rate_drop: float = 0.2

    @classmethod
    def from_settings(cls, settings: Settings) -> PolicyConfig:
        """The guardrails as configured (RECSYS_DRIFT_THRESHOLD, RECSYS_MIN_WINDOW, ...)."""
        return cls(
            threshold=settings.drift_threshold,
            min_window=settings.min_window,
            consecutive=settings.drift_consecutive,
            cooldown_hours=settings.retrain_cooldown_hours,
            max_retrains_per_day=settings.max_retrains_per_day,
            min_new_interactions=settings.min_new_interactions,
            max_hit_rate_drop=settings.max_hit_rate_drop,
        )

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold is a share of columns, between 0 and 1; got {self.threshold}")
        if self.consecutive < 1:
            raise ValueError(f"consecutive must be at least 1; got {self.consecutive}")


@dataclass(frozen=True)
class WindowOutcome:
    """What one monitored window showed and what was decided; the policy's memory."""

    at: str  # window end (ISO), on the traffic's clock
    drift_share: float
    drifted: bool  # a retrain signal (drift or quality drop) was present
    retrain: bool
    hit_rate: float | None = None
    version: str = ""


@dataclass(frozen=True)
class Decision:
    """Whether to retrain, and why (never an empty list of reasons)."""

    retrain: bool
    reasons: list[str]
    blocked_by: list[str] = field(default_factory=list)


def decide(
    result: DriftResult,
    config: PolicyConfig,
    history: list[WindowOutcome] | None = None,
    at: datetime | None = None,
    new_interactions: int | None = None,
    gate_passed: bool | None = None,
    hit_rate: float | None = None,
    version: str = "",
) -> Decision:
    """Retrain only if drift is past the threshold and no guardrail holds it back.

    `new_interactions` and `gate_passed` are None when not measured (the rule is then skipped);
    the monitor measures them only for a window that would otherwise retrain.
    """
    history = history or []
    drifted = result.drift_share >= config.threshold
    cols = ", ".join(result.drifted_columns) or "none"
    relation = ">=" if drifted else "<"
    reasons = [f"drift share {result.drift_share:.2f} {relation} threshold {config.threshold:.2f} (drifted: {cols})"]
    dropped = False
    calm = [p.hit_rate for p in history if p.version == version and p.hit_rate is not None and not p.drifted]
    baseline = sum(calm) / len(calm) if calm else None
    if hit_rate is not None and baseline:
        dropped = hit_rate < (1 - config.max_hit_rate_drop) * baseline
        relation = "<" if dropped else ">="
        reasons.append(f"hit rate {hit_rate:.3f} {relation} {1 - config.max_hit_rate_drop:.0%} of version {version}'s calm windows ({baseline:.3f})")
    blocked: list[str] = []
    if not drifted and not dropped:
        return Decision(False, reasons, ["threshold"])

    def hold(rule: str, reason: str) -> None:
        blocked.append(rule)
        reasons.append(reason)

    if result.n_current < config.min_window:
        hold("min_window", f"window has {result.n_current} requests < minimum {config.min_window}")
    streak = 1
    for past in reversed(history):
        if not past.drifted or past.retrain:
            break
        streak += 1
    if streak < config.consecutive:
        hold("hysteresis", f"drift in {streak} consecutive window(s) < {config.consecutive} required")
    retrain_times = [datetime.fromisoformat(p.at) for p in history if p.retrain]
    if at is not None and retrain_times:
        since = at - max(retrain_times)
        if since < timedelta(hours=config.cooldown_hours):
            hold("cooldown", f"last retrain {since.total_seconds() / 3600:.1f} h ago < cooldown {config.cooldown_hours:g} h")
        last_day = sum(1 for t in retrain_times if at - t < timedelta(days=1))
        if last_day >= config.max_retrains_per_day:
            hold("daily_cap", f"{last_day} retrain(s) in the last 24 h >= cap {config.max_retrains_per_day}")
    if new_interactions is not None and new_interactions < config.min_new_interactions:
        hold("min_new_data", f"{new_interactions} new interactions < minimum {config.min_new_interactions}")
    if gate_passed is False:
        hold("gx_gate", "the new training data failed the GX gate")
    if not blocked:
        reasons.append("no guardrail holds it back: retrain")
    return Decision(not blocked, reasons, blocked)


@dataclass(frozen=True)
class NewData:
    """The retrain data of a window that would retrain: how much is new, and the GX gate on it."""

    interactions: int  # since the champion's training cut
    gate_passed: bool
    docs: str  # the gate's data docs


@dataclass(frozen=True)
class WindowCheck:
    """One monitored window: its drift, its online quality, the new data, and the decision."""

    window_end: str  # ISO, on the traffic's clock
    drift: DriftResult
    hit_rate: float | None  # online, from feedback events; None without feedback
    decision: Decision
    new_data: NewData | None = None  # measured only when the drift alone would retrain

    @property
    def retrain(self) -> bool:
        return self.decision.retrain


def judge_window(
    drift: DriftResult,
    config: PolicyConfig,
    history_path: Path,
    window_end: str,
    hit_rate: float | None,
    version: str,
    measure_new_data: Callable[[], NewData],
) -> WindowCheck:
    """Decide on one window and remember the outcome in the policy's history file.

    Counting the new data and gating it with GX cost more than the drift check, so they run
    (`measure_new_data`) only for a window that every other rule would let retrain; the
    decision is then taken again with them.
    """
    history = load_history(history_path)
    at = datetime.fromisoformat(window_end)
    quality = {"hit_rate": hit_rate, "version": version}
    decision = decide(drift, config, history, at, **quality)
    new_data = None
    if decision.retrain:
        new_data = measure_new_data()
        decision = decide(drift, config, history, at, new_data.interactions, new_data.gate_passed, **quality)
    signal = "threshold" not in decision.blocked_by  # drift or a quality drop was there, held back or not
    append_history(history_path, WindowOutcome(window_end, drift.drift_share, signal, decision.retrain, hit_rate, version))
    return WindowCheck(window_end, drift, hit_rate, decision, new_data)


def load_history(path: Path) -> list[WindowOutcome]:
    """The outcomes of earlier windows (empty before the first)."""
    if not path.exists():
        return []
    return [WindowOutcome(**row) for row in json.loads(path.read_text())]


def append_history(path: Path, outcome: WindowOutcome) -> None:
    """Add one window's outcome to the policy's memory file."""
    history = load_history(path) + [outcome]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(h) for h in history], indent=1))
