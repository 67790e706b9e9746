"""Blessing: a candidate becomes champion only if it is not worse on the same test split.

The decision is data (thresholds, values, reasons) so it can be logged and shown to people,
never a silent boolean.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

BLESSING_METRIC = "ndcg_at_10"


@dataclass(frozen=True)
class Blessing:
    """The verdict on a candidate, with the numbers it rests on and the reasons in words."""

    blessed: bool
    metric: str
    candidate: float
    champion: float | None
    baseline: float | None
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def bless(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    baseline: dict[str, float] | None,
    metric: str = BLESSING_METRIC,
) -> Blessing:
    """Compare on `metric`: with a champion, not worse than it; without one, beat the baseline."""
    value = candidate[metric]
    if champion is not None:
        best = champion[metric]
        ok = value >= best
        verdict = "not worse than" if ok else "worse than"
        reason = f"candidate {metric}={value:.4f} is {verdict} champion's {best:.4f} on the same test split"
        return Blessing(ok, metric, value, best, baseline and baseline[metric], [reason])
    if baseline is None:
        raise ValueError("the first champion must be compared with a baseline (popularity)")
    base = baseline[metric]
    ok = value > base
    verdict = "beats" if ok else "does not beat"
    reason = f"no champion yet; candidate {metric}={value:.4f} {verdict} popularity's {base:.4f}"
    return Blessing(ok, metric, value, None, base, [reason])
