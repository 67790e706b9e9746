"""Turn a drift check into a retrain decision, with the reasons spelled out.

Kept deliberately small: one threshold on the drift share and a minimum window size, because
a handful of requests can look "drifted" by chance and a retrain costs real compute. Guardrails
such as a cooldown after the last retrain or hysteresis around the threshold belong here later.
Every decision carries at least one human-readable reason so logs and alerts explain themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from recsys.monitoring.reports import DriftResult


@dataclass(frozen=True)
class Decision:
    """Whether to retrain, and why (never an empty list of reasons)."""

    retrain: bool
    reasons: list[str]


def decide(result: DriftResult, threshold: float, min_window: int = 100) -> Decision:
    """Retrain when `drift_share >= threshold` on a current window of at least `min_window`."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a share of columns, between 0 and 1; got {threshold}")
    drifted = result.drift_share >= threshold
    big_enough = result.n_current >= min_window
    cols = ", ".join(result.drifted_columns) or "none"
    share = (
        f"drift share {result.drift_share:.2f} >= threshold {threshold:.2f} (drifted: {cols})"
        if drifted
        else f"drift share {result.drift_share:.2f} < threshold {threshold:.2f} (drifted: {cols})"
    )
    reasons = [share]
    if not big_enough:
        reasons.append(f"current window has {result.n_current} requests < min_window {min_window}; too few to act on")
    return Decision(retrain=drifted and big_enough, reasons=reasons)
