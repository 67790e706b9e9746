"""Training, registration, blessing and promotion against real MLflow (SQLite) and BentoML."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from recsys import registry
from recsys.data.ingest import Dataset
from recsys.data.split import Split
from recsys.promotion import bless_and_promote
from recsys.settings import Settings
from recsys.training import train


@pytest.fixture
def first_champion(settings: Settings, synthetic: Dataset, synthetic_split: Split):
    candidate = train(synthetic, synthetic_split, settings, "two_tower", validation={"result_id": "gx-1", "success": True})
    promotion = bless_and_promote(settings, candidate.version, candidate.run_id, synthetic_split, synthetic.items)
    return candidate, promotion


def test_run_logs_params_metrics_data_plot_and_model(settings: Settings, first_champion) -> None:
    candidate, _ = first_champion
    run = MlflowClient().get_run(candidate.run_id)
    assert run.data.params["family"] == "two_tower" and run.data.params["epochs"] == "20"
    assert run.data.tags["model_family"] == "two_tower"
    assert run.data.tags["gx_result_id"] == "gx-1"
    experiment = MlflowClient().get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on training runs
    for key in ("test_ndcg_at_10", "test_precision_at_20", "test_map_at_10", "test_hitrate_at_20", "test_f1_at_10"):
        assert key in run.data.metrics
    for key in ("train_wall_s", "train_cpu_s", "train_peak_rss_gib", "train_examples_per_s", "train_cost"):
        assert run.data.metrics[key] > 0, key  # what the run cost, beside what it scored
    assert run.data.metrics["train_cpu_s"] == pytest.approx(candidate.cost.cpu_s)
    losses = MlflowClient().get_metric_history(candidate.run_id, "loss")
    assert len(losses) == 20 and losses[-1].value < losses[0].value  # per-epoch, and it learns
    curve = [m.value for m in sorted(MlflowClient().get_metric_history(candidate.run_id, "val_ndcg_at_10"), key=lambda m: m.step)]
    assert len(curve) == 20
    # the epoch count of the registered refit is the best epoch on validation, never chosen on test
    assert run.data.params["epochs_chosen"] == str(curve.index(max(curve)) + 1)
    assert run.data.params["n_fit"] == str(int(run.data.params["n_train"]) + int(run.data.params["n_val"]))
    assert run.inputs.dataset_inputs[0].dataset.digest == candidate.data_digest
    artifacts = {a.path for a in MlflowClient().list_artifacts(candidate.run_id)}
    assert {"training_curve.png", "validation"} <= artifacts
    model = registry.load_version(settings, candidate.version)
    assert len(model.item_ids) == 200 and model.meta["family"] == "two_tower"


def test_first_candidate_beats_popularity_and_is_promoted_to_bentoml(settings: Settings, first_champion) -> None:
    candidate, promotion = first_champion
    assert promotion.promoted and promotion.previous_champion is None
    assert "popularity" in promotion.blessing.reasons[0]
    assert registry.champion(settings) == candidate.version
    chart = json.loads(Path(mlflow.artifacts.download_artifacts(run_id=candidate.run_id, artifact_path="blessing/ndcg_at_10.json")).read_text())
    logged = MlflowClient().get_run(candidate.run_id).data.metrics
    drawn = {bar["role"]: bar for bar in chart["bars"]}
    assert set(drawn) == {"candidate", "baseline"} and drawn["baseline"]["family"] == "popularity"
    # the blessing scores the candidate as its training run did: the bar is the run's own metric and interval
    assert [drawn["candidate"][k] for k in ("value", "lo", "hi")] == [logged[f"test_ndcg_at_10{s}"] for s in ("", "_lo", "_hi")]
    assert drawn["baseline"]["lo"] <= drawn["baseline"]["value"] <= drawn["baseline"]["hi"]
    assert chart["threshold"] == drawn["baseline"]["value"]
    assert {a.path for a in MlflowClient().list_artifacts(candidate.run_id, "blessing")} == {"blessing/ndcg_at_10.json", "blessing/ndcg_at_10.png"}
    from bentoml._internal.models import ModelStore

    stored = ModelStore(str(settings.bentoml_home / "models")).get(promotion.bento_tag)
    assert stored.info.metadata["version"] == candidate.version
    assert stored.info.metadata["run_id"] == candidate.run_id
    assert (Path(stored.path) / "mlflow_model" / "artifacts" / "export" / "arrays.npz").exists()


def test_worse_candidate_is_refused_and_champion_stays(settings: Settings, synthetic: Dataset, synthetic_split: Split, first_champion) -> None:
    champion_version = first_champion[0].version
    weak = train(synthetic, synthetic_split, settings, "two_tower", params={"epochs": 1, "learning_rate": 0.0001})
    result = bless_and_promote(settings, weak.version, weak.run_id, synthetic_split, synthetic.items)
    assert not result.promoted and result.bento_tag is None
    assert "worse than champion" in result.blessing.reasons[0]
    assert registry.champion(settings) == champion_version
    blessing = json.loads(Path(mlflow.artifacts.download_artifacts(run_id=weak.run_id, artifact_path="blessing.json")).read_text())
    assert blessing["blessed"] is False and blessing["rule"] == "quality"
    chart = json.loads(Path(mlflow.artifacts.download_artifacts(run_id=weak.run_id, artifact_path="blessing/ndcg_at_10.json")).read_text())
    assert [(bar["role"], bar["family"]) for bar in chart["bars"]] == [("candidate", "two_tower"), ("champion", "two_tower")]
    assert chart["threshold"] == chart["bars"][1]["value"] == blessing["champion"] and chart["blessed"] is False
    for who in ("candidate", "champion"):  # both costs measured for the (optional) cost rule, shown in MLflow
        assert blessing["costs"][who]["train_cpu_s"] > 0 and blessing["costs"][who]["serve_cpu_us_per_user"] > 0
    assert MlflowClient().get_run(weak.run_id).data.tags["blessing_rule"] == "quality"


def test_pyfunc_answers_like_the_service(settings: Settings, first_champion) -> None:
    import pandas as pd

    candidate, _ = first_champion
    pyfunc = mlflow.pyfunc.load_model(f"models:/{settings.registered_model}@{settings.champion_alias}")
    out = pyfunc.predict(pd.DataFrame({"user_id": ["u1", "stranger"], "k": [5, 3]}))
    assert len(out.loc[0, "items"]) == 5 and not out.loc[0, "fallback"]
    assert len(out.loc[1, "items"]) == 3 and out.loc[1, "fallback"]
    # the same lists the service ranks (exact search over the same vectors), not just the same lengths
    from recsys.serving import index as ann
    from recsys.serving.logic import Query, ServingModel

    model = registry.load_version(settings, candidate.version)
    served = ServingModel(model, ann.exact_index(model.item_vectors), {}).recommend([Query("u1", 5), Query("stranger", 3)])
    assert [list(out.loc[i, "items"]) for i in (0, 1)] == [[item for item, _ in r.items] for r in served]


def test_unknown_family_is_refused(settings: Settings, synthetic: Dataset, synthetic_split: Split) -> None:
    with pytest.raises(ValueError, match="unknown model family"):
        train(synthetic, synthetic_split, settings, "magic")


def test_registered_model_is_refit_on_train_and_validation(settings: Settings, synthetic: Dataset, synthetic_split: Split) -> None:
    """The standard protocol: what is registered (and blessed, and served) has learned the validation window too."""
    result = train(synthetic, synthetic_split, settings, "ease", params={"l2": 100.0})
    model = registry.load_version(settings, result.version)
    val = synthetic_split.val.groupby("user_id")["item_id"].agg(set)
    assert len(val) > 10
    for user, items in val.items():
        seen = set(model.item_ids[model.seen(model.user_index[user])].tolist())
        assert items <= seen, user  # validation items count as seen: they were in the final fit
    test_only = set(synthetic_split.test["item_id"]) - set(synthetic_split.train_val["item_id"])
    assert not test_only & set(model.item_ids[model.popularity > 0].tolist())  # nothing of the test period
