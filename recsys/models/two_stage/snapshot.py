"""What the ranker's features may know: the fast retrievers and statistics of the interactions before a cut-off.

The cut-off lives here and only here. `label_split` cuts each user's latest interactions off
as the label period, exactly as the test is cut from the data (`temporal_user_split`), and
`Snapshot.build` is the only function that reads interactions: every retriever, count and
timestamp a feature uses comes from the frame it is given. Building it from the history
before the labels is what keeps the ranker's training examples free of leakage; building it
from all of train is how the fitted model serves (the same rule with the production window).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.models.base import EmbeddingModel
from recsys.schemas import CATEGORY_COL, ITEM_COL, PRICE_COL, TS_COL, USER_COL

#: The retrievers, in feature order: three learned from co-occurrence, the sequence model, two counts.
RETRIEVERS = ("ease", "item_knn", "ials", "seq_two_tower", "popularity", "trend")
MODELS = ("ease", "item_knn", "ials", "seq_two_tower", "popularity")  # the exports a snapshot may hold
#: Fit only when the model's settings name them (a deep fit per window: minutes on CPU); absent, they propose nothing.
OPTIONAL = ("seq_two_tower",)
COUNTS = ("popularity", "trend")  # they propose only what they counted: a zero trend is no trend
ITEM_ARRAYS = ("trend", "days_since_seen", "item_category", "item_log_price")
USER_ARRAYS = ("history_len", "days_since_active", "recent", "category_share", "user_log_price")  # one row per user
NEVER_DAYS = 10_000.0  # days since an item was last seen, for an item nobody interacted with
DAY = pd.Timedelta(days=1)


def label_split(train: pd.DataFrame, label_frac: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """History and label period: each user's last `label_frac` of events, cut as the test is cut.

    The ranker learns in the conditions it is scored in: the protocol holds back each user's
    latest events as test, so the labels are each user's latest events of train.
    """
    from recsys.data.split import temporal_user_split  # training's: the service loads snapshots without recsys.data

    cut = temporal_user_split(train, test_frac=label_frac)
    return cut.train_val, cut.test


@dataclass(frozen=True)
class Snapshot:
    """The retrievers fit on `history` and its per-item and per-user statistics at `now`.

    Arrays are in the vocabulary order of the exported retrievers (`users`, `items`). Saved
    (npz + json, no pickles), it is what the service ranks from (recsys.models.two_stage.served).
    """

    now: pd.Timestamp  # one second after the last interaction of the history
    models: dict[str, EmbeddingModel]  # ease, item_knn, ials and popularity, fit on the history
    trend: np.ndarray  # interactions per item in the `trend_days` before `now`
    days_since_seen: np.ndarray  # per item: days from its last interaction to `now` (NEVER_DAYS if none)
    history_len: np.ndarray  # per user: interactions in the history
    days_since_active: np.ndarray  # per user: days from their last interaction to `now`
    recent: np.ndarray  # (n_users, m) the user's last m distinct items, latest first, -1 padded
    item_category: np.ndarray  # per item: category code, -1 unknown
    category_share: np.ndarray  # (n_users, n_categories): share of the user's history per category
    item_log_price: np.ndarray  # per item: log price, nan unknown
    user_log_price: np.ndarray  # per user: mean log price of their history (nan if none known)

    @property
    def base(self) -> EmbeddingModel:
        """The popularity export: vocabularies, counts and seen items every stage shares."""
        return self.models["popularity"]

    @property
    def retrievers(self) -> tuple[str, ...]:
        """The retrievers this snapshot holds, in RETRIEVERS order (an optional one only if it was fit)."""
        return tuple(name for name in RETRIEVERS if name not in OPTIONAL or name in self.models)

    @cached_property
    def trained_column(self) -> np.ndarray:
        """Per item: its column in the item-item retrievers, which span the trained items (those with a count) in order."""
        return np.cumsum(self.base.popularity > 0) - 1

    def exports(self) -> dict[str, EmbeddingModel]:
        """Every retriever as a whole EmbeddingModel, in RETRIEVERS order, so each can be scored alone.

        The item-item exports get back the binary history rows stage one does without (it
        scores users from their seen items), and the trend is the popularity export with the
        window's counts as item vectors: the best sellers of the last `trend_days`, for everyone.
        """
        trend = replace(self.base, item_vectors=(self.trend / max(self.trend.max(), 1.0))[:, None], meta={"family": "popularity"})
        whole = {name: self._with_history(model) for name, model in self.models.items()}
        return {name: trend if name == "trend" else whole[name] for name in self.retrievers}

    def _with_history(self, model: EmbeddingModel) -> EmbeddingModel:
        """An item-item export with its users' binary rows over the trained items restored (others as they are)."""
        if model.user_vectors.shape[1] > 0:
            return model
        base = self.base
        rows = np.zeros((len(base.user_ids), model.item_vectors.shape[1]), dtype=np.float32)
        users = np.repeat(np.arange(len(base.user_ids)), np.diff(base.seen_indptr))
        rows[users, self.trained_column[base.seen_indices]] = 1.0
        return replace(model, user_vectors=rows)

    @classmethod
    def build(cls, history: pd.DataFrame, items: pd.DataFrame, retrievers: dict[str, dict], trend_days: float, recent: int) -> Snapshot:
        """Fit the retrievers on `history` and count what the features need, as of its end."""
        # Imported here: the service loads snapshots, and the bento ships no scipy (what EASE and item-kNN fit with).
        from recsys.models.ease import EASEModel
        from recsys.models.ials import IALSModel
        from recsys.models.item_knn import ItemKNNModel
        from recsys.models.popularity import PopularityModel

        models = {
            "ease": _by_history(EASEModel(**retrievers.get("ease", {})).fit(history, items).export()),
            "item_knn": _by_history(ItemKNNModel(**retrievers.get("item_knn", {})).fit(history, items).export()),
            "ials": IALSModel(**retrievers.get("ials", {})).fit(history, items).export(),
            "popularity": PopularityModel().fit(history, items).export(),
        }
        if "seq_two_tower" in retrievers:
            from recsys.models.seq_two_tower import SeqTwoTowerModel

            models["seq_two_tower"] = SeqTwoTowerModel(**retrievers["seq_two_tower"]).fit(history, items).export()
        base = models["popularity"]
        now = history[TS_COL].max() + pd.Timedelta(seconds=1)
        item = history[ITEM_COL].map(base.item_index).to_numpy()
        user = history[USER_COL].map(base.user_index).to_numpy()
        recent_rows = (history[TS_COL] >= now - trend_days * DAY).to_numpy()
        last_seen = pd.Series(history[TS_COL].to_numpy()).groupby(item).max()
        days_since_seen = np.full(base.n_items, NEVER_DAYS, dtype=np.float32)
        days_since_seen[last_seen.index.to_numpy()] = ((now - last_seen) / DAY).to_numpy()
        last_active = pd.Series(history[TS_COL].to_numpy()).groupby(user).max().reindex(range(len(base.user_ids)))
        category, shares = _categories(items, base, user, item)
        log_price, user_log_price = _prices(items, base, user, item)
        return cls(
            now=now,
            models=models,
            trend=np.bincount(item[recent_rows], minlength=base.n_items).astype(np.float32),
            days_since_seen=days_since_seen,
            history_len=np.bincount(user, minlength=len(base.user_ids)).astype(np.float32),
            days_since_active=((now - last_active) / DAY).to_numpy().astype(np.float32),
            recent=_recent_items(history, user, item, len(base.user_ids), recent),
            item_category=category,
            category_share=shares,
            item_log_price=log_price,
            user_log_price=user_log_price,
        )

    def save(self, folder: Path) -> Path:
        """Each retriever's export in a folder of its own, the other arrays as .npz, `now` as JSON."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, model in self.models.items():
            model.save(folder / name)
        np.savez(folder / "snapshot.npz", **{name: getattr(self, name) for name in (*ITEM_ARRAYS, *USER_ARRAYS)})
        (folder / "snapshot.json").write_text(json.dumps({"now": self.now.isoformat()}))
        return folder

    @classmethod
    def load(cls, folder: Path) -> Snapshot:
        with np.load(folder / "snapshot.npz", allow_pickle=False) as arrays:
            fields = {name: arrays[name] for name in arrays.files}
        now = pd.Timestamp(json.loads((folder / "snapshot.json").read_text())["now"])
        models = {name: EmbeddingModel.load(folder / name) for name in MODELS if (folder / name).is_dir()}
        return cls(now=now, models=models, **fields)

    def without_users(self, user_ids: set[str]) -> Snapshot:
        """The same snapshot less every per-user row of `user_ids` (an erasure); item statistics stay until a retrain."""
        keep = ~np.isin(self.base.user_ids.astype(str), np.array(sorted(user_ids), dtype=str))
        models = {name: model.without_users(user_ids) for name, model in self.models.items()}
        return replace(self, models=models, **{name: getattr(self, name)[keep] for name in USER_ARRAYS})


def _by_history(model: EmbeddingModel) -> EmbeddingModel:
    """An item-item export as stage one uses it: its dense history rows (users x trained items) dropped,
    since users are scored from their seen items, and its matrix stored by trained item (Fortran
    order), so the rows a user's seen items select (`item_vectors.T[columns]`) are contiguous."""
    empty = np.zeros((len(model.user_ids), 0), dtype=np.float32)
    return EmbeddingModel(
        model.user_ids, model.item_ids, empty, np.asfortranarray(model.item_vectors), model.popularity, model.seen_indptr, model.seen_indices, model.meta
    )


