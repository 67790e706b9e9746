"""The loop's timeline, the three figures it is judged by, and its plot.

A row is one monitored window of replayed traffic. The figures compare windows before the
shift started with those served by the model the first post-shift retrain produced:
- detected after: windows from the first shifted one to the first retrain decision (0 means
  the very first shifted window retrained);
- recovery: online hit rate (hits over requests) after that retrain over the one before the shift;
- retrains without shift: retrain decisions among the windows before the shift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


@dataclass(frozen=True)
class WindowRow:
    """One line of the loop's timeline."""

    window: int
    end: str
    requests: int
    hit_rate: float
    fallback_share: float
    drift_share: float
    decision: str
    serving_version: str

    @property
    def retrained(self) -> bool:
        return self.decision.startswith("retrain")


@dataclass(frozen=True)
class LoopFigures:
    """The loop's targets as measured; None where the run never got there."""

    undrifted_windows: int
    retrains_without_shift: int
    detected_after_windows: int | None
    pre_shift_hit_rate: float
    post_retrain_hit_rate: float | None
    recovery: float | None

    def line(self) -> str:
        detected = "never" if self.detected_after_windows is None else str(self.detected_after_windows)
        recovery = "n/a" if self.recovery is None else f"{self.recovery:.3f}"
        return f"loop: detected-after-windows={detected} recovery={recovery} retrains-without-shift={self.retrains_without_shift}"


HEADER = f"{'win':>3} {'window end':16} {'reqs':>5} {'hit@10':>6} {'fallbk':>6} {'drift':>5}  {'serving':>7}  decision"


def format_row(row: WindowRow) -> str:
    return (
        f"{row.window:>3} {row.end:16} {row.requests:>5} {row.hit_rate:>6.3f} {row.fallback_share:>6.2f} "
        f"{row.drift_share:>5.2f}  {'v' + row.serving_version:>7}  {row.decision}"
    )


def shift_window(rows: Sequence[WindowRow], shift_at: str) -> int:
    """Index (0-based) of the first window that ends at or after `shift_at`: it holds shifted traffic."""
    return next((i for i, row in enumerate(rows) if row.end >= shift_at[:16]), len(rows))


def _hit_rate(rows: Sequence[WindowRow]) -> float | None:
    """Online hit rate over several windows: their hits over their requests (a short last
    window counts for what it holds, not as much as a full one)."""
    requests = sum(r.requests for r in rows)
    return sum(r.hit_rate * r.requests for r in rows) / requests if requests else None


def loop_figures(rows: Sequence[WindowRow], shift_at: str) -> LoopFigures:
    """The three target figures of a timeline whose injected or real shift starts at `shift_at`."""
    start = shift_window(rows, shift_at)
    before, after = rows[:start], rows[start:]
    pre = _hit_rate(before)
    if pre is None:
        raise ValueError(f"no window ends before the shift at {shift_at}: nothing to compare recovery with")
    retrain = next((i for i, row in enumerate(after) if row.retrained), None)
    post = None if retrain is None else _hit_rate(after[retrain + 1 :])
    return LoopFigures(
        undrifted_windows=len(before),
        retrains_without_shift=sum(r.retrained for r in before),
        detected_after_windows=retrain,
        pre_shift_hit_rate=pre,
        post_retrain_hit_rate=post,
        recovery=None if post is None or pre == 0 else post / pre,
    )


def plot_timeline(rows: Sequence[WindowRow], shift_at: str, path: Path, threshold: float | None = None) -> Path:
    """Hit rate, drift share and fallback share per window, the drift threshold, the shift's
    start and each retrain, as a PNG."""
    windows = [r.window for r in rows]
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(windows, [r.hit_rate for r in rows], marker="o", label="online hit rate@10")
    ax.plot(windows, [r.drift_share for r in rows], marker="s", label="drift share (request features)")
    ax.plot(windows, [r.fallback_share for r in rows], marker=".", linestyle=":", label="fallback share (unknown users)")
    if threshold is not None:
        ax.axhline(threshold, color="tab:orange", linestyle=":", alpha=0.7, label=f"drift threshold {threshold:g}")
    start = shift_window(rows, shift_at)
    if start < len(rows):
        ax.axvline(rows[start].window - 0.5, color="grey", linestyle="--", label=f"shift starts ({shift_at})")
    for row in rows:
        if row.retrained:
            ax.axvline(row.window, color="tab:red", alpha=0.6)
            ax.annotate(f"retrain → v{row.serving_version}", (row.window, 0.95), rotation=90, fontsize=8, va="top")
    ax.set_xlabel("window")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
