"""Baselines learn the planted tastes, never recommend seen items, and explain themselves."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.data.ingest import Dataset
from recsys.data.split import Split
from recsys.evaluation import evaluate
from recsys.models.base import EmbeddingModel
from recsys.models.ease import EASEModel
from recsys.models.ials import IALSModel
from recsys.models.item_knn import ItemKNNModel
from recsys.models.popularity import PopularityModel
from tests.model.heuristic import FLOORS, category_popularity

BASELINES = {
    "ease": lambda: EASEModel(l2=100.0),
    "ials": lambda: IALSModel(factors=16, iterations=10),
    "item_knn": lambda: ItemKNNModel(neighbours=50),
}


@pytest.fixture(scope="module")
def fitted(synthetic: Dataset, synthetic_split: Split) -> dict[str, EmbeddingModel]:
    return {name: make().fit(synthetic_split.train, synthetic.items).export() for name, make in BASELINES.items()}


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_beats_popularity_on_planted_tastes(name: str, fitted, synthetic: Dataset, synthetic_split: Split) -> None:
    pop = evaluate(PopularityModel().fit(synthetic_split.train, synthetic.items).export(), synthetic_split.test)
    model = evaluate(fitted[name], synthetic_split.test)
    assert model["ndcg_at_10"] > FLOORS[name] * pop["ndcg_at_10"], model["ndcg_at_10"] / pop["ndcg_at_10"]
    assert fitted[name].meta["family"] == name


def test_the_category_rule_sets_the_scale(synthetic: Dataset, synthetic_split: Split) -> None:
    """The generator's own rule lifts popularity 2.6x: a floor near 1.2x would hide a broken model."""
    pop = evaluate(PopularityModel().fit(synthetic_split.train, synthetic.items).export(), synthetic_split.test)
    rule = evaluate(category_popularity(synthetic_split.train, synthetic.items), synthetic_split.test)
    assert rule["ndcg_at_10"] > 2.4 * pop["ndcg_at_10"] and rule["ndcg_at_10"] > max(FLOORS.values()) * pop["ndcg_at_10"]


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_never_recommends_seen_items(name: str, fitted) -> None:
    model = fitted[name]
    users = np.arange(len(model.user_ids))
    top, _ = model.recommend(users, k=10)
    for user, row in zip(users, top):
        assert len(set(row.tolist())) == 10
        assert not set(row.tolist()) & set(model.seen(int(user)).tolist())


def test_item_item_models_export_binary_rows_and_columns(fitted) -> None:
    model = fitted["ease"]
    assert set(np.unique(model.user_vectors)) <= {0.0, 1.0}
    assert model.user_vectors.shape[1] == model.item_vectors.shape[1]  # one column per trained item
    assert model.user_vectors.sum() == len(model.seen_indices)


def test_explanation_names_the_seen_item_closest_to_each_recommendation(fitted) -> None:
    """The one definition of "why", as served: per item, the seen item with the largest dot product."""
    from recsys.serving import index as ann
    from recsys.serving.logic import Query, ServingModel

    model = fitted["ials"]
    serving = ServingModel(model, ann.exact_index(model.item_vectors), {})
    rec = serving.recommend([Query(str(model.user_ids[0]), 3, exclude_seen=True, explain=True)])[0]
    seen = model.seen(0)
    assert len(rec.items) == 3 and len(rec.because) == 3
    for (item, _), because in zip(rec.items, rec.because):
        target = model.item_vectors[model.item_index[item]]
        assert because == model.item_ids[seen[np.argmax(model.item_vectors[seen] @ target)]]
    assert serving.recommend([Query("nobody", 3, explain=True)])[0].because is None  # popularity has no history to cite
