"""The tuning flow: nested trial runs under one parent run that records the best config."""

from __future__ import annotations

import json

import mlflow
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from recsys import registry
from recsys.data.ingest import Dataset
from recsys.data.split import Split
from recsys.settings import Settings
from recsys.tuning import grid, search


def test_grid_and_search_rank_configs_best_first() -> None:
    configs = grid({"b": [1, 2], "a": [0.5]})
    assert configs == [{"a": 0.5, "b": 1}, {"a": 0.5, "b": 2}]
    trials = search(configs, lambda p: {"ndcg_at_10": p["b"] * p["a"]})
    assert [t.params["b"] for t in trials] == [2, 1]


def test_tune_flow_logs_nested_trials_and_best_config(
    prefect_api, settings: Settings, synthetic: Dataset, synthetic_split: Split, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.tune as tune_flow

    monkeypatch.setattr(tune_flow, "load_dataset", lambda name, data_dir: synthetic)
    api, _ = prefect_api
    with temporary_settings({PREFECT_API_URL: api}):
        result = tune_flow.tune_model(dataset="synthetic", family="ease", space={"l2": [10.0, 100.0, 1000.0]})
    assert len(result["trials"]) == 3 and result["best_score"] == max(t["score"] for t in result["trials"])
    registry.configure(settings)
    runs = mlflow.search_runs(search_all_experiments=True)
    parent = runs[runs["tags.tuning"] == "parent"].iloc[0]
    trials = runs[runs["tags.tuning"] == "trial"]
    assert len(trials) == 3 and set(trials["tags.mlflow.parentRunId"]) == {parent["run_id"]}
    assert json.loads(parent["tags.best_config"]) == result["best"]
    # the standard protocol: the choice is refit on train + validation and scored on test, once
    assert parent["metrics.refit_test_ndcg_at_10"] == pytest.approx(result["test_ndcg_at_10"]) and result["test_ndcg_at_10"] > 0
    assert parent["tags.model_family"] == "ease" and parent["params.n_trials"] == "3"


@pytest.mark.parametrize("family", ["ease", "ials", "item_knn", "seq_two_tower"])
def test_each_new_family_is_its_own_run_with_intervals_and_metric_at_k_plot(
    family: str, settings: Settings, synthetic: Dataset, synthetic_split: Split
) -> None:
    from recsys.training import train

    params = {"epochs": 3} if family == "seq_two_tower" else None  # what a run logs, not how good it is: 3 epochs, not 20
    result = train(synthetic, synthetic_split, settings, family, register=False, params=params)
    run = mlflow.MlflowClient().get_run(result.run_id)
    assert run.data.tags["model_family"] == family
    metrics = run.data.metrics
    assert metrics["test_ndcg_at_10_lo"] <= metrics["test_ndcg_at_10"] <= metrics["test_ndcg_at_10_hi"]
    assert "metric_at_k.png" in {a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id)}
