"""The two-stage model: clean candidates, no leakage from the label period, and a win where a ranker is needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data.ingest import Dataset
from recsys.data.split import Split, temporal_user_split
from recsys.evaluation import evaluate
from recsys.models import families
from recsys.models.ease import EASEModel
from recsys.models.ials import IALSModel
from recsys.models.item_knn import ItemKNNModel
from recsys.models.popularity import PopularityModel
from recsys.models.two_stage import TwoStageModel, ranker
from recsys.models.two_stage.candidates import candidates
from recsys.models.two_stage.features import features
from recsys.models.two_stage.model import build_snapshot, ranker_examples
from recsys.models.two_stage.reuse import reusing
from recsys.models.two_stage.served import StageTwo
from recsys.models.two_stage.snapshot import NEVER_DAYS, RETRIEVERS, Snapshot
from recsys.schemas import CATEGORY_COL, EVENT_COL, ITEM_COL, TS_COL, USER_COL, WEIGHT_COL
from recsys.settings import Settings

SMALL = {"ease": {"l2": 100.0}, "item_knn": {"neighbours": 50}, "ials": {"factors": 16, "iterations": 10}}
T0 = pd.Timestamp("2024-01-01")


def test_candidates_are_unique_and_never_seen(synthetic: Dataset, synthetic_split: Split) -> None:
    model = TwoStageModel(candidates=20, retrievers=SMALL)
    snap = build_snapshot(synthetic_split.train_val, synthetic.items, model.params)
    users = np.arange(len(snap.base.user_ids))
    cands = candidates(snap, users, 20)
    assert cands.items.shape[1] > 20  # the retrievers disagree: the union is wider than one top 20
    for user, row in zip(users, cands.items):
        proposed = row[row >= 0]
        assert len(proposed) == len(set(proposed.tolist())) >= 20
        assert not set(proposed.tolist()) & set(snap.base.seen(int(user)).tolist())


def timeline() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three users, five events each; each user's last event is their label period.

    "late" is taken only in label periods (a and b), and i1's third taker (c) takes it in
    their label period too, far after everything else.
    """
    events = {
        "a": [("i1", 1), ("i2", 2), ("i3", 3), ("i4", 4), ("late", 20)],
        "b": [("i1", 1), ("i2", 5), ("i3", 6), ("i5", 7), ("late", 21)],
        "c": [("i2", 2), ("i3", 3), ("i4", 8), ("i5", 9), ("i1", 22)],
    }
    rows = [(user, item, T0 + pd.Timedelta(days=day)) for user, seq in events.items() for item, day in seq]
    train = pd.DataFrame(rows, columns=[USER_COL, ITEM_COL, TS_COL]).assign(**{EVENT_COL: "purchase", WEIGHT_COL: 1.0})
    items = pd.DataFrame({ITEM_COL: ["i1", "i2", "i3", "i4", "i5", "late"], CATEGORY_COL: ["x", "x", "y", "y", "x", "y"]})
    return train, items


def test_the_rankers_training_features_see_nothing_from_the_label_period() -> None:
    train, items = timeline()
    params = TwoStageModel(candidates=10, retrievers={"ials": {"factors": 2, "iterations": 2}}, trend_days=30.0).params
    examples = ranker_examples(train, items, params)
    snap = examples.snapshot
    late, i1 = snap.base.item_index["late"], snap.base.item_index["i1"]
    assert snap.now == T0 + pd.Timedelta(days=9, seconds=1)  # after the last history event, not day 22
    assert snap.base.popularity[late] == 0 and snap.trend[late] == 0 and snap.days_since_seen[late] == NEVER_DAYS
    assert snap.base.popularity[i1] == 2  # a and b before their labels; c's day-22 event is a label
    assert snap.days_since_seen[i1] == pytest.approx(8.0 + 1 / 86400)
    assert (snap.history_len == 4).all()

    # the same features, built by hand from the history alone (every event but each user's last)
    history = train[train[TS_COL] < T0 + pd.Timedelta(days=20)]
    by_hand = build_snapshot(history, items, params)
    expected = features(by_hand, examples.users, candidates(by_hand, examples.users, 10))
    assert len(examples.users) == 3 and np.array_equal(examples.features, expected)
    late_row = examples.candidates.items == late
    assert examples.labels[late_row].tolist() == [1.0, 1.0, 0.0]  # a and b took it in their label period, c did not


