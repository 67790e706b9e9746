"""Model behaviour: learns a planted signal, never recommends seen items, exactly k unique."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from recsys.data.ingest import Dataset
from recsys.data.split import Split
from recsys.evaluation import evaluate
from recsys.models.base import EmbeddingModel
from recsys.models.popularity import PopularityModel
from recsys.models.two_tower import TwoTowerModel
from tests.conftest import SMALL_TRAINING
from tests.model.heuristic import FLOORS


def _two_tower(synthetic: Dataset, split: Split) -> EmbeddingModel:
    return TwoTowerModel(**SMALL_TRAINING, temperature=0.5).fit(split.train, synthetic.items).export()


def test_two_tower_beats_popularity_on_planted_tastes(synthetic: Dataset, synthetic_split: Split) -> None:
    pop = evaluate(PopularityModel().fit(synthetic_split.train, synthetic.items).export(), synthetic_split.test)
    deep = evaluate(_two_tower(synthetic, synthetic_split), synthetic_split.test)
    assert deep["ndcg_at_10"] > FLOORS["two_tower"] * pop["ndcg_at_10"], deep["ndcg_at_10"] / pop["ndcg_at_10"]
    assert deep["coverage"] > pop["coverage"]


def test_recommendations_are_k_unique_unseen_items(synthetic: Dataset, synthetic_split: Split) -> None:
    model = _two_tower(synthetic, synthetic_split)
    users = np.arange(len(model.user_ids))
    top, scores = model.recommend(users, k=10)
    assert top.shape == (len(users), 10)
    for user, row, row_scores in zip(users, top, scores):
        assert len(set(row.tolist())) == 10
        assert not set(row.tolist()) & set(model.seen(int(user)).tolist())
        assert np.all(np.diff(row_scores) <= 1e-6)  # sorted by score


def test_export_round_trips_without_pickle(tmp_path, synthetic: Dataset, synthetic_split: Split) -> None:
    model = PopularityModel().fit(synthetic_split.train, synthetic.items).export()
    loaded = EmbeddingModel.load(model.save(tmp_path / "m"))
    users = np.arange(5)
    assert np.array_equal(model.recommend(users, 5)[0], loaded.recommend(users, 5)[0])
    assert loaded.meta["family"] == "popularity"


def test_mostly_zero_item_vectors_are_saved_small_and_load_back_the_same(tmp_path, synthetic: Dataset, synthetic_split: Split) -> None:
    model = PopularityModel().fit(synthetic_split.train, synthetic.items).export()
    identity = replace(model, item_vectors=np.eye(model.n_items, dtype=np.float32))  # a two-stage export's item vectors
    for whole in (model, identity):
        loaded = EmbeddingModel.load(whole.save(tmp_path / str(whole.item_vectors.shape[1])))
        assert loaded.item_vectors.dtype == whole.item_vectors.dtype and np.array_equal(loaded.item_vectors, whole.item_vectors)
    with np.load(tmp_path / str(model.n_items) / "arrays.npz") as saved:
        assert "item_vectors" not in saved.files and saved["item_vectors_values"].nbytes == 4 * model.n_items  # the ones only
    with np.load(tmp_path / "1" / "arrays.npz") as saved:
        assert "item_vectors" in saved.files  # popularity's vector is nonzero: saved whole
