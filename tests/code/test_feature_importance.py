"""Permutation importance of the ranker's feature groups: hand-worked NDCG of lists, and a planted feature found."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.models.two_stage.features import NAMES
from recsys.models.two_stage.importance import GROUPS, list_ndcg, permutation_importance


def test_every_feature_is_in_exactly_one_group() -> None:
    grouped = [name for members in GROUPS.values() for name in members]
    assert sorted(grouped) == sorted(NAMES)


def test_list_ndcg_by_hand() -> None:
    labels = np.array([[0.0, 1.0, -1.0], [1.0, 0.0, 1.0]], dtype=np.float32)
    scores = np.array([[2.0, 1.0, 9.0], [3.0, 2.0, 1.0]], dtype=np.float32)  # the pad's 9 is never ranked
    # list 1: its one relevant item second: (1/log2 3) / 1; list 2: ranks 1 and 3 of two relevant: (1 + 1/2) / (1 + 1/log2 3)
    expected = (1 / np.log2(3) + 1.5 / (1 + 1 / np.log2(3))) / 2
    assert list_ndcg(scores, labels, k=10) == pytest.approx(expected)
    assert list_ndcg(scores, labels, k=1) == pytest.approx(0.5)  # only list 2 has its relevant item first


def test_a_planted_feature_is_the_one_whose_shuffle_hurts() -> None:
    """The scorer reads one feature, which is exactly what was taken: shuffling its group drops NDCG, the others cost nothing."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 12, len(NAMES))).astype(np.float32)
    planted = NAMES.index("category_affinity")
    labels = (features[..., planted] > 1.0).astype(np.float32)
    labels[:, -2:] = -1.0  # padded tails
    labels[~(labels > 0).any(axis=1), 0] = 1.0  # every list has a positive, like the ranker's own lists
    importance = permutation_importance(lambda f: f[..., planted], features, labels, "planted lists", repeats=2)
    assert importance.lists == 200 and importance.ndcg > 0.9
    assert importance.groups[0].group == "category_affinity" and importance.groups[0].drop > 0.3
    assert all(g.drop == 0.0 and g.spread == 0.0 for g in importance.groups[1:])  # what the scorer ignores moves nothing
    assert 0.0 < importance.groups[0].spread < importance.groups[0].drop
    assert {g.group for g in importance.groups} == set(GROUPS)
    table = importance.markdown()
    assert "planted lists" in table and table.count("\n| ") == len(GROUPS) + 1  # header row and one row per group
    assert set(importance.metrics()) == {f"importance_{g}_ndcg_drop" for g in GROUPS}
