"""Drift reports over the service's request log, with Evidently 0.7.

The BentoML service appends one JSON line per answered request. Nothing in a request tells us
whether a recommendation was *good* (feedback arrives much later, if ever), so we watch the
traffic itself: who asks (known users vs. cold starts, how much history they have), when they
ask, and what we answer (scores, popularity of the items). When those distributions move away
from the reference window, the model is serving a population it was not trained on.

`read_request_log` -> `request_features` -> `drift_report` is the whole pipeline; the result is
a small `DriftResult` that `recsys.monitoring.policy.decide` turns into a retrain decision.
This module must stay a plain library (no Prefect import): flows call it, not the other way.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: Numeric per-request columns compared between windows. All are numbers on purpose: Evidently
#: picks a test per column from its type and cardinality (K-S / Wasserstein for many values,
#: Z-test / chi-square / Jensen-Shannon for few), which suits 0/1 flags and scores alike.
#: No weekday: a window of a few days covers only some weekdays, so against a four-week
#: reference it always "drifts" (seen on Online Retail: it fired on calm autumn windows).
FEATURES: list[str] = [
    "hour", "known_user", "history_len", "top_score", "mean_score", "rec_popularity", "n_items",
]
# One size-independent test for every column: the population stability index, drifted past
# 0.2 (the usual "significant shift" line). Evidently's default switches from p-values to
# distances at 1000 rows, and its p-values flag tiny, harmless shifts in windows of a few
# hundred requests: on undrifted synthetic traffic half the columns "drifted".
COLUMN_DRIFT_METHOD = "psi"
COLUMN_DRIFT_THRESHOLD = 0.2

#: Fewest requests per window we accept. Below this the statistical tests say little and a
#: "drift" would be noise; callers get a ValueError they can act on instead.
MIN_ROWS = 30

#: Fields of a request-log record; missing ones become null so old logs still load.
LOG_FIELDS: list[str] = [
    "request_id", "served_at", "event_time", "user_id", "k", "items", "scores",
    "fallback", "model_version", "history_len", "rec_popularity", "cpu_us",
]

#: Per-window means shown on the dashboard (Evidently MeanValue), beside the drift tests:
#: who asks (known users, activity), what we answer (score, popularity, catalogue coverage)
#: and how well (online hit rate: a recommended item bought). `hit` and `coverage` are only
#: present when the caller adds them (a `hit` column in the records, `add_coverage`); they are
#: never drift-tested.
TRACKED: dict[str, str] = {
    "known_user": "Share of known users",
    "history_len": "User activity (log1p history length)",
    "top_score": "Top recommendation score",
    "rec_popularity": "Popularity of recommended items",
    "coverage": "Catalogue coverage of the window",
    "embedding_drift": "Embedding drift of served items (cosine distance to reference)",
    "hit": "Online hit rate@k (feedback)",
    "cost_per_1k": "Serving cost per 1,000 recommendations (CPU, at the configured price)",
}
QUALITY_COLUMNS = ["hit", "coverage", "embedding_drift", "cost_per_1k"]

DRIFT_SHARE_PANEL = "Share of drifted request features"
_MEAN_VALUE_TYPE = "evidently:metric_v2:MeanValue"
_DRIFT_COUNT_TYPE = "evidently:metric_v2:DriftedColumnsCount"
_VALUE_DRIFT_TYPE = "evidently:metric_v2:ValueDrift"


@dataclass(frozen=True)
class DriftResult:
    """What one drift check found; small and plain so policies and flows can log it."""

    drift_share: float  # share of FEATURES columns that drifted
    drifted_columns: list[str]
    n_reference: int
    n_current: int
    html_path: Path
    snapshot_id: str | None  # id of the run in the Evidently workspace, when one was given


def read_request_log(path: Path, last_n: int | None = None) -> pd.DataFrame:
    """Load the JSONL request log, keeping only the `last_n` newest valid records if given.

    The service appends while we read and a crash can leave a half-written line, so a bad
    line must not take monitoring down: corrupt lines (invalid JSON, or JSON that is not an
    object) are skipped, counted in `df.attrs["skipped_lines"]` and logged as a warning.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"request log not found: {path}")
    if last_n is not None and last_n <= 0:
        raise ValueError(f"last_n must be positive, got {last_n}")
    records: deque[dict[str, Any]] = deque(maxlen=last_n)
    skipped = 0
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                skipped += 1
                continue
            if not isinstance(record, dict):
                skipped += 1
                continue
            records.append(record)
    if skipped:
        log.warning("skipped %d corrupt line(s) in request log %s", skipped, path)
    df = pd.DataFrame.from_records(list(records))
    for field in LOG_FIELDS:
        if field not in df.columns:
            df[field] = None
    df.attrs["skipped_lines"] = skipped
    return df


