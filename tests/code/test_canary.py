"""The canary rule on hand-made windows (promote, hold, roll back; errors and latency at once),
its intervals against published values, and the per-arm and shadow figures read from a log."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recsys.monitoring.canary import (
    ArmCounts,
    CanaryRule,
    CanaryWindow,
    canary_window,
    decide_canary,
    newcombe,
    shadow_window,
    wilson,
    windows_since,
)
from recsys.monitoring.request_log import online_hits, read_feedback, read_request_log
from recsys.schemas import FeedbackRecord, RequestRecord
from recsys.serving.logic import RequestLog
from recsys.settings import Settings
from tests.conftest import log_record

RULE = CanaryRule(min_users=50, windows=2, margin=0.05, max_error_rate=0.0, max_p99_ms=50.0)
CHAMPION = ArmCounts(users=900, requests=4500, hits=450)  # hit rate 0.10


def window(canary: ArmCounts, end: str = "2011-10-01T00:00:00", champion: ArmCounts = CHAMPION) -> CanaryWindow:
    return CanaryWindow(end, champion, canary)


def test_wilson_and_newcombe_match_published_values() -> None:
    ten = wilson(10, 100)  # the textbook example: 0.0552 to 0.1744
    assert (ten.rate, round(ten.low, 4), round(ten.high, 4)) == (0.1, 0.0552, 0.1744)
    assert (wilson(0, 10).low, round(wilson(0, 10).high, 4)) == (0.0, 0.2775)
    diff = newcombe(wilson(56, 70), wilson(48, 80))  # Newcombe (1998), method 10: 0.0524 to 0.3339
    assert (round(diff.rate, 4), round(diff.low, 4), round(diff.high, 4)) == (0.2, 0.0524, 0.3339)
    with pytest.raises(ValueError):
        wilson(0, 0)


def test_a_better_canary_is_promoted_after_the_required_windows_only() -> None:
    better = ArmCounts(users=100, requests=500, hits=100)  # 0.20 against 0.10
    first = decide_canary([window(better)], RULE)
    assert first.action == "hold" and "1 < 2 counting windows" in first.reasons[-1]
    second = decide_canary([window(better), window(better, "2011-10-02T00:00:00")], RULE)
    assert second.action == "promote" and second.counting_windows == 2
    assert second.canary is not None and second.canary.rate == 0.2 and second.difference is not None and second.difference.low > 0


def test_a_worse_canary_is_rolled_back_in_its_first_counting_window() -> None:
    worse = ArmCounts(users=100, requests=500, hits=10)  # 0.02 against 0.10
    decision = decide_canary([window(worse)], RULE)
    assert decision.action == "rollback" and decision.rolled_back_by == ["hit_rate"]
    assert decision.difference is not None and decision.difference.high < -0.05 * 0.10


def test_a_canary_too_close_to_call_is_held() -> None:
    close = ArmCounts(users=100, requests=500, hits=48)  # 0.096: within noise of 0.10, on either side of the margin
    decision = decide_canary([window(close), window(close, "2011-10-02T00:00:00")], RULE)
    assert decision.action == "hold" and "straddles" in decision.reasons[-1]
    assert decision.difference is not None and decision.difference.low < -0.005 < decision.difference.high


def test_too_few_users_hold_even_a_bad_looking_canary() -> None:
    few = ArmCounts(users=20, requests=100, hits=0)
    decision = decide_canary([window(few)], RULE)
    assert decision.action == "hold" and "50 users in each arm" in decision.reasons[0] and decision.counting_windows == 0
    assert decide_canary([], RULE).action == "hold"


def test_a_canary_whose_arm_errors_is_rolled_back_at_once() -> None:
    failing = ArmCounts(users=5, requests=40, hits=10, errors=1)  # too few users for the rate rule: errors need none
    decision = decide_canary([window(failing)], RULE)
    assert decision.action == "rollback" and decision.rolled_back_by == ["errors"] and "1 of 40" in decision.reasons[0]
    tolerant = CanaryRule(min_users=50, max_error_rate=0.05)
    assert decide_canary([window(failing)], tolerant).action == "hold"  # 2.5% is within a 5% bound


def test_a_slow_canary_is_rolled_back_at_once_even_when_its_hit_rate_is_better() -> None:
    slow = ArmCounts(users=100, requests=500, hits=100, p99_ms=80.0)
    decision = decide_canary([window(slow), window(slow, "2011-10-02T00:00:00")], RULE)
    assert decision.action == "rollback" and decision.rolled_back_by == ["latency"]
    fast = ArmCounts(users=100, requests=500, hits=100, p99_ms=20.0)
    assert decide_canary([window(fast), window(fast, "2011-10-02T00:00:00")], RULE).action == "promote"


def test_the_rule_comes_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_CANARY_MIN_USERS", "7")
    monkeypatch.setenv("RECSYS_CANARY_WINDOWS", "3")
    monkeypatch.setenv("RECSYS_CANARY_MARGIN", "0.1")
    monkeypatch.setenv("RECSYS_CANARY_MAX_ERROR_RATE", "0.02")
    monkeypatch.setenv("RECSYS_CANARY_MAX_P99_MS", "25")
    assert CanaryRule.from_settings(Settings()) == CanaryRule(7, 3, 0.1, 0.02, 25.0)
    assert Settings().promotion_mode == "direct" and Settings().canary_share == 0.1 and Settings().shadow_share == 1.0


def line(request_id: str, user: str, arm: str = "champion", **fields: object) -> RequestRecord:
    return log_record(request_id, user).model_copy(update={"arm": arm, **fields})


def test_arm_counts_and_shadow_figures_are_read_from_the_logs(tmp_path: Path) -> None:
    log, events = RequestLog(tmp_path / "requests.jsonl"), RequestLog(tmp_path / "events.jsonl")
    for record in [
        line("a", "p1", items=["x", "y"], latency_us=1000.0, shadow_items=["x", "z"], shadow_us=2000.0),
        line("b", "p1", items=["x", "y"], latency_us=1000.0, shadow_items=["z", "w"], shadow_us=4000.0),
        line("c", "p2", items=["y", "x"], latency_us=3000.0, shadow_error="ValueError: boom"),
        line("d", "p3", "canary", items=["q", "r"], latency_us=9000.0),
        line("e", "p4", "champion", items=["x"], latency_us=1000.0, canary_error="AssertionError"),  # the canary failed: its error, its user
        log_record("old", "p5"),  # a line from before challengers: the champion's
    ]:
        log.append(record)
    for answer, item in [("a", "z"), ("b", "y"), ("d", "q")]:
        at = "2026-12-03T00:00:01+00:00"
        feedback = FeedbackRecord(request_id=f"f-{answer}", served_at=at, user_id=None, item_id=item, event="view", answer_request_id=answer, model_version="1")
        events.append(feedback)
    requests = read_request_log(tmp_path / "requests.jsonl")
    got = canary_window(requests, online_hits(requests, tmp_path / "events.jsonl"), "2026-12-04T00:00:00")
    assert got.champion == ArmCounts(users=3, requests=4, hits=2, errors=0, p99_ms=pytest.approx(2.96))  # 1, 1, 3 ms: 1 + 0.98 * 2
    assert got.canary == ArmCounts(users=2, requests=2, hits=1, errors=1, p99_ms=9.0)
    shadow = shadow_window(requests, read_feedback(tmp_path / "events.jsonl"))
    # a: overlap {x} of 2, feedback z only in the shadow's list; b: no overlap, y only in the champion's
    assert (shadow.requests, shadow.scored, shadow.errors) == (6, 2, 1)
    assert shadow.overlap_at_k == 0.25 and shadow.champion_hit_rate == 0.5 and shadow.counterfactual_hit_rate == 0.5
    assert shadow.p50_ms == 3.0 and shadow.p99_ms == pytest.approx(3.98)


def test_a_window_without_a_shadow_has_no_shadow_figures(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "requests.jsonl")
    log.append(log_record("a", "p1"))
    no_feedback = pd.DataFrame(columns=list(FeedbackRecord.model_fields))
    figures = shadow_window(read_request_log(tmp_path / "requests.jsonl"), no_feedback)
    assert (figures.requests, figures.scored, figures.overlap_at_k, figures.counterfactual_hit_rate) == (1, 0, None, None)


def test_the_canary_s_windows_are_its_lines_since_it_was_deployed_in_windows_of_n(tmp_path: Path) -> None:
    log, events = RequestLog(tmp_path / "requests.jsonl"), RequestLog(tmp_path / "events.jsonl")
    log.append(line("before", "p0", "canary", served_at="2026-12-02T23:59:59+00:00"))  # an earlier canary's
    for i in range(5):
        log.append(line(f"r{i}", f"p{i}", "canary" if i % 2 else "champion", served_at=f"2026-12-03T00:00:0{i}+00:00", event_time=f"2011-10-01T00:00:0{i}"))
    at = "2026-12-03T00:01:00+00:00"
    events.append(FeedbackRecord(request_id="f", served_at=at, user_id=None, item_id="i0", event="view", answer_request_id="r1", model_version="2"))
    got = windows_since(tmp_path / "requests.jsonl", tmp_path / "events.jsonl", "2026-12-03T00:00:00+00:00", 2)
    assert [w.end for w in got] == ["2011-10-01T00:00:02", "2011-10-01T00:00:04", "2011-10-01T00:00:05"]  # the last one partial
    assert [(w.champion.requests, w.canary.requests, w.canary.hits) for w in got] == [(1, 1, 1), (1, 1, 0), (1, 0, 0)]
    assert windows_since(tmp_path / "absent.jsonl", tmp_path / "events.jsonl", at, 2) == []  # no traffic yet: no window
