"""A two-stage model's training run against real MLflow (SQLite): its retrievers' nested runs and its ranker's feature importance.

What the run, the registered version and the BentoML export say about the retrievers is what
GET /model answers (`ModelInfo`), so it is checked here on the stored metadata, without a server.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from recsys import registry
from recsys.data.ingest import Dataset
from recsys.data.split import Split
from recsys.models.two_stage.importance import GROUPS
from recsys.models.two_stage.snapshot import OPTIONAL, RETRIEVERS
from recsys.schemas import ModelInfo
from recsys.settings import Settings
from recsys.training import train

SMALL = {
    "candidates": 20,
    "ranker_epochs": 2,
    "retrievers": {"ease": {"l2": 100.0}, "item_knn": {"neighbours": 50}, "ials": {"factors": 16, "iterations": 5}},
}


def test_the_rankers_run_links_its_retrievers_runs_and_logs_feature_importance(settings: Settings, synthetic: Dataset, synthetic_split: Split) -> None:
    result = train(synthetic, synthetic_split, settings, "two_stage", params=SMALL)
    client = MlflowClient()
    parent = client.get_run(result.run_id)
    named = json.loads(parent.data.tags["retriever_runs"])
    assert set(named) == set(RETRIEVERS) - set(OPTIONAL)  # the sequence model is a retriever only when named

    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert {c.info.run_id for c in children} == set(named.values())  # one nested run per retriever, and only those
    for name, run_id in named.items():
        child = client.get_run(run_id)
        assert child.data.tags["role"] == "retriever" and child.data.tags["part"] == name
        assert child.data.params["family"] == ("popularity" if name == "trend" else name)
        assert 0.0 <= child.data.metrics["test_ndcg_at_10"] <= 1.0
    assert client.get_run(named["ease"]).data.params["l2"] == "100.0"
    assert client.get_run(named["trend"]).data.params["trend_days"] == "14.0"
    note = parent.data.tags["mlflow.note.content"]
    assert all(f"runs/{run_id})" in note for run_id in named.values())  # a link a person clicks in the UI

    folder = Path(mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="ranker"))
    importance = json.loads((folder / "feature_importance.json").read_text())
    assert "held out" in importance["measured_on"] and importance["lists"] > 0
    assert {g["group"] for g in importance["groups"]} == set(GROUPS) - set(OPTIONAL)  # a retriever not fit has no group
    assert all(math.isfinite(g["drop"]) and math.isfinite(g["ndcg"]) and math.isfinite(g["spread"]) for g in importance["groups"])
    assert (folder / "feature_importance.md").read_text().count("\n| ") == len(GROUPS) - len(OPTIONAL) + 1
    assert parent.data.metrics["importance_ease_ndcg_drop"] == next(g["drop"] for g in importance["groups"] if g["group"] == "ease")

    version = client.get_model_version(settings.registered_model, result.version)
    assert json.loads(version.tags["retriever_runs"]) == named
    model = registry.load_version(settings, result.version)
    tag = registry.export_to_bentoml(settings, result.version, model)
    metadata = registry.model_store(settings).get(tag).info.metadata
    assert ModelInfo.of({**metadata, "bento_tag": tag}).retriever_runs == named  # what GET /model answers