def _request_times(records: pd.DataFrame) -> pd.Series:
    """When each request happened: the client's `event_time` (replays of past traffic send
    it), else the server's `served_at`. Everything is put in UTC so windows compare."""

    def parse(col: str) -> pd.Series:
        if col not in records.columns:
            return pd.Series(pd.NaT, index=records.index, dtype="datetime64[ns, UTC]")
        return pd.to_datetime(records[col], errors="coerce", utc=True, format="ISO8601")

    return parse("event_time").fillna(parse("served_at"))


def _score_stats(scores: Any) -> tuple[float, float]:
    """(top, mean) of one request's scores; NaN when absent (Evidently drops NaN per column)."""
    if not isinstance(scores, (list, tuple)) or not scores:
        return math.nan, math.nan
    values = [float(s) for s in scores if isinstance(s, (int, float)) and not isinstance(s, bool)]
    if not values:
        return math.nan, math.nan
    return max(values), sum(values) / len(values)


def request_features(records: pd.DataFrame) -> pd.DataFrame:
    """One numeric row per request, columns `FEATURES`, indexed by when it happened (UTC).

    `history_len` is log1p-scaled because it is heavy-tailed: a few power users would
    otherwise dominate the distribution. Records with no usable timestamp are dropped
    (counted in `attrs["dropped_rows"]`): without a time they belong to no window.
    """
    if records.empty:
        empty = pd.DataFrame({c: pd.Series(dtype=float) for c in FEATURES})
        empty.index = pd.DatetimeIndex([], tz="UTC", name="event_time")
        empty.attrs["dropped_rows"] = 0
        return empty
    times = _request_times(records)
    keep = times.notna()
    records, times = records.loc[keep], times.loc[keep]

    def col(name: str) -> pd.Series:
        return records[name] if name in records.columns else pd.Series(None, index=records.index, dtype=object)

    fallback, items = col("fallback"), col("items")
    stats = [_score_stats(s) for s in col("scores")]
    history = pd.to_numeric(col("history_len"), errors="coerce").fillna(0).clip(lower=0)
    features = pd.DataFrame(
        {
            "hour": times.dt.hour.astype(int).to_numpy(),
            "known_user": [0 if v is True or v == 1 else 1 for v in fallback],
            "history_len": np.log1p(history.to_numpy(dtype=float)),
            "top_score": [t for t, _ in stats],
            "mean_score": [m for _, m in stats],
            "rec_popularity": pd.to_numeric(col("rec_popularity"), errors="coerce").to_numpy(dtype=float),
            "n_items": [len(v) if isinstance(v, (list, tuple)) else 0 for v in items],
        },
        index=pd.DatetimeIndex(times, name="event_time"),
    )
    if "hit" in records.columns:  # online quality, when the caller joined the feedback in
        features["hit"] = pd.to_numeric(records["hit"], errors="coerce").to_numpy(dtype=float)
    if "cpu_us" in records.columns and records["cpu_us"].notna().any():  # what answering cost the service, when logged
        features["cpu_us"] = pd.to_numeric(records["cpu_us"], errors="coerce").to_numpy(dtype=float)
    features.attrs["dropped_rows"] = int((~keep).sum())
    return features[[c for c in [*FEATURES, "hit", "cpu_us"] if c in features.columns]]


def add_cost(features: pd.DataFrame, price_per_core_hour: float) -> pd.DataFrame:
    """`features` with `cost_per_1k`: each answer's CPU time at `price_per_core_hour`, times 1,000.

    Its mean over a window is the serving cost of 1,000 recommendations (one per user asked),
    shown beside the online hit rate. Unchanged when the log has no CPU times (older services,
    the reference window made from training data).
    """
    if "cpu_us" not in features.columns:
        return features
    return features.assign(cost_per_1k=features["cpu_us"] * 1e-6 / 3600 * price_per_core_hour * 1000)


