"""TwoStageModel: retrievers propose, a learned ranker orders; fit without leakage, export as scores.

`fit(train)` cuts each user's latest events of `train` off as labels (`label_split`), fits the
retrievers on the history before them and trains the ranker on those candidates; then it refits
the retrievers on all of `train` and lets the trained ranker order their candidates. Under the
standard protocol `train` is train + validation, so the ranker learns from retrievers fit on
train with labels from validation, and the test is ranked from retrievers refit on both.

The export is the EmbeddingModel every family ends in, as a score table: a user's vector holds
a score per item (candidates in the ranker's order, in (1, 2]; every other item its popularity
percentile, in [0, 1]) and the item vectors are the identity. Evaluation and the registry take
it as they are; its size is users × items, like EASE's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.models.base import EmbeddingModel, FittedModel
from recsys.models.two_stage import ranker
from recsys.models.two_stage.candidates import Candidates, candidates
from recsys.models.two_stage.features import features
from recsys.models.two_stage.snapshot import Snapshot, label_split
from recsys.schemas import ITEM_COL, USER_COL

DEFAULT_RETRIEVERS = {"ease": {"l2": 300.0}, "item_knn": {"neighbours": 100, "shrink": 10.0}, "ials": {"factors": 64, "iterations": 15}}


@dataclass(frozen=True)
class Examples:
    """The ranker's training lists: users, their candidates, features and labels (1, 0, pad -1)."""

    snapshot: Snapshot
    users: np.ndarray
    candidates: Candidates
    features: np.ndarray
    labels: np.ndarray


def ranker_examples(train: pd.DataFrame, items: pd.DataFrame, params: dict) -> Examples:
    """Candidates and features from the history before each user's label period, labels from it.

    Only the users who took at least one of their candidates in the label period are kept: a
    list without a positive teaches a pairwise loss nothing.
    """
    history, labels = label_split(train, float(params["label_frac"]))
    snap = build_snapshot(history, items, params)
    users = np.array(sorted(snap.base.user_index[u] for u in labels[USER_COL].unique() if u in snap.base.user_index), dtype=np.int64)
    cands = candidates(snap, users, int(params["candidates"]))
    taken = labels.assign(u=labels[USER_COL].map(snap.base.user_index), i=labels[ITEM_COL].map(snap.base.item_index)).dropna(subset=["u", "i"])
    positives = set(zip(taken["u"].astype(int), taken["i"].astype(int)))
    y = np.array([[float((u, i) in positives) for i in row] for u, row in zip(users.tolist(), cands.items.tolist())], dtype=np.float32)
    y[~cands.valid] = ranker.PAD_LABEL
    keep = (y == 1.0).any(axis=1)
    kept = Candidates(cands.items[keep], cands.scores[keep], cands.ranks[keep])
    return Examples(snap, users[keep], kept, features(snap, users[keep], kept), y[keep])


def build_snapshot(history: pd.DataFrame, items: pd.DataFrame, params: dict) -> Snapshot:
    """The snapshot with this model's retriever settings (each retriever's defaults, then params)."""
    retrievers = {name: {**DEFAULT_RETRIEVERS.get(name, {}), **params["retrievers"].get(name, {})} for name in DEFAULT_RETRIEVERS}
    retrievers["ials"] = {**retrievers["ials"], "seed": int(params["seed"])}
    return Snapshot.build(history, items, retrievers, float(params["trend_days"]), int(params["recent"]))


class TwoStageModel(FittedModel):
    """Union of the fast retrievers' top `candidates`, reordered by a keras-rs ranker."""

    family = "two_stage"

    def __init__(
        self,
        candidates: int = 50,
        retrievers: dict[str, dict] | None = None,
        trend_days: float = 14.0,
        recent: int = 5,
        label_frac: float = 0.2,
        cross_layers: int = 2,
        hidden: int = 32,
        ranker_epochs: int = 20,
        batch_lists: int = 32,
        learning_rate: float = 0.003,
        seed: int = 42,
    ) -> None:
        self.params = {
            "candidates": candidates,
            "retrievers": retrievers or {},
            "trend_days": trend_days,
            "recent": recent,
            "label_frac": label_frac,
            "cross_layers": cross_layers,
            "hidden": hidden,
            "ranker_epochs": ranker_epochs,
            "batch_lists": batch_lists,
            "learning_rate": learning_rate,
            "seed": seed,
        }
        self.keras_model = None
        self.served: Candidates | None = None  # the serving candidates, for candidate recall
        self.snapshot: Snapshot | None = None  # what the service ranks from (recsys.models.two_stage.served)

    def fit(self, train: pd.DataFrame, items: pd.DataFrame, val: pd.DataFrame | None = None) -> TwoStageModel:
        """Train the ranker on the label period of `train`, then rank from retrievers refit on all of it.

        `val` is not used: the labels come from `train` itself, so scoring `val` afterwards
        (as tuning does) stays a fair test.
        """
        examples = ranker_examples(train, items, self.params)
        self.keras_model = ranker.train(examples.features, examples.labels, self.params)
        self.snapshot = snap = build_snapshot(train, items, self.params)
        users = np.arange(len(snap.base.user_ids))
        self.served = candidates(snap, users, int(self.params["candidates"]))
        scores = ranker.score(ranker.weights(self.keras_model), features(snap, users, self.served))
        self._model = score_table(snap.base, self.served, scores, {"family": self.family, **self.params})
        return self

    def candidate_recall(self, test: pd.DataFrame) -> float:
        """Mean, over the test users the model knows, of the share of their test items among their candidates.

        The ranker only reorders candidates: this is the ceiling of its recall.
        """
        model, served = self.export(), self.served
        pairs = test.assign(u=test[USER_COL].map(model.user_index), i=test[ITEM_COL].map(model.item_index)).dropna(subset=["u"])
        pairs = pairs.drop_duplicates(["u", ITEM_COL])
        if pairs.empty:
            return 0.0
        u, i = pairs["u"].to_numpy(dtype=np.int64), pairs["i"].fillna(-1).to_numpy(dtype=np.int64)
        found = ((served.items[u] == i[:, None]) & (i[:, None] >= 0)).any(axis=1)
        return float(pd.Series(found, dtype=float).groupby(u).mean().mean())


def score_table(base: EmbeddingModel, cands: Candidates, scores: np.ndarray, meta: dict) -> EmbeddingModel:
    """The ranked candidates as an EmbeddingModel: scores per user over items, identity item vectors."""
    table = np.broadcast_to(base.popularity_percentile, (len(base.user_ids), base.n_items)).astype(np.float32)
    order = np.argsort(-np.where(cands.valid, scores, -np.inf), axis=1, kind="stable")
    ranked = np.take_along_axis(cands.items, order, axis=1)
    width = max(ranked.shape[1], 1)
    rows = np.broadcast_to(np.arange(len(ranked))[:, None], ranked.shape)
    valid = ranked >= 0
    table[rows[valid], ranked[valid]] = (2.0 - np.broadcast_to(np.arange(ranked.shape[1]), ranked.shape) / width)[valid]
    return EmbeddingModel(
        base.user_ids,
        base.item_ids,
        table,
        np.eye(base.n_items, dtype=np.float32),
        base.popularity,
        base.seen_indptr,
        base.seen_indices,
        meta=meta,
    )
