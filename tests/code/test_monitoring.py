"""Monitoring on synthetic request logs: reading, features, Evidently drift, workspace, policy.

The synthetic traffic mimics what the service logs. "Shifted" traffic is what a new audience
looks like: mostly unknown users answered by the popularity fallback (no history), at other
hours, with more popular items. The drift check must flag that and leave same-distribution
traffic alone. Drift reports are computed once per module to keep the file fast.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recsys.monitoring.drift import DriftResult, drift_report
from recsys.monitoring.features import FEATURES, request_features
from recsys.monitoring.policy import PolicyConfig, decide
from recsys.monitoring.request_log import read_request_log

PROJECT = "recsys-test"
N_REF, N_CUR = 600, 300


def make_records(n: int, seed: int, shift: bool = False) -> list[dict[str, Any]]:
    """`n` request-log records; `shift` = cold-start evening audience getting popular items."""
    rng = np.random.default_rng(seed)
    start = datetime(2011, 9, 1, tzinfo=UTC)
    p_fallback = 0.8 if shift else 0.1
    records = []
    for i in range(n):
        fallback = bool(rng.random() < p_fallback)
        hour = int(rng.normal(21, 1.5) if shift else rng.normal(12, 2.5)) % 24
        day = int(rng.integers(0, 28))
        event = start + timedelta(days=day, hours=hour, minutes=int(rng.integers(0, 60)))
        if fallback:
            scores = sorted(rng.uniform(0.2, 0.5, 10).round(4).tolist(), reverse=True)
            popularity = float(rng.beta(8, 1.5)) if shift else float(rng.beta(6, 2))
        else:
            scores = sorted(rng.uniform(0.5, 1.0, 10).round(4).tolist(), reverse=True)
            popularity = float(rng.beta(2, 3))
        records.append(
            {
                "request_id": f"{seed}-{i}",
                "served_at": (datetime(2026, 11, 28, tzinfo=UTC) + timedelta(seconds=i)).isoformat(),
                # a few requests come without event_time: served_at must stand in
                "event_time": None if i % 50 == 0 else event.replace(tzinfo=None).isoformat(),
                "user_id": f"u{rng.integers(0, 5000)}",
                "k": 10,
                "items": [f"i{j}" for j in rng.integers(0, 3000, 10)],
                "scores": scores,
                "fallback": fallback,
                "model_version": "3",
                "history_len": 0 if fallback else int(rng.lognormal(3, 1)),
                "rec_popularity": popularity,
            }
        )
    return records


def write_jsonl(path: Path, records: list[dict[str, Any]], corrupt_at: int | None = None) -> Path:
    """Write records one per line; `corrupt_at` inserts a half-written line at that position."""
    lines = [json.dumps(r) for r in records]
    if corrupt_at is not None:
        lines.insert(corrupt_at, '{"request_id": "torn", "served_at": "2026-11-')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Reference vs. same-distribution and vs. shifted traffic, both into one workspace."""
    root = tmp_path_factory.mktemp("monitoring")
    ref = read_request_log(write_jsonl(root / "ref.jsonl", make_records(N_REF, seed=1)))
    same = read_request_log(write_jsonl(root / "same.jsonl", make_records(N_CUR, seed=2)))
    shifted_raw = read_request_log(write_jsonl(root / "shift.jsonl", make_records(N_CUR, seed=3, shift=True), corrupt_at=N_CUR // 2))
    ref_f, same_f, shift_f = request_features(ref), request_features(same), request_features(shifted_raw)
    ws = root / "workspace"
    return {
        "root": root,
        "workspace": ws,
        "shifted_raw": shifted_raw,
        "same": drift_report(ref_f, same_f, root / "html" / "same.html", workspace=ws, project_name=PROJECT),
        "shift": drift_report(ref_f, shift_f, root / "html" / "shift.html", workspace=ws, project_name=PROJECT),
        "ref_f": ref_f,
    }


def test_read_request_log_skips_corrupt_lines(runs: dict[str, Any]) -> None:
    df = runs["shifted_raw"]
    assert len(df) == N_CUR
    assert df.attrs["skipped_lines"] == 1
    assert "torn" not in set(df["request_id"])


def test_read_request_log_last_n_and_garbage(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "log.jsonl", make_records(20, seed=5), corrupt_at=3)
    with path.open("a", encoding="utf-8") as fh:
        fh.write("[1, 2]\n\nnot json\n")
    df = read_request_log(path, last_n=5)
    assert list(df["request_id"]) == [f"5-{i}" for i in range(15, 20)]
    assert df.attrs["skipped_lines"] == 3  # torn line, JSON array, plain text; blank line ignored


def test_missing_log_names_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "requests.jsonl"
    with pytest.raises(FileNotFoundError, match="nope/requests.jsonl"):
        read_request_log(missing)


def test_the_log_the_service_writes_is_the_log_the_monitor_reads(tmp_path: Path) -> None:
    """Records the service appends read back field for field (a forgotten user's id is null);
    a line that is JSON but no valid record is skipped like a torn one; feedback joins its answer."""
    from recsys.monitoring.request_log import online_hits, read_feedback
    from recsys.schemas import FeedbackRecord, RequestRecord, SimilarItemsRecord
    from recsys.serving.logic import RequestLog

    written = [RequestRecord(**r) for r in make_records(5, seed=9)]
    written.append(written[0].model_copy(update={"request_id": "forgotten", "user_id": None}))
    requests, events = RequestLog(tmp_path / "requests.jsonl"), RequestLog(tmp_path / "events.jsonl")
    for record in written:
        requests.append(record)
    at = written[0].served_at
    events.append(FeedbackRecord(request_id="f1", served_at=at, user_id=None, item_id="i1", event="purchase", answer_request_id="9-2", model_version="3"))
    events.append(SimilarItemsRecord(request_id="s1", served_at=at, item_id="i1", k=2, items=["i2", "i3"], model_version="3"))
    requests.close()
    events.close()
    for path in (requests.path, events.path):
        with path.open("a", encoding="utf-8") as fh:
            fh.write('{"request_id": "no-items", "kind": "feedback", "served_at": "2026-11-28T00:00:00+00:00"}\n')
    df = read_request_log(requests.path)
    assert df.attrs["skipped_lines"] == 1 and [RequestRecord(**row) for row in df.to_dict("records")] == written
    assert read_feedback(events.path).attrs["skipped_lines"] == 1  # the lookup is valid, only not feedback
    assert online_hits(df, events.path).tolist() == [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert online_hits(df, tmp_path / "no-events.jsonl") is None  # no feedback channel yet: no hit rate at all


def test_request_features(tmp_path: Path) -> None:
    records = make_records(60, seed=7)
    feats = request_features(read_request_log(write_jsonl(tmp_path / "log.jsonl", records)))
    assert list(feats.columns) == FEATURES and len(feats) == 60
    first = records[1]  # has event_time
    assert feats["hour"].iloc[1] == datetime.fromisoformat(first["event_time"]).hour
    assert feats["hour"].iloc[0] == 0  # event_time null -> served_at 2026-11-28T00:00:00
    assert feats["known_user"].iloc[1] == int(not first["fallback"])
    assert feats["history_len"].iloc[1] == pytest.approx(math.log1p(first["history_len"]))
    assert feats["top_score"].iloc[1] == pytest.approx(max(first["scores"]))
    assert feats["n_items"].eq(10).all()
    assert request_features(pd.DataFrame()).columns.tolist() == FEATURES


def test_same_traffic_does_not_retrain(runs: dict[str, Any]) -> None:
    result: DriftResult = runs["same"]
    assert result.drift_share == 0.0 and result.drifted_columns == []  # the same distribution: no column drifts
    assert (result.n_reference, result.n_current) == (N_REF, N_CUR)
    decision = decide(result, PolicyConfig(threshold=0.5, consecutive=1))
    assert not decision.retrain and decision.blocked_by == ["threshold"]
    assert "< threshold 0.50" in decision.reasons[0]


def test_shifted_traffic_retrains(runs: dict[str, Any]) -> None:
    result: DriftResult = runs["shift"]
    assert result.drift_share >= 0.5
    assert {"known_user", "history_len"} <= set(result.drifted_columns)
    assert len(result.drifted_columns) == round(result.drift_share * len(FEATURES))
    decision = decide(result, PolicyConfig(threshold=0.5, consecutive=1))
    assert decision.retrain
    assert f"drift share {result.drift_share:.2f} >= threshold 0.50" in decision.reasons[0]


def test_small_window_vetoes_retrain(runs: dict[str, Any]) -> None:
    decision = decide(runs["shift"], PolicyConfig(threshold=0.5, consecutive=1, min_window=N_CUR + 1))
    assert not decision.retrain and decision.blocked_by == ["min_window"]
    assert any(f"< minimum {N_CUR + 1}" in r for r in decision.reasons)


def test_html_report_written(runs: dict[str, Any]) -> None:
    for key in ("same", "shift"):
        html: Path = runs[key].html_path
        assert html.is_file() and html.stat().st_size > 50_000


def test_workspace_gets_one_project_two_runs(runs: dict[str, Any]) -> None:
    from evidently.ui.workspace import Workspace

    ws = Workspace(str(runs["workspace"]))
    projects = ws.search_project(PROJECT)
    assert len(projects) == 1
    run_ids = {str(r) for r in ws.list_runs(projects[0].id)}
    assert run_ids == {runs["same"].snapshot_id, runs["shift"].snapshot_id}
    titles = [p.title for p in ws.get_dashboard(projects[0].id).panels]
    assert titles.count("Share of drifted request features") == 1


def test_too_small_windows_raise(runs: dict[str, Any], tmp_path: Path) -> None:
    ref_f: pd.DataFrame = runs["ref_f"]
    with pytest.raises(ValueError, match="current window has 10 request"):
        drift_report(ref_f, ref_f.head(10), tmp_path / "x.html")
    with pytest.raises(ValueError, match="current window has 0 request"):
        drift_report(ref_f, request_features(pd.DataFrame()), tmp_path / "x.html")
    with pytest.raises(ValueError, match="lacks feature column"):
        drift_report(ref_f, ref_f.drop(columns=["hour"]), tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


def test_read_drift_handles_distance_methods() -> None:
    """Above 1000 reference rows Evidently switches to distances, where *large* means drift."""
    from recsys.monitoring.drift import _read_drift

    def value_drift(column: str, method: str, value: float, threshold: float) -> dict[str, Any]:
        config = {"type": "evidently:metric_v2:ValueDrift", "column": column, "method": method, "threshold": threshold}
        return {"config": config, "value": value}

    snapshot = {
        "metrics": [
            {"config": {"type": "evidently:metric_v2:DriftedColumnsCount"}, "value": {"count": 2.0, "share": 0.5}},
            value_drift("hour", "Wasserstein distance (normed)", 2.9, 0.1),
            value_drift("weekday", "Wasserstein distance (normed)", 0.03, 0.1),
            value_drift("known_user", "Z-test p_value", 0.001, 0.05),
            value_drift("n_items", "Z-test p_value", 1.0, 0.05),
        ],
        "tests": [],
    }
    assert _read_drift(snapshot) == (0.5, ["hour", "known_user"])


def stored_means(workspace: Path, result: DriftResult) -> dict[str, float]:
    """The per-window means (Evidently MeanValue) the workspace stored for this drift check, by column."""
    from evidently.ui.workspace import Workspace

    ws = Workspace(str(workspace))
    snapshot = ws.get_run(ws.search_project(PROJECT)[0].id, result.snapshot_id).dict()
    return {
        m["metric_value_location"]["metric"]["params"]["column"]: m["value"]
        for m in snapshot["metric_results"].values()
        if "MeanValue" in m["metric_value_location"]["metric"]["params"]["type"]
    }


def test_quality_columns_are_tracked_on_the_dashboard(tmp_path: Path) -> None:
    """Online hit rate and coverage reach the workspace as per-window means, beside drift."""
    from evidently.ui.workspace import Workspace

    from recsys.monitoring.dashboard import TRACKED
    from recsys.monitoring.features import add_coverage

    def window(seed: int, hit_every: int) -> pd.DataFrame:
        records = read_request_log(write_jsonl(tmp_path / f"{seed}.jsonl", make_records(N_CUR, seed=seed)))
        records["hit"] = [float(i % hit_every == 0) for i in range(len(records))]
        return add_coverage(request_features(records), records, catalogue_size=5000)

    reference, current = window(11, 2), window(12, 4)
    assert current["coverage"].nunique() == 1 and 0 < current["coverage"].iloc[0] <= 1
    result = drift_report(reference, current, tmp_path / "q.html", workspace=tmp_path / "ws", project_name=PROJECT)
    assert "hit" not in result.drifted_columns  # tracked, never drift-tested
    means = stored_means(tmp_path / "ws", result)
    assert means["hit"] == pytest.approx(current["hit"].mean())  # one in four requests hit
    assert means["coverage"] == pytest.approx(current["coverage"].iloc[0])
    ws = Workspace(str(tmp_path / "ws"))
    titles = [p.title for p in ws.get_dashboard(ws.search_project(PROJECT)[0].id).panels]
    assert set(TRACKED.values()) <= set(titles) and "PSI per request feature (drifted past 0.2)" in titles


def test_embedding_drift_of_served_items() -> None:
    """Answers that move to other items move the served centroid; the same answers do not."""
    from recsys.monitoring.features import add_embedding_drift, served_centroid

    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    index = {"a": 0, "b": 1, "c": 2}
    reference = served_centroid(pd.DataFrame({"items": [["a", "a"], ["a", "unknown"]]}), index, vectors)
    assert reference.tolist() == [1.0, 0.0]  # items the model does not know are left out
    moved = served_centroid(pd.DataFrame({"items": [["b"], ["b", "b"]]}), index, vectors)
    frame = pd.DataFrame({"hour": [1, 2]})
    assert add_embedding_drift(frame, reference, reference)["embedding_drift"].tolist() == [0.0, 0.0]
    assert add_embedding_drift(frame, moved, reference)["embedding_drift"].tolist() == pytest.approx([1.0, 1.0])  # orthogonal
    half = served_centroid(pd.DataFrame({"items": [["c"]]}), index, vectors)
    assert add_embedding_drift(frame, half, reference)["embedding_drift"].iloc[0] == pytest.approx(1 - 2**-0.5)


def test_serving_cost_per_1k_recommendations_on_the_dashboard(tmp_path: Path) -> None:
    """The service's logged CPU time becomes cost per 1,000 recommendations per window, beside hit rate;
    the reference (made from training data) has no CPU times and needs none."""
    from recsys.monitoring.features import add_cost

    reference = request_features(read_request_log(write_jsonl(tmp_path / "ref.jsonl", make_records(N_CUR, seed=21))))
    records = make_records(N_CUR, seed=22)
    for i, record in enumerate(records):
        record["cpu_us"] = 400.0 if i % 2 else 800.0  # 600 µs on average
    current = add_cost(request_features(read_request_log(write_jsonl(tmp_path / "cur.jsonl", records))), price_per_core_hour=3.6)
    assert "cost_per_1k" not in add_cost(reference, 3.6).columns
    expected = 600e-6 / 3600 * 3.6 * 1000  # 0.0006 per 1,000 answers at 3.6 per core-hour
    assert current["cost_per_1k"].mean() == pytest.approx(expected)
    result = drift_report(reference, current, tmp_path / "c.html", workspace=tmp_path / "ws", project_name=PROJECT)
    assert "cost_per_1k" not in result.drifted_columns  # tracked, never drift-tested
    means = stored_means(tmp_path / "ws", result)
    assert means["cost_per_1k"] == pytest.approx(expected)


def test_canary_and_shadow_per_arm_on_the_challengers_tab(tmp_path: Path) -> None:
    """With a canary answering some users and a shadow ranking some requests, each arm's online
    hit rate and the shadow's overlap@k reach the workspace as per-window means, on panels of
    their own; a canary's failed request counts in its arm, as the rollback rule counts it."""
    from evidently.ui.workspace import Workspace

    from recsys.monitoring.dashboard import ARM_PANELS
    from recsys.monitoring.features import ARM_COLUMNS

    reference = request_features(read_request_log(write_jsonl(tmp_path / "ref.jsonl", make_records(N_CUR, seed=31))))
    assert not set(ARM_COLUMNS) & set(reference.columns)  # no experiment, no per-arm columns
    records = make_records(N_CUR, seed=32)
    for i, record in enumerate(records):
        record["arm"] = "canary" if i % 4 == 0 else "champion"  # a quarter of the requests
        record["canary_error"] = "RuntimeError: boom" if i % 4 == 1 and i % 8 == 1 else None  # failed: the champion answered
        record["shadow_items"] = record["items"][:5] + [f"s{j}" for j in range(5)] if i % 2 == 0 else None
    window = read_request_log(write_jsonl(tmp_path / "cur.jsonl", records))
    window["hit"] = [float(i % 4 == 0 and i % 8 == 0) for i in range(len(window))]  # half the canary's answers hit, none of the champion's
    current = request_features(window)
    canary_arm = [i for i in range(N_CUR) if i % 4 == 0 or i % 8 == 1]
    assert current["hit_canary"].notna().sum() == len(canary_arm)
    assert current["hit_canary"].mean() == pytest.approx((N_CUR // 8) / len(canary_arm), abs=0.01)
    assert current["hit_champion"].mean() == 0.0 and current["hit_champion"].notna().sum() == N_CUR - len(canary_arm)
    assert current["shadow_overlap"].mean() == pytest.approx(0.5, abs=0.05)  # 5 of 10, duplicates of items aside
    result = drift_report(reference, current, tmp_path / "a.html", workspace=tmp_path / "ws", project_name=PROJECT)
    assert not set(ARM_COLUMNS) & set(result.drifted_columns)  # tracked, never drift-tested
    means = stored_means(tmp_path / "ws", result)
    for column in ARM_COLUMNS:
        assert means[column] == pytest.approx(current[column].mean())
    ws = Workspace(str(tmp_path / "ws"))
    titles = [p.title for p in ws.get_dashboard(ws.search_project(PROJECT)[0].id).panels]
    assert set(ARM_PANELS) <= set(titles) and len(titles) == len(set(titles))  # each panel once
    assert {c for lines in ARM_PANELS.values() for c in lines.values()} == set(ARM_COLUMNS)