def add_coverage(features: pd.DataFrame, records: pd.DataFrame, catalogue_size: int) -> pd.DataFrame:
    """`features` with `coverage`: distinct items recommended in the whole window over the
    catalogue, the same on every row so Evidently's MeanValue reports it per window."""
    recommended = {item for row in records["items"] if isinstance(row, (list, tuple)) for item in row}
    return features.assign(coverage=len(recommended) / max(catalogue_size, 1))


def served_centroid(records: pd.DataFrame, item_index: dict[str, int], item_vectors: np.ndarray) -> np.ndarray:
    """Mean vector of every item recommended in the window: where in embedding space the
    service's answers (and so the users' query vectors) sit."""
    rows = [item_index[i] for items in records["items"] if isinstance(items, (list, tuple)) for i in items if i in item_index]
    return item_vectors[rows].mean(axis=0) if rows else np.zeros(item_vectors.shape[1], dtype=item_vectors.dtype)


def add_embedding_drift(features: pd.DataFrame, centroid: np.ndarray, reference_centroid: np.ndarray) -> pd.DataFrame:
    """`features` with `embedding_drift`: cosine distance between the window's and the
    reference's served-item centroids (0: same region of the embedding space), on every row."""
    norm = float(np.linalg.norm(centroid) * np.linalg.norm(reference_centroid))
    distance = 1.0 - float(centroid @ reference_centroid) / norm if norm else 0.0
    return features.assign(embedding_drift=distance)


def _check_window(name: str, frame: pd.DataFrame, min_rows: int) -> None:
    """Refuse windows Evidently would choke on or that are too small to mean anything."""
    missing = [c for c in FEATURES if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} window lacks feature column(s) {missing}; build it with request_features()")
    if len(frame) < min_rows:
        raise ValueError(f"{name} window has {len(frame)} request(s); a drift check needs at least {min_rows}")


def _read_drift(snapshot_dict: dict[str, Any]) -> tuple[float, list[str]]:
    """Drift share and drifted columns from `Snapshot.dict()`.

    The share comes from the preset's `DriftedColumnsCount` metric. Per column, ValueDrift
    only stores a score whose meaning depends on the auto-chosen test (a p-value for K-S or
    Z-test, where *small* means drift; a distance for Wasserstein or Jensen-Shannon, where
    *large* does), so we read Evidently's own verdict from the per-column test status and
    only fall back to comparing the score with the threshold when tests are absent.
    """
    share: float | None = None
    drifted: list[str] = []
    scores: dict[str, tuple[float, str, float]] = {}
    for metric in snapshot_dict.get("metrics", []):
        config = metric.get("config", {})
        if config.get("type") == _DRIFT_COUNT_TYPE and isinstance(metric.get("value"), dict):
            share = float(metric["value"]["share"])
        elif config.get("type") == _VALUE_DRIFT_TYPE:
            scores[config["column"]] = (float(metric["value"]), str(config.get("method")), float(config["threshold"]))
    verdicts: dict[str, bool] = {}
    for test in snapshot_dict.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type") == _VALUE_DRIFT_TYPE:
            verdicts[params["column"]] = test.get("status") == "FAIL"
    for column, (score, method, threshold) in scores.items():
        if column in verdicts:
            is_drift = verdicts[column]
        else:
            is_drift = score < threshold if "p_value" in method else score >= threshold
        if is_drift:
            drifted.append(column)
    if share is None:
        raise RuntimeError("Evidently report has no DriftedColumnsCount metric; did the preset change?")
    if scores and not math.isclose(share, len(drifted) / len(scores)):
        log.warning("drift share %.3f disagrees with per-column verdicts %s", share, drifted)
    return share, sorted(drifted)


def _project(workspace: Any, project_name: str) -> Any:
    """The workspace project named `project_name`, created (with its dashboard) on first use.

    Looked up by name so every run of every process lands in the same project. Two processes
    creating it at the very same moment could make two; we then always pick the oldest id.
    """
    found = sorted(workspace.search_project(project_name), key=lambda p: str(p.id))
    project = found[0] if found else workspace.create_project(
        project_name, description="Drift of live recommendation traffic (recsys.monitoring)"
    )
    _ensure_dashboard(project)
    return project


