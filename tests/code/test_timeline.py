"""The loop's three target figures, worked out by hand on a made-up timeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.simulation.timeline import WindowRow, loop_figures, plot_timeline


def row(n: int, end: str, hit: float, decision: str = "hold: threshold", version: str = "1", requests: int = 300) -> WindowRow:
    return WindowRow(n, end, requests, hit, 0.2, 0.1, decision, version)


ROWS = [
    row(1, "2011-10-01 10:00", 0.30),
    row(2, "2011-10-05 10:00", 0.34, "retrain → Completed", "2"),  # a false alarm before the shift
    row(3, "2011-10-25 10:00", 0.20, "hold: hysteresis", "2"),  # the first shifted window
    row(4, "2011-10-28 10:00", 0.18, "retrain → Completed", "3"),
    row(5, "2011-11-02 10:00", 0.28, version="3"),
    row(6, "2011-11-06 10:00", 0.32, version="3"),
    row(7, "2011-11-07 10:00", 0.10, version="3", requests=30),  # a short last window
]


def test_figures_from_a_timeline() -> None:
    figures = loop_figures(ROWS, "2011-10-22")
    assert figures.undrifted_windows == 2
    assert figures.retrains_without_shift == 1
    assert figures.detected_after_windows == 1  # window 4 retrained, one after the first shifted window 3
    assert figures.pre_shift_hit_rate == pytest.approx(0.32)
    post = (0.28 * 300 + 0.32 * 300 + 0.10 * 30) / 630  # hits over requests, not a mean of windows
    assert figures.post_retrain_hit_rate == pytest.approx(post)
    assert figures.recovery == pytest.approx(post / 0.32)
    assert figures.line() == "loop: detected-after-windows=1 recovery=0.908 retrains-without-shift=1"


def test_a_shift_never_detected_says_so() -> None:
    calm = [row(n, f"2011-10-{n:02d} 10:00", 0.3) for n in range(1, 6)]
    figures = loop_figures(calm, "2011-10-03")
    assert figures.detected_after_windows is None and figures.recovery is None
    assert figures.line() == "loop: detected-after-windows=never recovery=n/a retrains-without-shift=0"
    with pytest.raises(ValueError, match="nothing to compare"):
        loop_figures(calm, "2011-09-01")


def test_plot_is_written(tmp_path: Path) -> None:
    path = plot_timeline(ROWS, "2011-10-22", tmp_path / "loop.png", threshold=0.5)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_a_retrain_reads_as_promoted_kept_or_deployed_as_challenger() -> None:
    from recsys.app.loop import CanaryStep, retrain_text
    from recsys.challengers import Challenger

    done = ("Completed", "run-id")
    assert retrain_text(done, "1", "2", None) == "retrain → Completed"  # direct mode: promoted
    assert retrain_text(done, "1", "1", None) == "retrain → Completed, not promoted: champion kept"
    assert retrain_text(None, "1", "1", None) == "retrain → not started, not promoted: champion kept"
    online = Challenger("canary", "2", "2026-12-03T10:00:00+00:00")
    assert retrain_text(done, "1", "1", online) == "retrain → Completed, v2 deployed as shadow+canary"
    assert [CanaryStep(a, "1").text for a in ("hold", "promote", "rollback")] == ["canary: hold", "canary: promoted", "canary: rolled back"]