def _recent_items(history: pd.DataFrame, user: np.ndarray, item: np.ndarray, n_users: int, m: int) -> np.ndarray:
    """Each user's last `m` distinct items, latest first (ties in time broken by row order)."""
    frame = pd.DataFrame({"u": user, "i": item, "t": history[TS_COL].to_numpy()})
    frame = frame.iloc[np.lexsort((-np.arange(len(frame)), -frame["t"].to_numpy().astype(np.int64), frame["u"].to_numpy()))]
    frame = frame.drop_duplicates(["u", "i"])
    frame["pos"] = frame.groupby("u").cumcount()
    frame = frame[frame["pos"] < m]
    out = np.full((n_users, m), -1, dtype=np.int64)
    out[frame["u"].to_numpy(), frame["pos"].to_numpy()] = frame["i"].to_numpy()
    return out


def _categories(items: pd.DataFrame, base: EmbeddingModel, user: np.ndarray, item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Item category codes and each user's share of history per category (one empty column if none)."""
    if CATEGORY_COL not in items.columns:
        return np.full(base.n_items, -1, dtype=np.int64), np.zeros((len(base.user_ids), 1), dtype=np.float32)
    named = items.drop_duplicates(ITEM_COL).set_index(ITEM_COL)[CATEGORY_COL].reindex(base.item_ids)
    codes, names = pd.factorize(named)  # unknown -> -1
    shares = np.zeros((len(base.user_ids), max(len(names), 1)), dtype=np.float32)
    known = codes[item] >= 0
    np.add.at(shares, (user[known], codes[item][known]), 1.0)
    shares /= np.maximum(shares.sum(axis=1, keepdims=True), 1.0)
    return codes.astype(np.int64), shares


def _prices(items: pd.DataFrame, base: EmbeddingModel, user: np.ndarray, item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log price per item and the mean log price of each user's history (nan where unknown)."""
    if PRICE_COL not in items.columns:
        return np.full(base.n_items, np.nan, dtype=np.float32), np.full(len(base.user_ids), np.nan, dtype=np.float32)
    price = items.drop_duplicates(ITEM_COL).set_index(ITEM_COL)[PRICE_COL].reindex(base.item_ids).to_numpy(dtype=np.float64)
    log_price = np.log(np.where(price > 0, price, np.nan)).astype(np.float32)
    per_event = pd.Series(log_price[item]).groupby(user).mean()
    return log_price, per_event.reindex(range(len(base.user_ids))).to_numpy().astype(np.float32)
