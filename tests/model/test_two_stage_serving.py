"""The two-stage model served per request: the service's lists are the export's, one user or a
batch, explained, searchable, and an erasure leaves nothing of the user in what it serves from;
`mlflow models serve` ranks as the service does, and the monitor measures drift in the vectors it searches."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from recsys import registry
from recsys.data.ingest import Dataset
from recsys.data.split import temporal_user_split
from recsys.data.synthetic import make_synthetic
from recsys.models import families
from recsys.models.two_stage import TwoStageModel, ranker
from recsys.models.two_stage.served import ARTIFACT, StageTwo
from recsys.privacy import _mentions, _scrub_model_folder
from recsys.serving.arms import Deployment, score_shadow, serve
from recsys.serving.logic import Query, ServingModel
from recsys.settings import Settings
from recsys.training import train_until

SMALL = {"ease": {"l2": 100.0}, "item_knn": {"neighbours": 30}, "ials": {"factors": 8, "iterations": 5}}


def shop() -> Dataset:
    return make_synthetic(n_users=120, n_items=80, events_per_user=20, seed=3)


@pytest.fixture(scope="module")
def fitted() -> TwoStageModel:
    data = shop()
    model = TwoStageModel(candidates=12, retrievers=SMALL, ranker_epochs=2).fit(temporal_user_split(data.interactions).train_val, data.items)
    model.export().item_titles = np.array([f"title of {i}" for i in model.export().item_ids])  # as training sets them
    return model


@pytest.fixture(scope="module")
def folder(fitted: TwoStageModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registered model's layout: `artifacts/export` and what the family's artifacts hook logs beside it."""
    artifacts = tmp_path_factory.mktemp("model") / "artifacts"
    fitted.export().save(artifacts / "export")
    logged = families.by_name("two_stage").artifacts(fitted, artifacts)
    assert logged == {ARTIFACT: artifacts / ARTIFACT}
    return artifacts.parent


def load(folder: Path) -> ServingModel:
    return ServingModel.load(folder, folder / "artifacts" / "export", {"version": "3"})


@pytest.fixture(scope="module")
def served(folder: Path) -> ServingModel:
    return load(folder)


def test_the_numpy_ranker_scores_as_the_keras_model(fitted: TwoStageModel) -> None:
    x = np.random.default_rng(0).normal(size=(3, 7, fitted.keras_model.input_shape[-1])).astype(np.float32)
    keras_scores = np.asarray(fitted.keras_model(x, training=False))
    assert np.allclose(ranker.forward(ranker.weights(fitted.keras_model), x), keras_scores, atol=1e-5)


def test_every_users_served_list_is_the_exports(fitted: TwoStageModel, served: ServingModel) -> None:
    export = fitted.export()
    top, _ = export.recommend(np.arange(len(export.user_ids)), k=10)
    recs = served.recommend([Query(str(u), 10) for u in export.user_ids])
    assert served.stage_two is not None and served.model.meta["family"] == "ials"  # searched: real item vectors
    for rec, expected in zip(recs, top):
        assert not rec.fallback and [i for i, _ in rec.items] == export.item_ids[expected].tolist()
        scores = [s for _, s in rec.items]
        assert scores == sorted(scores, reverse=True) and min(scores) > 1.0  # ranked candidates, on the export's scale


def test_past_the_candidates_the_list_goes_on_by_popularity_as_the_export(fitted: TwoStageModel, served: ServingModel) -> None:
    export = fitted.export()
    user = int(np.argmax(np.diff(export.seen_indptr)))
    everything = export.n_items - len(export.seen(user))
    top, _ = export.recommend(np.array([user]), k=export.n_items)
    rec = served.recommend([Query(str(export.user_ids[user]), export.n_items)])[0]
    assert [i for i, _ in rec.items] == export.item_ids[top[0][:everything]].tolist()
    assert len(rec.items) == everything and min(s for _, s in rec.items) <= 1.0


def test_a_batch_answers_as_its_queries_one_at_a_time(served: ServingModel) -> None:
    users = served.model.user_ids[:12].tolist()
    queries = [Query(u, 3 + i % 7, exclude_seen=i % 3 > 0, explain=i % 2 == 0) for i, u in enumerate(users)]
    queries += [Query("nobody", 5), Query(users[0], 5, forgotten=True)]
    batch = served.recommend(queries)
    assert batch == [served.recommend([q])[0] for q in queries]
    assert [r.fallback for r in batch[-2:]] == [True, True] and not any(r.fallback for r in batch[:-2])