def planted(n_users: int = 500, n_items: int = 200, n_categories: int = 8, events: int = 12, days: float = 60.0, tau: float = 5.0) -> Dataset:
    """A shop where people buy what is selling *now* *in their own category*.

    Items launch over time and their sales decay (half-life ~ tau·ln 2 days); each user buys
    in one category, weighting its items by their current sales. All-time popularity points
    to old hits, the recent trend to other categories, and co-occurrence over the whole
    history (EASE, item-kNN, iALS) to items bought together weeks ago: only trend and
    category together, as the ranker sees them, find what is bought in the test period.
    """
    rng = np.random.default_rng(0)
    category = rng.integers(0, n_categories, n_items)
    launch = rng.uniform(-2 * tau, days, n_items)
    rows = []
    for user in range(n_users):
        mine = np.flatnonzero(category == rng.integers(n_categories))
        for t in np.sort(rng.uniform(0, days, events)):
            age = t - launch[mine]
            sales = np.where(age >= 0, np.exp(-np.maximum(age, 0) / tau), 0.0)
            if sales.sum() > 0:
                rows.append((f"u{user}", f"i{mine[rng.choice(len(mine), p=sales / sales.sum())]}", T0 + pd.Timedelta(days=float(t))))
    interactions = pd.DataFrame(rows, columns=[USER_COL, ITEM_COL, TS_COL]).assign(**{EVENT_COL: "purchase", WEIGHT_COL: 1.0})
    items = pd.DataFrame({ITEM_COL: [f"i{i}" for i in range(n_items)], CATEGORY_COL: [f"c{c}" for c in category]})
    return Dataset("planted", interactions, items)


def test_two_stage_beats_every_retriever_where_trend_and_category_must_meet() -> None:
    data = planted()
    split = temporal_user_split(data.interactions)
    recent = split.train_val[split.train_val[TS_COL] >= split.train_val[TS_COL].max() - pd.Timedelta(days=14)]
    retrievers = {
        "ease": EASEModel(l2=100.0).fit(split.train_val, data.items).export(),
        "item_knn": ItemKNNModel(neighbours=50).fit(split.train_val, data.items).export(),
        "ials": IALSModel(factors=16, iterations=10).fit(split.train_val, data.items).export(),
        "popularity": PopularityModel().fit(split.train_val, data.items).export(),
    }
    scores = {name: evaluate(model, split.test, exclude=split.train_val)["ndcg_at_10"] for name, model in retrievers.items()}
    trend = PopularityModel().fit(recent, data.items).export()  # the last two weeks' best sellers, for everyone
    scores["trend"] = evaluate(trend, split.test, exclude=split.train_val)["ndcg_at_10"]
    two_stage = TwoStageModel(candidates=30, retrievers=SMALL).fit(split.train_val, data.items)
    ndcg = evaluate(two_stage.export(), split.test)["ndcg_at_10"]
    assert ndcg > 2 * max(scores.values()), (ndcg, scores)
    assert two_stage.candidate_recall(split.test) > 0.6


def test_the_export_ranks_only_unseen_items(synthetic: Dataset, synthetic_split: Split) -> None:
    model = TwoStageModel(candidates=20, retrievers=SMALL, ranker_epochs=2).fit(synthetic_split.train, synthetic.items).export()
    top, scores = model.recommend(np.arange(len(model.user_ids)), k=10)
    for user, row in enumerate(top):
        assert len(set(row.tolist())) == 10 and not set(row.tolist()) & set(model.seen(user).tolist())
    assert (scores > 1.0).all()  # every top 10 comes from the ranked candidates, above the popularity filler
    assert model.meta["family"] == "two_stage"


def test_the_family_table_builds_the_two_stage_model(tmp_path: Path) -> None:
    model, hp = families.by_name("two_stage").build(Settings(home=tmp_path, seed=7), {"candidates": 40})
    assert isinstance(model, TwoStageModel) and model.family == "two_stage"
    assert hp == {"seed": 7, "candidates": 40} and model.params["seed"] == 7 and model.params["candidates"] == 40
    assert "two_stage" in families.NAMES and "two_stage" in families.CANDIDATES  # served per request (two_stage.served)


