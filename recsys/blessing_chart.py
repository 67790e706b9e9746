"""The blessing as a picture: each model's metric with its 95% interval, and the line to reach.

MLflow's run charts draw bars without error bars, and its compare table of two runs' metrics
hides whether a lead is larger than the noise of the test users. This chart, logged to the
candidate's run beside `blessing.json`, shows the candidate, the champion (or, for a first
champion, the popularity baseline) on the same test split, each with its bootstrap interval,
and the threshold the candidate had to reach. Its data (`BlessingChart.to_dict`) is logged next to
it, so what the picture shows can be checked against the runs' metrics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from matplotlib.figure import Figure

from recsys.blessing import Blessing

COLORS = {"candidate": "#1f77b4", "champion": "#2ca02c", "baseline": "#7f7f7f"}


@dataclass(frozen=True)
class Bar:
    """One model on the chart: its role in the blessing, its family, the metric and its interval."""

    role: str  # "candidate", "champion" or "baseline" (popularity, for a first champion)
    family: str
    value: float
    lo: float | None  # the 95% bootstrap interval, when the model's metrics carried one
    hi: float | None

    @property
    def label(self) -> str:
        return f"{self.family}\n{self.role}"


@dataclass(frozen=True)
class BlessingChart:
    """What the chart draws: the metric, the verdict, the threshold and one bar per model compared."""

    metric: str
    blessed: bool
    rule: str
    threshold: float | None
    bars: list[Bar]

    def to_dict(self) -> dict:
        return asdict(self)


def chart_of(blessing: Blessing, families: dict[str, str]) -> BlessingChart:
    """The chart's data from a verdict; `families` names each compared model's family by role."""
    values = {"candidate": blessing.candidate, "champion": blessing.champion, "baseline": blessing.baseline}
    bars = []
    for role, value in values.items():
        if value is None:
            continue
        lo, hi = blessing.intervals.get(role, (None, None))
        bars.append(Bar(role, families[role], value, lo, hi))
    return BlessingChart(blessing.metric, blessing.blessed, blessing.rule, blessing.threshold, bars)


def plot(chart: BlessingChart) -> Figure:
    """Bars with their intervals as error bars, each value written on its bar, the threshold dashed.

    A bare `Figure` (not pyplot's): nothing global keeps it alive once logged, and no GUI backend is needed.
    """
    fig = Figure(figsize=(7, 4.2), dpi=110)
    ax = fig.subplots()
    x = range(len(chart.bars))
    ax.bar(x, [b.value for b in chart.bars], width=0.55, color=[COLORS[b.role] for b in chart.bars], alpha=0.85)
    framed = [(i, b.value, b.lo, b.hi) for i, b in enumerate(chart.bars) if b.lo is not None and b.hi is not None]
    if framed:
        at, value, lo, hi = (list(column) for column in zip(*framed))
        spread = [[v - low for v, low in zip(value, lo)], [high - v for v, high in zip(value, hi)]]
        ax.errorbar(at, value, yerr=spread, fmt="none", ecolor="black", capsize=8, linewidth=1.5, label="95% bootstrap interval")
    for i, bar in enumerate(chart.bars):
        ax.annotate(f"{bar.value:.4f}", (i, bar.value), xytext=(10, 4), textcoords="offset points", fontsize=9)
    if chart.threshold is not None:
        ax.axhline(chart.threshold, color="#d62728", linestyle="--", linewidth=1.2, label=f"threshold to bless: {chart.threshold:.4f}")
    ax.set_xticks(list(x), [b.label for b in chart.bars])
    ax.set_ylabel(chart.metric)
    ax.set_ylim(0, max([b.hi if b.hi is not None else b.value for b in chart.bars] + [chart.threshold or 0.0]) * 1.25 or 1.0)  # all zero: still an axis
    verdict = "blessed" if chart.blessed else f"not blessed ({chart.rule} rule)"
    ax.set_title(f"{chart.metric} on the test split: candidate {verdict}")
    ax.legend(loc="upper right", fontsize=9)
    fig.tight_layout()
    return fig