def test_it_answers_as_a_canary_and_scores_as_a_shadow(served: ServingModel) -> None:
    users = served.model.user_ids[:20].tolist()
    queries = [Query(u, 5) for u in users]
    deployment = Deployment(served, canary=served, shadow=served)
    answers = serve(deployment, queries, users, canary_share=0.5)  # the ids stand in for pseudonyms
    assert {a.arm for a in answers} == {"champion", "canary"} and not any(a.canary_error for a in answers)
    shadows = score_shadow(served, queries)
    assert [s.items for s in shadows] == [[i for i, _ in a.recommendation.items] for a in answers]


def test_explanations_name_a_seen_item_and_similar_items_use_real_vectors(served: ServingModel) -> None:
    model = served.model
    user = str(model.user_ids[5])
    rec = served.recommend([Query(user, 10, explain=True)])[0]
    seen = set(model.item_ids[model.seen(5)].tolist())
    assert rec.because is not None and len(rec.because) == 10 and set(rec.because) <= seen
    assert model.title(rec.because[0]) == f"title of {rec.because[0]}"
    item = str(model.item_ids[model.popular_order[0]])
    similar = served.similar(item, 5)
    assert similar is not None and len(similar) == 5 and item not in {i for i, _ in similar}


def test_an_erasure_leaves_nothing_of_the_user_in_what_the_service_ranks_from(folder: Path, served: ServingModel, tmp_path: Path) -> None:
    copy = shutil.copytree(folder, tmp_path / "model")
    gone, kept = (str(u) for u in served.model.user_ids[[7, 8]])
    assert _scrub_model_folder(copy, gone) == 2  # the export's arrays and the stage-two folder, rewritten
    stage = StageTwo.load(copy / "artifacts" / ARTIFACT)
    n_users = len(served.model.user_ids) - 1
    assert all(gone not in m.user_index and len(m.user_ids) == n_users for m in stage.snapshot.models.values())
    assert stage.snapshot.recent.shape[0] == stage.snapshot.history_len.shape[0] == n_users
    assert not [p for p in (copy / "artifacts").rglob("*") if p.is_file() and _mentions(p.read_bytes(), gone)]
    after = load(copy)
    assert after.recommend([Query(gone, 10)])[0].fallback
    assert after.recommend([Query(kept, 10)]) == served.recommend([Query(kept, 10)])  # everyone else as before


def test_mlflow_models_serve_ranks_each_request_as_the_service(fitted: TwoStageModel, folder: Path, served: ServingModel, settings: Settings) -> None:
    """The logged pyfunc (what `mlflow models serve` loads) ranks from the stage-two artifact, not the frozen score table."""
    export = fitted.export()
    registry.configure(settings)
    with mlflow.start_run():
        uri = registry.log_model(export, {ARTIFACT: folder / "artifacts" / ARTIFACT})
    pyfunc = mlflow.pyfunc.load_model(uri)
    assert pyfunc.unwrap_python_model().stage_two is not None
    users = export.user_ids[:8].tolist()
    out = pyfunc.predict(pd.DataFrame({"user_id": [*users, "nobody"], "k": 10}))
    top, _ = export.recommend(np.array([export.user_index[u] for u in users]), k=10)
    assert out["items"].tolist()[:-1] == export.item_ids[top].tolist()
    answers = served.recommend([Query(u, 10) for u in [*users, "nobody"]])
    assert out["scores"].tolist() == [[s for _, s in a.items] for a in answers]  # the service's scores too
    assert out["fallback"].tolist() == [False] * len(users) + [True]


def test_a_two_stage_champions_embedding_drift_is_measured_in_its_ials_vectors(
    fitted: TwoStageModel, folder: Path, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows import monitor

    data, export = shop(), shutil.copytree(folder, tmp_path / "model") / "artifacts" / "export"
    meta = json.loads((export / "meta.json").read_text())  # training sets the cut
    (export / "meta.json").write_text(json.dumps({**meta, "train_until": str(train_until(data))}))
    monkeypatch.setattr(monitor.registry, "champion", lambda settings: "1")
    monkeypatch.setattr(monitor.registry, "download_export", lambda settings, version: export)
    monkeypatch.setattr(monitor, "load_dataset", lambda *args: data)
    reference, _, _, model, searched, centroid = monitor.reference_window.fn("shop")
    assert model.n_items == 80 and searched.meta["family"] == "ials"
    assert centroid.shape == (8,)  # the iALS factors: the score table's identity vectors would give one per item
    np.testing.assert_allclose(reference["embedding_drift"], 0.0, atol=1e-9)  # the reference against itself
