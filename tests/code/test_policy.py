"""Each guardrail stops a retrain when it should, and only then."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from recsys.monitoring.drift import DriftResult
from recsys.monitoring.policy import (
    Decision,
    NewData,
    PolicyConfig,
    WindowCheck,
    WindowOutcome,
    append_history,
    decide,
    judge_window,
    load_history,
)

NOW = datetime(2011, 11, 1, 12, 0)
CONFIG = PolicyConfig(threshold=0.5, min_window=100, consecutive=2, cooldown_hours=48, max_retrains_per_day=1, min_new_interactions=500)


def drift(share: float = 0.75, n: int = 500) -> DriftResult:
    return DriftResult(share, ["known_user", "history_len"], 1000, n, Path("r.html"), None)


def outcome(hours_ago: float, drifted: bool = True, retrain: bool = False) -> WindowOutcome:
    return WindowOutcome((NOW - timedelta(hours=hours_ago)).isoformat(), 0.75 if drifted else 0.1, drifted, retrain)


def test_all_clear_retrains() -> None:
    d = decide(drift(), CONFIG, [outcome(6)], NOW, new_interactions=5000, gate_passed=True)
    assert d.retrain and d.blocked_by == []


def test_below_threshold_never_retrains() -> None:
    d = decide(drift(0.25), CONFIG, [outcome(6)], NOW, 5000, True)
    assert not d.retrain and d.blocked_by == ["threshold"]


def test_hysteresis_needs_consecutive_drifted_windows() -> None:
    assert decide(drift(), CONFIG, [], NOW, 5000, True).blocked_by == ["hysteresis"]
    assert decide(drift(), CONFIG, [outcome(12), outcome(6, drifted=False)], NOW, 5000, True).blocked_by == ["hysteresis"]
    # a retrain resets the streak: the drift before it does not count again
    retrained = [outcome(100, retrain=True)]
    assert decide(drift(), CONFIG, retrained, NOW, 5000, True).blocked_by == ["hysteresis"]


def test_cooldown_after_a_retrain() -> None:
    history = [outcome(30, retrain=True), outcome(6)]
    d = decide(drift(), CONFIG, history, NOW, 5000, True)
    assert d.blocked_by == ["cooldown"]
    assert "cooldown 48 h" in d.reasons[-1]
    assert decide(drift(), CONFIG, [outcome(60, retrain=True), outcome(6)], NOW, 5000, True).retrain


def test_daily_cap() -> None:
    config = PolicyConfig(threshold=0.5, consecutive=2, cooldown_hours=1, max_retrains_per_day=1, min_new_interactions=0)
    d = decide(drift(), config, [outcome(5, retrain=True), outcome(3)], NOW, 5000, True)
    assert d.blocked_by == ["daily_cap"]


def test_minimum_new_data_and_small_window() -> None:
    d = decide(drift(n=50), CONFIG, [outcome(6)], NOW, new_interactions=10, gate_passed=True)
    assert d.blocked_by == ["min_window", "min_new_data"]


def test_gx_gate_failure_blocks() -> None:
    d = decide(drift(), CONFIG, [outcome(6)], NOW, 5000, gate_passed=False)
    assert d.blocked_by == ["gx_gate"] and "GX gate" in d.reasons[-1]


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        PolicyConfig(threshold=1.5)
    with pytest.raises(ValueError, match="at least 1"):
        PolicyConfig(consecutive=0)


def test_history_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "policy" / "history.json"
    assert load_history(path) == []
    append_history(path, outcome(2))
    append_history(path, outcome(1, retrain=True))
    assert load_history(path) == [outcome(2), outcome(1, retrain=True)]


def test_online_quality_drop_is_a_retrain_signal() -> None:
    def calm(days: int, hit_rate: float, drifted: bool = False) -> WindowOutcome:
        return WindowOutcome((NOW - timedelta(days=days)).isoformat(), 0.0, drifted, False, hit_rate, "1")

    # the baseline is the mean of version 1's calm windows (0.36, 0.40): the drifted 0.10 is left out
    history = [calm(20, 0.36), calm(16, 0.40), calm(12, 0.10, drifted=True), outcome(6)]
    fell = decide(drift(0.1), CONFIG, history, NOW, 5000, True, hit_rate=0.25, version="1")
    assert fell.retrain and "hit rate 0.250 < 80% of version 1's calm windows (0.380)" in fell.reasons
    steady = decide(drift(0.1), CONFIG, history, NOW, 5000, True, hit_rate=0.31, version="1")
    assert not steady.retrain and steady.blocked_by == ["threshold"]
    # a new version is judged against its own calm windows, not the old one's
    fresh = decide(drift(0.1), CONFIG, history, NOW, 5000, True, hit_rate=0.25, version="2")
    assert not fresh.retrain


def test_policy_config_from_settings() -> None:
    """The guardrails read the settings; the settings import nothing of the project (serving ships without monitoring)."""
    import ast
    from pathlib import Path

    from recsys.settings import Settings

    config = PolicyConfig.from_settings(Settings(drift_threshold=0.3, min_window=50, drift_consecutive=3, max_hit_rate_drop=0.1))
    assert (config.threshold, config.min_window, config.consecutive, config.max_hit_rate_drop) == (0.3, 50, 3, 0.1)
    import recsys.settings

    source = ast.parse(Path(recsys.settings.__file__).read_text())
    imported = [n.module for n in ast.walk(source) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(source) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and m.startswith("recsys")], imported


def test_a_window_is_judged_and_remembered_and_new_data_is_measured_only_when_it_would_retrain(tmp_path: Path) -> None:
    history = tmp_path / "history.json"
    measured: list[str] = []

    def new_data(gate_passed: bool) -> Callable[[], NewData]:
        def measure() -> NewData:
            measured.append("measured")
            return NewData(5000, gate_passed, "docs/index.html")

        return measure

    calm = judge_window(drift(0.25), CONFIG, history, NOW.isoformat(), None, "3", new_data(True))
    assert (calm.retrain, calm.new_data, measured) == (False, None, [])  # under the threshold: nothing more to measure
    first = judge_window(drift(), CONFIG, history, (NOW + timedelta(hours=1)).isoformat(), None, "3", new_data(True))
    assert (first.decision.blocked_by, measured) == (["hysteresis"], [])  # held back by another rule: not measured either
    blocked = judge_window(drift(), CONFIG, history, (NOW + timedelta(hours=2)).isoformat(), None, "3", new_data(False))
    assert measured == ["measured"] and blocked.new_data == NewData(5000, False, "docs/index.html")
    assert not blocked.retrain and blocked.decision.blocked_by == ["gx_gate"]  # decided again with the measured data
    ready = judge_window(drift(), CONFIG, history, (NOW + timedelta(hours=3)).isoformat(), 0.3, "3", new_data(True))
    assert ready.retrain and ready.hit_rate == 0.3
    assert [(o.drifted, o.retrain) for o in load_history(history)] == [(False, False), (True, False), (True, False), (True, True)]


def test_a_window_check_round_trips_as_json() -> None:
    check = WindowCheck(NOW.isoformat(), drift(), 0.2, Decision(False, ["because"], ["threshold"]), NewData(7, True, "d"))
    adapter = TypeAdapter(WindowCheck)
    assert adapter.validate_json(adapter.dump_json(check)) == check