def test_training_lists_keep_every_taken_item_and_a_sample_of_the_rest() -> None:
    labels = np.array([[0, 1, 0, 0, 1, 0, -1, -1], [1, 0, 0, 0, 0, 0, 0, 0]], dtype=np.float32)
    feats = np.arange(labels.size, dtype=np.float32).reshape(*labels.shape, 1)
    kept_features, kept = ranker.sample_lists(feats, labels, 4, seed=0)
    assert kept.shape == (2, 4) and kept_features.shape == (2, 4, 1)
    assert (kept == 1.0).sum(axis=1).tolist() == [2, 1]  # every taken item stays
    assert (kept == ranker.PAD_LABEL).sum() == 0  # pads go before any candidate does
    for row in range(2):  # each kept entry is the same candidate, features and label together
        columns = kept_features[row, :, 0].astype(int) - row * labels.shape[1]
        assert (labels[row, columns] == kept[row]).all() and len(set(columns.tolist())) == 4
    assert ranker.sample_lists(feats, labels, 8, seed=0)[1] is labels  # short lists are left whole


def test_a_search_fits_the_retrievers_once_per_window_and_ranks_as_a_fresh_fit(
    synthetic: Dataset, synthetic_split: Split, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds = []
    build = Snapshot.build
    monkeypatch.setattr(Snapshot, "build", classmethod(lambda cls, *a, **k: builds.append(1) or build(*a, **k)))
    fresh = TwoStageModel(candidates=20, retrievers=SMALL, ranker_epochs=2, seed=3).fit(synthetic_split.train, synthetic.items).export()
    assert len(builds) == 2  # the history before the labels, and all of train
    with reusing():
        for n, seed in ((10, 1), (20, 2), (20, 3)):
            searched = TwoStageModel(candidates=n, retrievers={**SMALL, "ials": {**SMALL["ials"], "seed": 3}}, ranker_epochs=2, seed=seed)
            searched.fit(synthetic_split.train, synthetic.items)
    assert len(builds) == 4  # three fits inside `reusing`: the same two windows, built once
    np.testing.assert_array_equal(searched.export().recommend(np.arange(20), k=10)[0], fresh.recommend(np.arange(20), k=10)[0])


def test_the_sequence_model_joins_the_union_when_named_and_is_served_from_its_snapshot(synthetic: Dataset, synthetic_split: Split, tmp_path: Path) -> None:
    deep = {"epochs": 1, "embedding_dim": 8, "max_len": 10, "bag_len": 20, "batch_size": 256}
    model = TwoStageModel(candidates=10, retrievers={**SMALL, "seq_two_tower": deep}, ranker_epochs=2).fit(synthetic_split.train, synthetic.items)
    snap, cands = model.snapshot, model.served
    assert snap.retrievers == RETRIEVERS and snap.models["seq_two_tower"].user_vectors.shape[1] == 8
    assert model.retrievers["seq_two_tower"].params["seed"] == model.params["seed"]  # seeded like iALS
    proposed = (cands.ranks[..., RETRIEVERS.index("seq_two_tower")] < 10) & cands.valid
    assert (proposed.sum(axis=1) == 10).all()  # each user's top 10 of the sequence model is in their union
    stage_two = StageTwo.load(StageTwo.of(model).save(tmp_path / "two_stage"))  # what the service ranks from
    assert stage_two.snapshot.retrievers == RETRIEVERS
    top, _ = model.export().recommend(np.arange(20), k=10)
    assert all((stage_two.rank(user, 10)[0] == top[user]).all() for user in range(20))

    without = TwoStageModel(candidates=10, retrievers=SMALL, ranker_epochs=2).fit(synthetic_split.train, synthetic.items)
    assert "seq_two_tower" not in without.snapshot.retrievers and "seq_two_tower" not in without.retrievers
    assert (without.served.ranks[..., RETRIEVERS.index("seq_two_tower")] == 10).all()  # not fit: it proposes nothing
