"""The temporal split leaks nothing from the future and keeps the promised proportions."""

from __future__ import annotations

import pandas as pd

from recsys.data.ingest import Dataset
from recsys.data.split import temporal_user_split, time_cut


def test_each_users_test_is_after_their_train(synthetic: Dataset) -> None:
    split = temporal_user_split(synthetic.interactions)
    last_train = split.train.groupby("user_id")["timestamp"].max()
    first_val = split.val.groupby("user_id")["timestamp"].min()
    first_test = split.test.groupby("user_id")["timestamp"].min()
    last_val = split.val.groupby("user_id")["timestamp"].max()
    assert (first_test >= last_train.reindex(first_test.index)).all()
    assert (first_val >= last_train.reindex(first_val.index)).all()
    both = first_test.index.intersection(last_val.index)
    assert (first_test[both] >= last_val[both]).all()


def test_split_proportions_and_no_lost_rows(synthetic: Dataset) -> None:
    split = temporal_user_split(synthetic.interactions)
    n = len(synthetic.interactions)
    assert len(split.train) + len(split.val) + len(split.test) == n
    assert abs(len(split.test) / n - 0.2) < 0.02
    assert abs(len(split.val) / n - 0.16) < 0.02  # shaped like the test: 20% of the 80% before it
    assert len(split.train_val) == len(split.train) + len(split.val)


def test_users_with_little_history_stay_in_train() -> None:
    df = pd.DataFrame(
        {
            "user_id": ["a"] * 3 + ["b"] * 10,
            "item_id": [f"i{i}" for i in range(13)],
            "timestamp": pd.date_range("2024-01-01", periods=13, freq="D"),
            "event": "purchase",
            "weight": 1.0,
        }
    )
    split = temporal_user_split(df, min_events=5)
    assert set(split.test["user_id"]) == {"b"}
    assert len(split.test) == 2 and len(split.val) == 2  # 20% of 10, then 20% of the 8 before
    assert split.test["timestamp"].min() == pd.Timestamp("2024-01-12")


def test_time_cut(synthetic: Dataset) -> None:
    cut = synthetic.interactions["timestamp"].quantile(0.7)
    before, after = time_cut(synthetic.interactions, cut)
    assert before["timestamp"].max() < cut <= after["timestamp"].min()
    assert len(before) + len(after) == len(synthetic.interactions)
