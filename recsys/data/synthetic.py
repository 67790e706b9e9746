"""A small synthetic shop for fast tests: popularity, categories, prices, tastes, time, shifts.

Each user prefers a few categories (their taste); item popularity follows a Zipf law; events
are spread over `days`. `shift_at` (a fraction of the time axis) lets tests plant a change:
after it, users' tastes move to other categories and `new_user_share` of events come from a
surge of new users (a pool of `new_user_share * n_users`, each with several events and a
taste of its own), so drift detection has a real signal and a retrain has something to learn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.data.ingest import Dataset
from recsys.schemas import (
    CATEGORY_COL,
    EVENT_COL,
    INTERACTION_COLUMNS,
    ITEM_COL,
    PRICE_COL,
    TITLE_COL,
    TS_COL,
    USER_COL,
    WEIGHT_COL,
)


def make_synthetic(
    n_users: int = 300,
    n_items: int = 200,
    n_categories: int = 8,
    events_per_user: int = 30,
    days: int = 120,
    taste_strength: float = 0.95,
    shift_at: float | None = None,
    new_user_share: float = 0.0,
    start: str = "2024-01-01",
    seed: int = 0,
) -> Dataset:
    """Generate a shop whose users buy mostly within their favourite categories."""
    rng = np.random.default_rng(seed)
    item_cat = rng.integers(0, n_categories, n_items)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity = popularity[rng.permutation(n_items)]
    tastes = np.stack([rng.choice(n_categories, 2, replace=False) for _ in range(n_users)])
    shifted = (tastes + n_categories // 2) % n_categories

    n_new = int(round(n_users * new_user_share))
    new_tastes = np.stack([rng.choice(n_categories, 2, replace=False) for _ in range(n_new)]) if n_new else tastes[:0]
    t0 = pd.Timestamp(start)
    span = pd.Timedelta(days=days)
    rows: list[tuple[str, str, pd.Timestamp]] = []
    for user in range(n_users):
        times = np.sort(rng.uniform(0, 1, events_per_user))
        for t in times:
            after_shift = shift_at is not None and t >= shift_at
            uid, taste = user, shifted[user] if after_shift else tastes[user]
            if after_shift and n_new and rng.random() < new_user_share:
                newcomer = int(rng.integers(n_new))
                uid, taste = n_users + newcomer, new_tastes[newcomer]
            in_taste = np.isin(item_cat, taste)
            weights = popularity * np.where(in_taste, taste_strength, 1 - taste_strength)
            item = rng.choice(n_items, p=weights / weights.sum())
            rows.append((f"u{uid}", f"i{item}", t0 + span * float(t)))

    interactions = pd.DataFrame(rows, columns=[USER_COL, ITEM_COL, TS_COL])
    interactions[TS_COL] = interactions[TS_COL].dt.floor("s").astype("datetime64[ns]")
    interactions = interactions.drop_duplicates([USER_COL, ITEM_COL, TS_COL])
    interactions[EVENT_COL] = "purchase"
    interactions[WEIGHT_COL] = rng.integers(1, 6, len(interactions)).astype("float64")
    items = pd.DataFrame(
        {
            ITEM_COL: [f"i{i}" for i in range(n_items)],
            TITLE_COL: [f"item {i} of category {c}" for i, c in enumerate(item_cat)],
            CATEGORY_COL: [f"c{c}" for c in item_cat],
            PRICE_COL: np.round(rng.lognormal(1.0, 0.6, n_items), 2),
        }
    )
    interactions = interactions[INTERACTION_COLUMNS].sort_values([TS_COL, USER_COL]).reset_index(drop=True)
    return Dataset("synthetic", interactions, items)
