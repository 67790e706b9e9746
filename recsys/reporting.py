"""Log a family's Report (recsys.models.report) into its training run: parts as nested runs, files, metrics.

Each part (a two-stage model's retriever) gets a run nested under the model's, holding its
family, settings and its own test metrics by the same protocol, so the MLflow UI shows under
the model's run what the whole adds over each part. The model's run names its parts' runs in a
tag per role (`retriever_runs`: JSON {part: run id}), which registration copies to the model
version and the BentoML export to the served metadata, and in its description: a table with a
link to each part's run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import mlflow

from recsys.models.base import EmbeddingModel
from recsys.models.report import RUNS_SUFFIX, Part, Report

NOTE_TAG = "mlflow.note.content"  # the run's description in the MLflow UI (markdown)
NOTE_METRIC = "ndcg_at_10"


@dataclass(frozen=True)
class PartRun:
    """A part as logged: its run and the metrics it scored alone."""

    part: Part
    run_id: str
    metrics: dict[str, float]


def log_report(report: Report, score: Callable[[EmbeddingModel], dict[str, float]], whole: dict[str, float]) -> dict[str, str]:
    """Log `report` into the active run, scoring each part with `score`; return the tags naming the parts' runs.

    `whole` is the model's own test metrics, shown beside its parts' in the run's description.
    """
    parent = mlflow.active_run()
    runs = [_log_part(part, score) for part in report.parts]
    for path, text in report.files.items():
        mlflow.log_text(text, path)
    mlflow.log_metrics(report.metrics)
    tags = part_run_tags(runs)
    mlflow.set_tags(tags)
    if runs:
        mlflow.set_tag(NOTE_TAG, note(runs, whole, parent.info.experiment_id, sorted(report.files)))
    return tags


def part_run_tags(runs: list[PartRun]) -> dict[str, str]:
    """One tag per role, `<role>_runs`: JSON {part name: run id}."""
    roles: dict[str, dict[str, str]] = {}
    for run in runs:
        roles.setdefault(run.part.role, {})[run.part.name] = run.run_id
    return {f"{role}{RUNS_SUFFIX}": json.dumps(named, sort_keys=True) for role, named in roles.items()}


def note(runs: list[PartRun], whole: dict[str, float], experiment_id: str, files: list[str]) -> str:
    """The model run's description: its test NDCG@10 beside each part's, each part linked to its run."""
    rows = [f"| **this model** | | | {whole.get(NOTE_METRIC, float('nan')):.4f} | |"]
    for r in runs:
        link = f"[{r.run_id[:8]}](#/experiments/{experiment_id}/runs/{r.run_id})"
        rows.append(f"| {r.part.name} | {r.part.role} | {r.part.family} | {r.metrics.get(NOTE_METRIC, float('nan')):.4f} | {link} |")
    found = [f"- `{path}`" for path in files]
    return "\n".join(
        [
            "Its parts, each scored alone on the same test users (their runs are nested below this one):",
            "",
            "| part | role | family | test NDCG@10 | run |",
            "|---|---|---|---:|---|",
            *rows,
            *(["", "Also logged:", *found] if found else []),
            "",
        ]
    )


def _log_part(part: Part, score: Callable[[EmbeddingModel], dict[str, float]]) -> PartRun:
    """A nested run with the part's family, settings and test metrics (its arrays live in the model's artifacts)."""
    metrics = score(part.model)
    with mlflow.start_run(run_name=f"{part.role}-{part.name}", nested=True) as run:
        mlflow.set_tags({"role": part.role, "part": part.name, "model_family": part.family})
        mlflow.log_params({"family": part.family, **part.params})
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
    return PartRun(part, run.info.run_id, metrics)
