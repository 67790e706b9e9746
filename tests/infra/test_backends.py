"""The production configuration, selected by settings only, really stores everything in its backends.

One pipeline (validate → train → register → promote) runs against MLflow on PostgreSQL with
artifacts in S3 and Prefect on PostgreSQL; each test reads one backend directly (SQL on the
databases, boto3 on the bucket), not through the servers that wrote it.
"""

from __future__ import annotations

import pytest

from tests.infra.conftest import BUCKET, PipelineRun, Stack

pytestmark = pytest.mark.slow


def test_runs_and_metrics_land_in_postgresql(stack: Stack, first_pipeline: PipelineRun) -> None:
    """Both families' runs finished in the MLflow database, with per-epoch and test metrics."""
    candidate = first_pipeline.result["candidate"]
    runs = dict(
        stack.query(
            stack.mlflow_db,
            "SELECT t.value, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid WHERE t.key = 'model_family'",
        )
    )
    assert runs == {"two_tower": "FINISHED", "popularity": "FINISHED"}
    (ndcg,) = stack.query(stack.mlflow_db, "SELECT value FROM latest_metrics WHERE run_uuid = %s AND key = 'test_ndcg_at_10'", (candidate["run_id"],))
    assert ndcg[0] == pytest.approx(candidate["metrics"]["ndcg_at_10"])
    (epochs,) = stack.query(stack.mlflow_db, "SELECT count(*) FROM metrics WHERE run_uuid = %s AND key = 'loss'", (candidate["run_id"],))
    assert epochs[0] == 20  # SMALL_TRAINING's epochs, one row each


def test_model_version_and_champion_alias_land_in_postgresql(stack: Stack, first_pipeline: PipelineRun) -> None:
    """The candidate is a READY version tagged with its run, and it holds the champion alias."""
    candidate = first_pipeline.result["candidate"]
    assert first_pipeline.result["promotion"]["promoted"]
    versions = stack.query(stack.mlflow_db, "SELECT version, status FROM model_versions WHERE name = 'recsys'")
    assert versions == [(int(candidate["version"]), "READY")]
    tags = dict(
        stack.query(
            stack.mlflow_db,
            "SELECT key, value FROM model_version_tags WHERE name = 'recsys' AND version = %s",
            (int(candidate["version"]),),
        )
    )
    assert tags["run_id"] == candidate["run_id"] and tags["model_family"] == "two_tower"
    aliases = stack.query(stack.mlflow_db, "SELECT alias, version FROM registered_model_aliases WHERE name = 'recsys'")
    assert aliases == [("champion", int(candidate["version"]))]


def test_artifacts_land_in_s3_and_not_on_disk(stack: Stack, first_pipeline: PipelineRun) -> None:
    """The model, plots and blessing are objects in the bucket; the local artifact folder stays empty."""
    run_id = first_pipeline.result["candidate"]["run_id"]
    pages = stack.s3().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="mlflow/")
    keys = [obj["Key"] for page in pages for obj in page.get("Contents", [])]
    assert any(key.endswith("artifacts/export/arrays.npz") for key in keys), keys
    assert any(key.endswith("two_tower.keras") for key in keys)
    run_keys = {key.rsplit("/", 1)[-1] for key in keys if f"/{run_id}/" in key}
    assert {"training_curve.png", "metric_at_k.png", "blessing.json", "gx_result.json"} <= run_keys
    assert not stack.settings.artifacts_dir.exists()


def test_flow_runs_land_in_prefect_postgresql(stack: Stack, first_pipeline: PipelineRun) -> None:
    """The pipeline and its subflows are completed flow runs in Prefect's database, not in SQLite."""
    rows = stack.query(
        stack.prefect_db,
        "SELECT f.name, fr.state_type, fr.id::text FROM flow_run fr JOIN flow f ON f.id = fr.flow_id",
    )
    states = {(name, state) for name, state, _ in rows}
    assert ("pipeline", "COMPLETED") in states
    assert {("validate", "COMPLETED"), ("train", "COMPLETED"), ("promote", "COMPLETED")} <= states
    assert first_pipeline.flow_run_id in {run_id for name, _, run_id in rows if name == "pipeline"}
    assert not (stack.settings.home / "prefect" / "prefect.db").exists()
