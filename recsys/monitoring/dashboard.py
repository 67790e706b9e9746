"""The Evidently workspace: one project for the live traffic, its dashboard, and each drift check stored as a run.

`evidently ui --workspace <dir>` shows the project; its panels plot the drift share, each
feature's PSI and the tracked per-window means over time, one point per stored run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recsys.monitoring.features import FEATURES

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

#: The Challengers tab: one panel per question about a challenger on live traffic, each line a
#: per-window mean of an `ARM_COLUMNS` column (legend: column). A window without a canary or a
#: shadow has no such column, so the lines start when the experiment does.
ARM_PANELS: dict[str, dict[str, str]] = {
    "Online hit rate per arm (canary vs champion)": {"champion": "hit_champion", "canary": "hit_canary"},
    "Shadow: overlap@k of its list with the champion's": {"overlap@k": "shadow_overlap"},
}

DRIFT_SHARE_PANEL = "Share of drifted request features"
#: Evidently's type ids of the metrics a drift report holds: panels select by them, and
#: recsys.monitoring.drift reads the verdict by them.
MEAN_VALUE_TYPE = "evidently:metric_v2:MeanValue"
DRIFT_COUNT_TYPE = "evidently:metric_v2:DriftedColumnsCount"
VALUE_DRIFT_TYPE = "evidently:metric_v2:ValueDrift"


def store_run(workspace: Path, project_name: str, snapshot: Any) -> str:
    """Store a drift report's `snapshot` (without its data) in the local workspace at
    `workspace`, under `project_name`; return the run's id."""
    from evidently.ui.workspace import Workspace

    Path(workspace).mkdir(parents=True, exist_ok=True)
    ws = Workspace(str(workspace))
    project = _project(ws, project_name)
    return str(ws.add_run(project.id, snapshot, include_data=False).id)


def _project(workspace: Any, project_name: str) -> Any:
    """The workspace project named `project_name`, created (with its dashboard) on first use.

    Looked up by name so every run of every process lands in the same project. Two processes
    creating it at the very same moment could make two; we then always pick the oldest id.
    """
    found = sorted(workspace.search_project(project_name), key=lambda p: str(p.id))
    project = found[0] if found else workspace.create_project(project_name, description="Drift of live recommendation traffic (recsys.monitoring)")
    _ensure_dashboard(project)
    return project


def _ensure_dashboard(project: Any) -> None:
    """Give the project the panels it lacks (idempotent, by title): drift share and per-feature
    PSI on the Drift tab, the tracked per-window means on the Traffic and Quality tabs, the
    per-arm means on the Challengers tab. A workspace made by an older version gains new panels."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    def mean(column: str, legend: str) -> PanelMetric:
        return PanelMetric(legend=legend, metric=MEAN_VALUE_TYPE, metric_labels={"column": column})

    panels = [
        (
            "Drift",
            line_plot_panel(
                title=DRIFT_SHARE_PANEL,
                description="DataDriftPreset over FEATURES, one point per drift check",
                values=[PanelMetric(legend="drift share", metric=DRIFT_COUNT_TYPE, metric_labels={"value_type": "share"})],
            ),
        ),
        (
            "Drift",
            line_plot_panel(
                title="PSI per request feature (drifted past 0.2)",
                values=[PanelMetric(legend=c, metric=VALUE_DRIFT_TYPE, metric_labels={"column": c}) for c in FEATURES],
            ),
        ),
        *(("Quality" if c in QUALITY_COLUMNS else "Traffic", line_plot_panel(title=title, values=[mean(c, c)])) for c, title in TRACKED.items()),
        *(("Challengers", line_plot_panel(title=title, values=[mean(c, legend) for legend, c in lines.items()])) for title, lines in ARM_PANELS.items()),
    ]
    present = {p.title for p in project.dashboard.model().panels}
    for tab, panel in panels:
        if panel.title not in present:
            project.dashboard.add_panel(panel, tab=tab)
