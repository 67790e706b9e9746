"""A synthetic shop of any size, written month by month into a dataset store (recsys.data.store).

The shape real shop logs have, vectorised with numpy so 20M events take about a minute:
power-law item popularity and user activity, sessions (a few events minutes apart, mostly in
one category of the user's taste), repeat purchases of the item just bought, and new items
released over time (half the catalogue at the start, the rest spread over the months). Only one
month is in memory at a time, so generating grows the disk, not the memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data import store
from recsys.schemas import CATEGORY_COL, EVENT_COL, INTERACTION_COLUMNS, ITEM_COL, PRICE_COL, TITLE_COL, TS_COL, USER_COL, WEIGHT_COL

EVENTS_PER_USER = 20
EVENTS_PER_ITEM = 200
CATEGORIES = 50
MEAN_SESSION = 4.0  # events per session
REPEAT_SHARE = 0.1  # events that buy again the item the user just bought
OFF_TASTE_SHARE = 0.2  # events drawn from the whole catalogue's popularity, not the session's category


def write_synthetic_store(root: Path, n: int, months: int = 24, start: str = "2023-01-01", seed: int = 0) -> store.Snapshot:
    """About `n` interactions over `months` months into the store at `root`; its snapshot."""
    rng = np.random.default_rng(seed)
    n_users, n_items = max(n // EVENTS_PER_USER, 20), max(n // EVENTS_PER_ITEM, 100)
    item_cat = rng.integers(0, CATEGORIES, n_items)
    item_weight = 1.0 / rng.permutation(np.arange(1, n_items + 1)) ** 0.9
    released = np.where(rng.random(n_items) < 0.5, 0, rng.integers(0, months, n_items))
    user_weight = 1.0 / np.arange(1, n_users + 1) ** 0.5
    user_weight /= user_weight.sum()
    tastes = rng.integers(0, CATEGORIES, (n_users, 2))
    store.write_items(root, _catalogue(item_cat, rng))
    first = pd.Timestamp(start)
    for month in range(months):
        begin, end = first + pd.DateOffset(months=month), first + pd.DateOffset(months=month + 1)
        size = n // months + (1 if month < n % months else 0)
        frame = _month(rng, size, begin, end, user_weight, tastes, item_cat, item_weight * (released <= month))
        store.append(root, frame)
    return store.snapshot(root)


def _month(
    rng: np.random.Generator,
    size: int,
    begin: pd.Timestamp,
    end: pd.Timestamp,
    user_weight: np.ndarray,
    tastes: np.ndarray,
    item_cat: np.ndarray,
    item_weight: np.ndarray,
) -> pd.DataFrame:
    """One month of sessions: `size` events (a few fewer after dropping same-second duplicates)."""
    n_sessions = max(int(1.05 * size / MEAN_SESSION), 1)  # a few more than needed, cut at `size`
    lengths = rng.geometric(1.0 / MEAN_SESSION, n_sessions)
    session = np.repeat(np.arange(n_sessions), lengths)[:size]
    users = rng.choice(len(user_weight), n_sessions, p=user_weight)
    seconds = (end - begin).total_seconds()
    session_start = rng.uniform(0, seconds - 3600, n_sessions)
    category = tastes[users, rng.integers(0, 2, n_sessions)]
    offset = np.arange(len(session)) - np.searchsorted(session, session)  # position in the session
    gap = rng.exponential(90.0, len(session))  # seconds between a session's events
    elapsed = np.cumsum(gap)
    steps = elapsed - (elapsed - gap)[offset == 0][session]  # seconds since the session's first event
    times = np.minimum(session_start[session] + steps, seconds - 1).astype("int64")
    items = _draw(rng, category[session], item_cat, item_weight)
    off_taste = rng.random(len(session)) < OFF_TASTE_SHARE
    items[off_taste] = rng.choice(len(item_weight), int(off_taste.sum()), p=item_weight / item_weight.sum())
    repeat = (offset > 0) & (rng.random(len(session)) < REPEAT_SHARE)
    items[repeat] = items[np.flatnonzero(repeat) - 1]
    frame = pd.DataFrame(
        {
            USER_COL: pd.array(np.char.add("u", users[session].astype(str)), dtype="string[pyarrow]"),
            ITEM_COL: pd.array(np.char.add("i", items.astype(str)), dtype="string[pyarrow]"),
            TS_COL: (begin.to_datetime64().astype("datetime64[s]") + times.astype("timedelta64[s]")).astype("datetime64[ns]"),
            EVENT_COL: pd.array(np.full(len(session), "purchase"), dtype="string[pyarrow]"),
            WEIGHT_COL: rng.geometric(0.5, len(session)).astype("float64"),
        }
    )
    return frame.drop_duplicates([USER_COL, ITEM_COL, TS_COL])[INTERACTION_COLUMNS]


def _draw(rng: np.random.Generator, categories: np.ndarray, item_cat: np.ndarray, item_weight: np.ndarray) -> np.ndarray:
    """One item per event from its category, by popularity: one searchsorted over per-category CDFs."""
    order = np.argsort(item_cat, kind="stable")
    cumulative = np.cumsum(item_weight[order])
    bounds = np.searchsorted(item_cat[order], np.arange(CATEGORIES + 1))
    low = np.where(bounds[:-1] > 0, cumulative[np.maximum(bounds[:-1] - 1, 0)], 0.0)
    high = np.where(bounds[1:] > 0, cumulative[np.maximum(bounds[1:] - 1, 0)], 0.0)
    empty = high[categories] <= low[categories]  # a category with no released item yet: any item
    target = low[categories] + rng.random(len(categories)) * (high[categories] - low[categories])
    target[empty] = rng.random(int(empty.sum())) * cumulative[-1]
    return order[np.minimum(np.searchsorted(cumulative, target, side="right"), len(order) - 1)]


def _catalogue(item_cat: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    ids = np.char.add("i", np.arange(len(item_cat)).astype(str))
    return pd.DataFrame(
        {
            ITEM_COL: pd.array(ids, dtype="string[pyarrow]"),
            TITLE_COL: pd.array(
                np.char.add(np.char.add("item ", np.arange(len(item_cat)).astype(str)), np.char.add(" of category ", item_cat.astype(str))),
                dtype="string[pyarrow]",
            ),
            CATEGORY_COL: pd.array(np.char.add("c", item_cat.astype(str)), dtype="string[pyarrow]"),
            PRICE_COL: np.round(rng.lognormal(1.0, 0.6, len(item_cat)), 2),
        }
    )
