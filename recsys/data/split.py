"""Temporal splits: per user (evaluation) and at a global time cut (replaying later traffic).

Per-user split: each user's interactions are ordered by time; the last `test_frac` are the
test set, and validation is cut from what comes before it the same way (the last `test_frac` of
the rest). Users with fewer than `min_events` interactions stay wholly in train (too little
history to hold any back).

Why validation is shaped like the test: the standard protocol chooses a configuration by fitting
on train and scoring on validation, then refits it on train + validation (`Split.train_val`) and
scores on test. Train is to validation what train + validation is to test only when both windows
are cut alike; a validation window of 10% of each user's events picked configurations that did not
carry over to a test window of 20% (docs/quality.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from recsys.schemas import ITEM_COL, TS_COL, USER_COL


@dataclass(frozen=True)
class Split:
    """Train, validation and test interactions (canonical columns)."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame

    @cached_property
    def train_val(self) -> pd.DataFrame:
        """Train and validation together: what a chosen configuration is refit on before the test."""
        return pd.concat([self.train, self.val], ignore_index=True)


def temporal_user_split(interactions: pd.DataFrame, test_frac: float = 0.2, min_events: int = 5) -> Split:
    """Hold back each user's latest interactions: the last 20% as test, the last 20% of the rest as val.

    Rows are ordered by (user, time, item) through integer codes in the ids' sorted order: the
    same order as sorting the id strings, without comparing tens of millions of strings.
    """
    users, items = _sorted_codes(interactions[USER_COL]), _sorted_codes(interactions[ITEM_COL])
    order = np.lexsort((items, interactions[TS_COL].to_numpy(), users))
    df = interactions.take(order).reset_index(drop=True)
    user = users[order]
    n = np.bincount(user)[user]
    pos = np.arange(len(df)) - np.searchsorted(user, user)  # rank within the user: rows since the user's first
    n_test = np.where(n >= min_events, np.round(n * test_frac), 0)
    n_val = np.where(n >= min_events, np.round((n - n_test) * test_frac), 0)
    is_test = pos >= n - n_test
    is_val = ~is_test & (pos >= n - n_test - n_val)
    is_train = ~is_test & ~is_val
    return Split(df[is_train].reset_index(drop=True), df[is_val].reset_index(drop=True), df[is_test].reset_index(drop=True))


def _sorted_codes(ids: pd.Series) -> np.ndarray:
    """Integer codes whose order is the ids' sorted order (missing ids first)."""
    codes, _ = pd.factorize(ids, sort=True, use_na_sentinel=True)
    return codes.astype(np.int64) + 1


def time_cut(interactions: pd.DataFrame, cutoff: str | pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Interactions before `cutoff` and from `cutoff` on (training period, replayed period)."""
    cut = pd.Timestamp(cutoff)
    before = interactions[interactions[TS_COL] < cut].reset_index(drop=True)
    after = interactions[interactions[TS_COL] >= cut].reset_index(drop=True)
    return before, after


def count_between(interactions: pd.DataFrame, start: str | pd.Timestamp, end: str | pd.Timestamp) -> int:
    """How many interactions fall in [start, end): the new data a retrain would learn from."""
    ts = interactions[TS_COL]
    return int(((ts >= pd.Timestamp(start)) & (ts < pd.Timestamp(end))).sum())