def _ensure_dashboard(project: Any) -> None:
    """Give the project its panels, once (idempotent): drift share and per-feature PSI on the
    Drift tab, the tracked per-window means on the Traffic and Quality tabs."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    if any(p.title == DRIFT_SHARE_PANEL for p in project.dashboard.model().panels):
        return
    project.dashboard.add_panel(
        line_plot_panel(
            title=DRIFT_SHARE_PANEL,
            description="DataDriftPreset over FEATURES, one point per drift check",
            values=[PanelMetric(legend="drift share", metric=_DRIFT_COUNT_TYPE, metric_labels={"value_type": "share"})],
        ),
        tab="Drift",
    )
    project.dashboard.add_panel(
        line_plot_panel(
            title="PSI per request feature (drifted past 0.2)",
            values=[PanelMetric(legend=c, metric=_VALUE_DRIFT_TYPE, metric_labels={"column": c}) for c in FEATURES],
        ),
        tab="Drift",
    )
    for column, title in TRACKED.items():
        project.dashboard.add_panel(
            line_plot_panel(title=title, values=[PanelMetric(legend=column, metric=_MEAN_VALUE_TYPE, metric_labels={"column": column})]),
            tab="Quality" if column in QUALITY_COLUMNS else "Traffic",
        )


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    html_path: Path,
    workspace: Path | None = None,
    project_name: str = "recsys",
    tags: list[str] | None = None,
    *,
    timestamp: datetime | None = None,
    min_rows: int = MIN_ROWS,
) -> DriftResult:
    """Compare two feature windows (from `request_features`) with `DataDriftPreset`.

    Saves the HTML report to `html_path` (parents created). With `workspace`, also stores the
    run in that local Evidently workspace under `project_name`, so `evidently ui --workspace`
    shows it and the project's dashboard plots drift share over time. `timestamp` places the
    run on that time axis (default: now); pass the window's end when replaying old traffic.
    Raises ValueError for windows smaller than `min_rows` or lacking feature columns.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MeanValue
    from evidently.presets import DataDriftPreset

    _check_window("reference", reference, min_rows)
    _check_window("current", current, min_rows)
    # A quality column the current window has is reported even where the reference lacks it
    # (serving cost: the reference is made from training data, not answered requests).
    quality = [c for c in QUALITY_COLUMNS if c in current.columns and current[c].notna().any()]
    columns = FEATURES + quality
    definition = DataDefinition(numerical_columns=columns)

    def dataset(frame: pd.DataFrame) -> Dataset:
        data = frame.reindex(columns=columns).reset_index(drop=True).astype(float)
        return Dataset.from_pandas(data, data_definition=definition)

    preset = DataDriftPreset(columns=list(FEATURES), method=COLUMN_DRIFT_METHOD, threshold=COLUMN_DRIFT_THRESHOLD)
    means = [MeanValue(column=c) for c in TRACKED if c in columns]
    report = Report([preset, *means], include_tests=True)
    with warnings.catch_warnings():
        # Constant columns (n_items is always k, known_user can be all 1) make Evidently's
        # correlation widgets divide by a zero std; harmless, but it floods the logs.
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        snapshot = report.run(dataset(current), dataset(reference), timestamp=timestamp, tags=list(tags or []))
    html_path = Path(html_path)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(html_path))
    share, drifted = _read_drift(snapshot.dict())

    snapshot_id: str | None = None
    if workspace is not None:
        from evidently.ui.workspace import Workspace

        Path(workspace).mkdir(parents=True, exist_ok=True)
        ws = Workspace(str(workspace))
        project = _project(ws, project_name)
        snapshot_id = str(ws.add_run(project.id, snapshot, include_data=False).id)
    return DriftResult(
        drift_share=share,
        drifted_columns=drifted,
        n_reference=len(reference),
        n_current=len(current),
        html_path=html_path,
        snapshot_id=snapshot_id,
    )


def online_hits(requests: pd.DataFrame, events_path: Path) -> pd.Series | None:
    """Per request of the window: 1.0 if feedback on a recommended item followed, else 0.0.

    Feedback records (kind "feedback", from the service's POST /feedback) name the answer
    they react to in `answer_request_id`. None when no events log exists yet.
    """
    if not Path(events_path).is_file() or requests.empty:
        return None
    events = read_request_log(events_path)
    if events.empty or "answer_request_id" not in events:
        return pd.Series(0.0, index=requests.index)
    feedback = events[events.get("kind", pd.Series(dtype=object)) == "feedback"]
    return requests["request_id"].isin(set(feedback["answer_request_id"].dropna())).astype(float)

