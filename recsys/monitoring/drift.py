"""Drift of request features between a reference and a current window, with Evidently 0.7.

`request_log` reads the records, `features` makes one numeric row per request, and
`drift_report` compares two windows; the result is a small `DriftResult` that
`recsys.monitoring.policy.decide` turns into a retrain decision. A plain library (no
Prefect import): flows call it, not the other way.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.monitoring.dashboard import DRIFT_COUNT_TYPE, QUALITY_COLUMNS, TRACKED, VALUE_DRIFT_TYPE, store_run
from recsys.monitoring.features import ARM_COLUMNS, FEATURES

log = logging.getLogger(__name__)

# One size-independent test for every column: the population stability index, drifted past
# 0.2 (the usual "significant shift" line). Evidently's default switches from p-values to
# distances at 1000 rows, and its p-values flag tiny, harmless shifts in windows of a few
# hundred requests: on undrifted synthetic traffic half the columns "drifted".
COLUMN_DRIFT_METHOD = "psi"
COLUMN_DRIFT_THRESHOLD = 0.2

#: Fewest requests per window we accept. Below this the statistical tests say little and a
#: "drift" would be noise; callers get a ValueError they can act on instead.
MIN_ROWS = 30


@dataclass(frozen=True)
class DriftResult:
    """What one drift check found; small and plain so policies and flows can log it."""

    drift_share: float  # share of FEATURES columns that drifted
    drifted_columns: list[str]
    n_reference: int
    n_current: int
    html_path: Path
    snapshot_id: str | None  # id of the run in the Evidently workspace, when one was given


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
        if config.get("type") == DRIFT_COUNT_TYPE and isinstance(metric.get("value"), dict):
            share = float(metric["value"]["share"])
        elif config.get("type") == VALUE_DRIFT_TYPE:
            scores[config["column"]] = (float(metric["value"]), str(config.get("method")), float(config["threshold"]))
    verdicts: dict[str, bool] = {}
    for test in snapshot_dict.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type") == VALUE_DRIFT_TYPE:
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
    quality = [c for c in [*QUALITY_COLUMNS, *ARM_COLUMNS] if c in current.columns and current[c].notna().any()]
    columns = FEATURES + quality
    definition = DataDefinition(numerical_columns=columns)

    def dataset(frame: pd.DataFrame) -> Dataset:
        data = frame.reindex(columns=columns).reset_index(drop=True).astype(float)
        return Dataset.from_pandas(data, data_definition=definition)

    preset = DataDriftPreset(columns=list(FEATURES), method=COLUMN_DRIFT_METHOD, threshold=COLUMN_DRIFT_THRESHOLD)
    means = [MeanValue(column=c) for c in [*TRACKED, *ARM_COLUMNS] if c in columns]
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
    return DriftResult(
        drift_share=share,
        drifted_columns=drifted,
        n_reference=len(reference),
        n_current=len(current),
        html_path=html_path,
        snapshot_id=None if workspace is None else store_run(workspace, project_name, snapshot),
    )
