"""Every metric against values worked out by hand, and the protocol's seen-item rule."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from recsys.evaluation import (
    evaluate,
    f1_at_k,
    hitrate_at_k,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    ranked_truth,
    recall_at_k,
    sample_users,
    top_k_stable,
)
from recsys.models.base import EmbeddingModel, build_seen

TRUTH = {"a", "c", "x"}
RECS = ["a", "b", "c", "d"]  # hits at ranks 1 and 3


def test_precision_and_recall_by_hand() -> None:
    assert precision_at_k(TRUTH, RECS, 4) == pytest.approx(2 / 4)
    assert precision_at_k(TRUTH, RECS, 2) == pytest.approx(1 / 2)
    assert recall_at_k(TRUTH, RECS, 4) == pytest.approx(2 / 3)
    assert recall_at_k(TRUTH, RECS, 1) == pytest.approx(1 / 3)
    assert recall_at_k(set(), RECS, 4) == 0.0


def test_f1_by_hand() -> None:
    p, r = 0.5, 2 / 3
    assert f1_at_k(TRUTH, RECS, 4) == pytest.approx(2 * p * r / (p + r))
    assert f1_at_k({"z"}, RECS, 4) == 0.0


def test_ndcg_by_hand() -> None:
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(TRUTH, RECS, 4) == pytest.approx(dcg / idcg)
    assert ndcg_at_k({"a"}, ["a", "b"], 2) == pytest.approx(1.0)
    assert ndcg_at_k({"b"}, ["a", "b"], 2) == pytest.approx(1 / math.log2(3))


def test_map_by_hand() -> None:
    # precision at the hits: 1/1 and 2/3; divided by min(|truth|, k) = 3
    assert map_at_k(TRUTH, RECS, 4) == pytest.approx((1 + 2 / 3) / 3)
    assert map_at_k({"d"}, RECS, 4) == pytest.approx(1 / 4)
    assert map_at_k({"z"}, RECS, 4) == 0.0


def test_hitrate_by_hand() -> None:
    assert hitrate_at_k(TRUTH, RECS, 1) == 1.0
    assert hitrate_at_k({"c"}, RECS, 2) == 0.0
    assert hitrate_at_k({"c"}, RECS, 3) == 1.0


def _tiny_model() -> EmbeddingModel:
    users = np.array(["u1", "u2"])
    items = np.array(["a", "b", "c"])
    train = pd.DataFrame({"user_id": ["u1"], "item_id": ["a"]})
    indptr, indices = build_seen(train, users, items)
    return EmbeddingModel(
        users,
        items,
        user_vectors=np.array([[1.0], [1.0]], dtype=np.float32),
        item_vectors=np.array([[3.0], [2.0], [1.0]], dtype=np.float32),
        popularity=np.array([5.0, 1.0, 3.0], dtype=np.float32),
        seen_indptr=indptr,
        seen_indices=indices,
    )


def test_evaluate_excludes_seen_items_and_falls_back_for_unknown_users() -> None:
    model = _tiny_model()
    test = pd.DataFrame({"user_id": ["u1", "u2", "new"], "item_id": ["b", "a", "a"]})
    metrics = evaluate(model, test, ks=(1,))
    # u1 saw "a", so "b" ranks first (hit); u2 gets "a" (hit); "new" gets popular "a" (hit)
    assert metrics["hitrate_at_1"] == pytest.approx(1.0)
    assert metrics["n_users"] == 3
    test_miss = pd.DataFrame({"user_id": ["u1"], "item_id": ["a"]})
    assert evaluate(model, test_miss, ks=(1,))["hitrate_at_1"] == 0.0


def test_bootstrap_ci_brackets_the_mean() -> None:
    from recsys.evaluation import bootstrap_ci

    values = np.random.default_rng(1).random(300)
    lo, hi = bootstrap_ci(values, n=200, seed=0)
    assert lo < values.mean() < hi and hi - lo < 0.2
    assert bootstrap_ci(values, n=200, seed=0) == (lo, hi)  # seeded
    assert bootstrap_ci([], n=10) == (0.0, 0.0)


def test_evaluate_adds_intervals_and_curves_rise_with_k() -> None:
    from recsys.evaluation import metric_curve

    model = _tiny_model()
    test = pd.DataFrame({"user_id": ["u1", "u2", "u2"], "item_id": ["c", "a", "c"]})
    metrics = evaluate(model, test, ks=(1, 2), bootstrap=50)
    assert metrics["recall_at_2_lo"] <= metrics["recall_at_2"] <= metrics["recall_at_2_hi"]
    assert "ndcg_at_1_lo" in metrics and "coverage_lo" not in metrics
    only = evaluate(model, test, ks=(1, 2), bootstrap=50, intervals=("ndcg_at_2",))  # a blessing's one metric
    assert {k for k in only if k.endswith(("_lo", "_hi"))} == {"ndcg_at_2_lo", "ndcg_at_2_hi"}
    assert (only["ndcg_at_2_lo"], only["ndcg_at_2_hi"]) == (metrics["ndcg_at_2_lo"], metrics["ndcg_at_2_hi"])  # the same interval
    curve = metric_curve(model, test, max_k=3)
    assert len(curve["recall"]) == 3 and curve["recall"] == sorted(curve["recall"])
    assert curve["recall"][-1] == pytest.approx(1.0)


def test_top_k_matches_a_stable_full_sort_with_ties_and_excluded_items() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, (40, 120)).astype(np.float32)  # few distinct values: ties everywhere
    scores[rng.random(scores.shape) < 0.3] = -np.inf  # excluded items
    for k in (1, 10, 20, 200):
        expected = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        assert [row.tolist() for row in top_k_stable(scores, k)] == expected.tolist()


def test_above_max_users_a_fixed_sample_of_test_users_is_ranked() -> None:
    rng = np.random.default_rng(1)
    n_users, n_items = 300, 30
    users, items = np.array([f"u{i:03d}" for i in range(n_users)]), np.array([f"i{j}" for j in range(n_items)])
    model = EmbeddingModel(
        users,
        items,
        rng.normal(size=(n_users, 4)).astype(np.float32),
        rng.normal(size=(n_items, 4)).astype(np.float32),
        np.ones(n_items, dtype=np.float32),
        np.zeros(n_users + 1, dtype=np.int64),
        np.zeros(0, dtype=np.int32),
    )
    test = pd.DataFrame({"user_id": np.repeat(users, 2), "item_id": rng.choice(items, 2 * n_users)})
    full = evaluate(model, test)
    sampled = evaluate(model, test, max_users=100, seed=7, bootstrap=200)
    assert sampled["n_users"] == 100 and sampled["n_test_users"] == full["n_users"] == n_users
    assert evaluate(model, test, max_users=100, seed=7)["ndcg_at_10"] == sampled["ndcg_at_10"]  # same sample every time
    assert evaluate(model, test.sample(frac=1.0, random_state=3), max_users=100, seed=7)["ndcg_at_10"] == sampled["ndcg_at_10"]
    assert evaluate(model, test, max_users=100, seed=8)["ndcg_at_10"] != sampled["ndcg_at_10"]
    assert sampled["ndcg_at_10_lo"] <= full["ndcg_at_10"] <= sampled["ndcg_at_10_hi"]  # the interval covers the full mean
    ids = pd.Index(users)
    picked = sample_users(ids, 100, seed=7)
    assert len(picked) == 100 and picked.is_unique and set(picked) <= set(users)
    assert sample_users(ids, 1000, seed=7).equals(ids.sort_values())
    truth, n = ranked_truth(test, 100, seed=7)  # item sets for the sampled users only
    assert n == n_users and list(truth.index) == list(picked)
    assert all(truth[u] == set(test.loc[test["user_id"] == u, "item_id"]) for u in picked[:10])
