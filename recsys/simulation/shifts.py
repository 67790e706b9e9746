"""Shifts to inject into replayed real traffic, beside the shift the data really has.

Each shift rewrites the interactions from `at` on, so the replayed requests, the feedback
and the data a retrain later reads all see the same world (a retrain on the shifted data
can learn it, as it would in a shop). They are seeded and leave everything before `at` alone.

- `new_users`: a share of customers come back under new ids (a surge of new users: the
  model knows none of them, the service falls back to popularity).
- `category`: only a share of the categories keep selling (a category shift).
- `popularity`: the best-selling items stop selling (a popularity shift).
- `request_mix`: only light users keep visiting (a change in request mix).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from recsys.schemas import CATEGORY_COL, ITEM_COL, TS_COL, USER_COL

Shift = Callable[[pd.DataFrame, pd.DataFrame, pd.Series, float, np.random.Generator], pd.DataFrame]


def _new_users(interactions: pd.DataFrame, items: pd.DataFrame, after: pd.Series, share: float, rng: np.random.Generator) -> pd.DataFrame:
    users = interactions[USER_COL].unique()
    moved = rng.choice(users, int(round(share * len(users))), replace=False)
    rows = after & interactions[USER_COL].isin(moved)
    interactions.loc[rows, USER_COL] = "new-" + interactions.loc[rows, USER_COL].astype(str)
    return interactions


def _category(interactions: pd.DataFrame, items: pd.DataFrame, after: pd.Series, share: float, rng: np.random.Generator) -> pd.DataFrame:
    categories = items[CATEGORY_COL].dropna().unique()
    kept = set(rng.choice(categories, max(1, int(round(share * len(categories)))), replace=False))
    selling = interactions[ITEM_COL].map(items.set_index(ITEM_COL)[CATEGORY_COL]).isin(kept)
    return interactions[~after | selling]


def _popularity(interactions: pd.DataFrame, items: pd.DataFrame, after: pd.Series, share: float, rng: np.random.Generator) -> pd.DataFrame:
    counts = interactions.loc[~after, ITEM_COL].value_counts()
    sold_out = set(counts.index[: int(round(share * len(counts)))])
    return interactions[~after | ~interactions[ITEM_COL].isin(sold_out)]


def _request_mix(interactions: pd.DataFrame, items: pd.DataFrame, after: pd.Series, share: float, rng: np.random.Generator) -> pd.DataFrame:
    activity = interactions.loc[~after, USER_COL].value_counts()
    light = set(activity.index[activity <= activity.quantile(share)]) | (set(interactions[USER_COL]) - set(activity.index))
    return interactions[~after | interactions[USER_COL].isin(light)]


SHIFTS: dict[str, Shift] = {
    "new_users": _new_users,
    "category": _category,
    "popularity": _popularity,
    "request_mix": _request_mix,
}


def inject(interactions: pd.DataFrame, items: pd.DataFrame, kind: str, at: str | pd.Timestamp, share: float, seed: int = 0) -> pd.DataFrame:
    """`interactions` with shift `kind` applied from `at` on (`share` sets its strength, 0..1)."""
    if kind not in SHIFTS:
        raise ValueError(f"unknown shift {kind!r}; known: {', '.join(SHIFTS)}")
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1]; got {share}")
    frame = interactions.copy()
    after = frame[TS_COL] >= pd.Timestamp(at)
    if not after.any():
        raise ValueError(f"no interactions at or after {at}: nothing to shift")
    shifted = SHIFTS[kind](frame, items, after, share, np.random.default_rng(seed))
    return shifted.reset_index(drop=True)
