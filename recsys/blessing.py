"""Blessing: a candidate becomes champion only if it is not worse on the same test split.

The decision is data (thresholds, values, reasons) so it can be logged and shown to people,
never a silent boolean. An optional cost rule (`CostRule`, off by default) weighs compute: a
candidate much dearer to train or to serve than the champion must also beat it by a margin,
because 1% better at ten times the cost is usually the wrong trade. The value the candidate had to
reach (`threshold`) and each model's 95% interval of the metric, where its metrics carry one
(`<metric>_lo`/`_hi`), are part of the verdict, so a reader sees whether a lead is larger than the
noise of the test users (recsys.blessing_chart draws them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

BLESSING_METRIC = "ndcg_at_10"
COSTS = ("train_cpu_s", "serve_cpu_us_per_user")  # training CPU seconds; ranking CPU µs per user


@dataclass(frozen=True)
class CostRule:
    """Above `max_factor` times the champion's training or serving cost, beat it by `min_gain` (relative)."""

    max_factor: float = 2.0
    min_gain: float = 0.05


@dataclass(frozen=True)
class Blessing:
    """The verdict on a candidate, with the numbers it rests on and the reasons in words."""

    blessed: bool
    metric: str
    candidate: float
    champion: float | None
    baseline: float | None
    reasons: list[str] = field(default_factory=list)
    rule: str = "quality"  # which rule decided: "quality", or "cost" when the cost rule refused
    costs: dict[str, dict[str, float]] = field(default_factory=dict)  # candidate/champion → COSTS known
    threshold: float | None = None  # what the candidate had to reach: ≥ the champion's (plus a cost margin), > the baseline's
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # candidate/champion/baseline → 95% (lo, hi)

    def to_dict(self) -> dict:
        return asdict(self)


def bless(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    baseline: dict[str, float] | None,
    metric: str = BLESSING_METRIC,
    cost_rule: CostRule | None = None,
) -> Blessing:
    """Compare on `metric`: with a champion, not worse than it; without one, beat the baseline.

    With a `cost_rule` and a champion, the costs in the metric dicts (`COSTS` keys) are
    compared too: see `_cost_rule`.
    """
    value = candidate[metric]
    known = {"candidate": candidate} | ({"champion": champion} if champion is not None else {})
    costs = {who: {k: float(m[k]) for k in COSTS if k in m} for who, m in known.items()}
    scored = known | ({"baseline": baseline} if baseline is not None else {})
    lo, hi = f"{metric}_lo", f"{metric}_hi"
    intervals = {who: (float(m[lo]), float(m[hi])) for who, m in scored.items() if lo in m and hi in m}
    if champion is not None:
        best = champion[metric]
        ok = value >= best
        verdict = "not worse than" if ok else "worse than"
        reasons = [f"candidate {metric}={value:.4f} is {verdict} champion's {best:.4f} on the same test split"]
        rule, threshold = "quality", best
        if cost_rule is not None:
            cost_ok, line, threshold = _cost_rule(cost_rule, value, best, metric, costs)
            reasons.append(line)
            if ok and not cost_ok:
                ok, rule = False, "cost"
        return Blessing(ok, metric, value, best, baseline and baseline[metric], reasons, rule, costs, threshold, intervals)
    if baseline is None:
        raise ValueError("the first champion must be compared with a baseline (popularity)")
    base = baseline[metric]
    ok = value > base
    verdict = "beats" if ok else "does not beat"
    reason = f"no champion yet; candidate {metric}={value:.4f} {verdict} popularity's {base:.4f}"
    return Blessing(ok, metric, value, None, base, [reason], costs=costs, threshold=base, intervals=intervals)


def _cost_rule(rule: CostRule, value: float, best: float, metric: str, costs: dict[str, dict[str, float]]) -> tuple[bool, str, float]:
    """Whether the candidate's quality pays for its cost, the reason in words, and the value it had to reach.

    The largest cost factor over the champion (training CPU seconds, serving CPU µs per user)
    decides; a cost either side did not record cannot be compared and is left out.
    """
    factors = {k: costs["candidate"][k] / costs["champion"][k] for k in COSTS if k in costs["candidate"] and costs["champion"].get(k, 0) > 0}
    if not factors:
        return True, "cost rule: no cost recorded for both candidate and champion; the quality rule decides", best
    name, factor = max(factors.items(), key=lambda kv: kv[1])
    if factor <= rule.max_factor:
        return True, f"cost rule: candidate's {name} is {factor:.2f}x the champion's (within {rule.max_factor:g}x); the quality rule decides", best
    needed = best * (1 + rule.min_gain)
    ok = value >= needed
    verdict = "pays for it" if ok else "does not pay for it"
    line = (
        f"cost rule: candidate's {name} is {factor:.2f}x the champion's (above {rule.max_factor:g}x), so it must beat "
        f"the champion's {metric} by {rule.min_gain:.0%} ({needed:.4f}); {value:.4f} {verdict}"
    )
    return ok, line, needed
