"""Inputs of the sequence-aware two-tower: user histories and item content, as int/float arrays.

Item index 0 is padding, so vocabulary item `j` is `j + 1` here. Histories are right-aligned
(the most recent item last); their most recent items come with each item's age, in days,
counted from the history's last event (the user's last known event at inference): recency
is what separates a sequence model from a bag of items.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.schemas import CATEGORY_COL, ITEM_COL, PRICE_COL, TITLE_COL, TS_COL, USER_COL

_WORD = re.compile(r"[a-z]{2,}")
_YEAR = re.compile(r"\((\d{3})(\d)\)")  # "(1995)" in a title: a film's release year


def title_tokens(title: object) -> list[str]:
    """Year and decade of a "(1995)" in the title, then its words: the catalogue's own dating."""
    if not isinstance(title, str):
        return []
    years = [t for decade, unit in _YEAR.findall(title) for t in (decade + unit, decade + "0s")]
    return years + _WORD.findall(title.lower())


@dataclass
class ItemContent:
    """Per-item content features, row j+1 for vocabulary item j (row 0 is padding)."""

    tokens: np.ndarray  # int32 (n+1, max_tokens): title word ids, 0 = none
    category: np.ndarray  # int32 (n+1,)
    price_bucket: np.ndarray  # int32 (n+1,): 0 = unknown price
    has_id: np.ndarray  # float32 (n+1,): 1 if the item was trained on (its id embedding is learnt)
    n_tokens: int
    n_categories: int
    n_price_buckets: int


def item_content(items: pd.DataFrame, item_ids: np.ndarray, trained: set[str], max_tokens: int = 8, buckets: int = 10) -> ItemContent:
    """Title tokens seen at least twice, category ids and price deciles for every vocabulary item."""
    table = items.drop_duplicates(ITEM_COL).set_index(ITEM_COL).reindex(item_ids)
    words = [title_tokens(t)[:max_tokens] for t in table[TITLE_COL]]
    counts = pd.Series([w for ws in words for w in set(ws)]).value_counts()
    vocab = {w: k + 1 for k, w in enumerate(counts[counts >= 2].index)}
    tokens = np.zeros((len(item_ids) + 1, max_tokens), dtype=np.int32)
    for row, ws in enumerate(words, start=1):
        ids = [vocab[w] for w in ws if w in vocab]
        tokens[row, : len(ids)] = ids
    category = np.concatenate([[0], pd.Categorical(table[CATEGORY_COL].fillna("?")).codes + 1]).astype(np.int32)
    price = table[PRICE_COL].astype(float)
    ranked = price.rank(pct=True).to_numpy()
    bucket = np.where(np.isnan(ranked), 0, np.minimum((np.nan_to_num(ranked) * buckets).astype(int), buckets - 1) + 1)
    has_id = np.concatenate([[0.0], np.isin(item_ids, list(trained)).astype(np.float32)]).astype(np.float32)
    return ItemContent(tokens, category, np.concatenate([[0], bucket]).astype(np.int32), has_id, len(vocab) + 1, int(category.max()) + 1, buckets + 1)


def _ordered(train: pd.DataFrame, users: np.ndarray, item_ids: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "u": pd.Categorical(train[USER_COL], categories=users).codes,
            "i": pd.Categorical(train[ITEM_COL], categories=item_ids).codes + 1,
            "t": train[TS_COL].to_numpy().astype("datetime64[s]").astype(np.int64) / 86400.0,
        }
    )
    return df[(df["u"] >= 0) & (df["i"] > 0)].sort_values(["u", "t"], kind="stable").reset_index(drop=True)


def _windows(
    items: np.ndarray, days: np.ndarray, starts: np.ndarray, ends: np.ndarray, now: np.ndarray, length: int, aged: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """The `length` events before each end (exclusive), not before its start; ages of the last `aged` (default all), relative to `now`."""
    idx = ends[:, None] - np.arange(length, 0, -1)[None, :]
    valid = idx >= starts[:, None]
    safe = np.clip(idx, 0, None)
    hist = np.where(valid, items[safe], 0).astype(np.int32)
    recent, valid = safe[:, -(aged or length) :], valid[:, -(aged or length) :]
    ages = np.where(valid, np.log1p(np.maximum(now[:, None] - days[recent], 0.0)), 0.0).astype(np.float32)
    return hist, ages


def training_examples(
    train: pd.DataFrame, users: np.ndarray, item_ids: np.ndarray, length: int, new_items_only: bool,
    horizon: float = 0.0, seed: int = 0, aged: int | None = None,
) -> dict[str, np.ndarray]:
    """One example per event with at least one earlier event: (user, history, ages) -> item.

    Histories hold the `length` events before the cut; ages cover the last `aged` of them
    (all by default): the sequence encoder reads those, the rest only feeds a bag of items.

    With `new_items_only`, targets are limited to a user's first interaction with an item, the
    same task as the evaluation protocol (which never recommends seen items). `horizon` > 0
    cuts each example's history a random number of events (up to that share of the user's
    events) before its target: the model then learns to predict items further ahead than the
    next one, which is what the protocol asks (the user's last 20%, after a 10% validation
    gap). Ages are measured from the history's own last event, exactly as at inference.
    """
    df = _ordered(train, users, item_ids)
    u, i, t = df["u"].to_numpy(), df["i"].to_numpy(), df["t"].to_numpy()
    rows = np.arange(len(df))
    starts = rows - df.groupby("u").cumcount().to_numpy()
    keep = rows > starts
    if new_items_only:
        keep &= df.groupby(["u", "i"]).cumcount().to_numpy() == 0
    rows = rows[keep]
    span = np.ceil(horizon * df.groupby("u")["u"].transform("size").to_numpy()[rows]).astype(np.int64)
    skip = np.floor(np.random.default_rng(seed).random(len(rows)) * np.maximum(span, 1)).astype(np.int64)
    ends = np.maximum(rows - skip, starts[rows] + 1)  # at least one history event
    hist, ages = _windows(i, t, starts[rows], ends, t[ends - 1], length, aged)
    return {"user": u[rows].astype(np.int32), "history": hist, "ages": ages, "item": i[rows].astype(np.int32)}


def user_histories(train: pd.DataFrame, users: np.ndarray, item_ids: np.ndarray, length: int, aged: int | None = None) -> dict[str, np.ndarray]:
    """Every user's last `length` training events, the last `aged` aged relative to the user's last event."""
    df = _ordered(train, users, item_ids)
    counts = np.bincount(df["u"].to_numpy(), minlength=len(users))
    ends = np.cumsum(counts)
    starts = ends - counts
    t = df["t"].to_numpy()
    now = t[np.maximum(ends - 1, 0)] if len(t) else np.zeros(len(users))
    hist, ages = _windows(df["i"].to_numpy(), t, starts, ends, now, length, aged)
    return {"user": np.arange(len(users), dtype=np.int32), "history": hist, "ages": ages}
