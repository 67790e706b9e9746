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


@dataclass
class Sequences:
    """Every user's training events in time order, flat: user k's are rows starts[k]:ends[k].

    Days stay float64: float32 has ~1.5 min of resolution at today's ~20,000 days since 1970,
    which would move log1p(age) of recent events by ~1e-3; float64 ages match to the bit.
    Positions are int32 (TensorFlow gathers them ~30% faster than int64): up to 2^31 events.
    """

    items: np.ndarray  # int32 (events,): vocabulary item + 1
    days: np.ndarray  # float64 (events,): event time in days since 1970
    starts: np.ndarray  # int32 (users,)
    ends: np.ndarray  # int32 (users,)


def sequences(train: pd.DataFrame, users: np.ndarray, item_ids: np.ndarray) -> Sequences:
    """Each known user's events on known items, sorted by (user, time): memory grows with events only."""
    df = _ordered(train, users, item_ids)
    if len(df) >= 2**31:
        raise ValueError(f"{len(df)} events: int32 positions hold at most 2^31 - 1")
    counts = np.bincount(df["u"].to_numpy(), minlength=len(users))
    ends = np.cumsum(counts).astype(np.int32)
    return Sequences(df["i"].to_numpy().astype(np.int32), df["t"].to_numpy(), ends - counts.astype(np.int32), ends)


@dataclass
class Examples:
    """Training examples as cut points into `Sequences`, not windows: a few ints per example.

    Example k predicts `item[k]` for `user[k]` from that user's events before row `end[k]`
    (exclusive); its history window is cut when it is read (`windows`, or the model's input
    pipeline), so memory grows with examples, not with examples x history length.
    """

    user: np.ndarray  # int32 (examples,)
    end: np.ndarray  # int32 (examples,)
    item: np.ndarray  # int32 (examples,)

    def take(self, rows: np.ndarray) -> Examples:
        """These examples, in the order of `rows`."""
        return Examples(self.user[rows], self.end[rows], self.item[rows])


def examples(seqs: Sequences, new_items_only: bool, horizon: float = 0.0, seed: int = 0) -> Examples:
    """One example per event with at least one earlier event of its user: (user, events before end) -> item.

    With `new_items_only`, targets are limited to a user's first interaction with an item, the
    same task as the evaluation protocol (which never recommends seen items). `horizon` > 0
    cuts each example's history a random number of events (up to that share of the user's
    events) before its target: the model then learns to predict items further ahead than the
    next one, which is what the protocol asks (the user's last 20%, after a 10% validation
    gap).
    """
    counts = seqs.ends - seqs.starts
    u = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    rows = np.arange(len(u), dtype=np.int32)
    starts = seqs.starts[u]
    keep = rows > starts
    if new_items_only:
        keep &= ~pd.DataFrame({"u": u, "i": seqs.items}).duplicated().to_numpy()
    rows = rows[keep]
    span = np.ceil(horizon * counts[u[rows]]).astype(np.int32)
    skip = np.floor(np.random.default_rng(seed).random(len(rows)) * np.maximum(span, 1)).astype(np.int32)
    ends = np.maximum(rows - skip, starts[rows] + 1)  # at least one history event
    return Examples(u[rows], ends, seqs.items[rows])


def windows(seqs: Sequences, users: np.ndarray, ends: np.ndarray, length: int, aged: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The `length` events of each user before its end (exclusive); ages of the last `aged` (default all).

    Ages are log1p(days) counted from the window's own last event, exactly as at inference,
    where a user's window ends at their last known event.
    """
    idx = ends[:, None] - np.arange(length, 0, -1)[None, :]
    valid = idx >= seqs.starts[users][:, None]
    safe = np.clip(idx, 0, None)
    hist = np.where(valid, seqs.items[safe], 0).astype(np.int32)
    recent, valid = safe[:, -(aged or length) :], valid[:, -(aged or length) :]
    now = seqs.days[np.maximum(ends - 1, 0)] if len(seqs.days) else np.zeros(len(ends))
    ages = np.where(valid, np.log1p(np.maximum(now[:, None] - seqs.days[recent], 0.0)), 0.0).astype(np.float32)
    return hist, ages


def example_batch(seqs: Sequences, ex: Examples, q: np.ndarray, length: int, aged: int | None) -> dict[str, np.ndarray]:
    """The model's inputs for examples `ex`: their windows cut, and each target's share `q` of all targets."""
    hist, ages = windows(seqs, ex.user, ex.end, length, aged)
    return {"user": ex.user, "history": hist, "ages": ages, "item": ex.item, "q": q[ex.item]}


def training_examples(
    train: pd.DataFrame,
    users: np.ndarray,
    item_ids: np.ndarray,
    length: int,
    new_items_only: bool,
    horizon: float = 0.0,
    seed: int = 0,
    aged: int | None = None,
) -> dict[str, np.ndarray]:
    """`examples` with their windows materialised: (user, history, ages) -> item, one row each.

    Histories hold the `length` events before the cut; ages cover the last `aged` of them
    (all by default): the sequence encoder reads those, the rest only feeds a bag of items.
    examples x length ints: the reference the model's input pipeline is tested against, too
    large to train from at scale (the pipeline cuts the same windows batch by batch).
    """
    seqs = sequences(train, users, item_ids)
    ex = examples(seqs, new_items_only, horizon, seed)
    hist, ages = windows(seqs, ex.user, ex.end, length, aged)
    return {"user": ex.user, "history": hist, "ages": ages, "item": ex.item}


def user_histories(seqs: Sequences, length: int, aged: int | None = None) -> dict[str, np.ndarray]:
    """Every user's last `length` training events, the last `aged` aged relative to the user's last event."""
    users = np.arange(len(seqs.ends), dtype=np.int32)
    hist, ages = windows(seqs, users, seqs.ends, length, aged)
    return {"user": users, "history": hist, "ages": ages}
