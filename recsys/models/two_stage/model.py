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
from recsys.models.two_stage import ranker, reuse
from recsys.models.two_stage.candidates import Candidates, candidates
from recsys.models.two_stage.features import features
from recsys.models.two_stage.importance import GROUPS, Importance, permutation_importance
from recsys.models.two_stage.snapshot import OPTIONAL, RETRIEVERS, Snapshot, label_split
from recsys.schemas import ITEM_COL, USER_COL

DEFAULT_RETRIEVERS = {"ease": {"l2": 300.0}, "item_knn": {"neighbours": 100, "shrink": 10.0}, "ials": {"factors": 64, "iterations": 15}}


@dataclass(frozen=True)
class Examples:
    """Labelled candidate lists (the ranker's training lists, or held-out ones): users, candidates, features, labels (1, 0, pad -1)."""

    snapshot: Snapshot
    users: np.ndarray
    candidates: Candidates
    features: np.ndarray
    labels: np.ndarray


def ranker_examples(train: pd.DataFrame, items: pd.DataFrame, params: dict) -> Examples:
    """Candidates and features from the history before each user's label period, labels from it."""
    history, labels = label_split(train, float(params["label_frac"]))
    snap = build_snapshot(history, items, params)
    n = int(params["candidates"])
    return reuse.kept(lambda: ("lists", id(snap), reuse.fingerprint(labels), n), lambda: labelled_lists(snap, labels, n))


def labelled_lists(snap: Snapshot, labels: pd.DataFrame, n: int) -> Examples:
    """Each known user's candidates from `snap`, labelled 1 where they took it in `labels`.

    Only the users who took at least one of their candidates are kept: a list without a
    positive teaches a pairwise loss nothing, and scores 0 however it is ordered.
    """
    users = np.array(sorted(snap.base.user_index[u] for u in labels[USER_COL].unique() if u in snap.base.user_index), dtype=np.int64)
    cands = candidates(snap, users, n)
    taken = labels.assign(u=labels[USER_COL].map(snap.base.user_index), i=labels[ITEM_COL].map(snap.base.item_index)).dropna(subset=["u", "i"])
    positives = set(zip(taken["u"].astype(int), taken["i"].astype(int)))
    y = np.array([[float((u, i) in positives) for i in row] for u, row in zip(users.tolist(), cands.items.tolist())], dtype=np.float32)
    y[~cands.valid] = ranker.PAD_LABEL
    keep = (y == 1.0).any(axis=1)
    kept = Candidates(cands.items[keep], cands.scores[keep], cands.ranks[keep])
    return Examples(snap, users[keep], kept, features(snap, users[keep], kept), y[keep])


def retriever_params(params: dict) -> dict[str, dict]:
    """Each learned retriever's settings: its defaults, then params (which add an optional one by naming it,
    e.g. `seq_two_tower`); iALS and the sequence model take the model's seed unless they name one."""
    names = [*DEFAULT_RETRIEVERS, *(name for name in OPTIONAL if name in params["retrievers"])]
    retrievers = {name: {**DEFAULT_RETRIEVERS.get(name, {}), **params["retrievers"].get(name, {})} for name in names}
    for seeded in {"ials", "seq_two_tower"} & set(retrievers):
        retrievers[seeded] = {"seed": int(params["seed"]), **retrievers[seeded]}
    return retrievers


def build_snapshot(history: pd.DataFrame, items: pd.DataFrame, params: dict) -> Snapshot:
    """The snapshot with this model's retriever settings (`retriever_params`); made once per window inside `reuse.reusing()`."""
    retrievers, trend_days, recent = retriever_params(params), float(params["trend_days"]), int(params["recent"])
    return reuse.kept(
        lambda: ("snapshot", reuse.fingerprint(history), reuse.fingerprint(items), reuse.settings_key(retrievers), trend_days, recent),
        lambda: Snapshot.build(history, items, retrievers, trend_days, recent),
    )


@dataclass(frozen=True)
class Retriever:
    """One retriever of the served fit: the family it is an instance of, its settings and its export.

    The export lets a retriever be scored alone, by the protocol the whole model is scored
    by, which is what shows what the ranker adds over each.
    """

    family: str
    params: dict
    model: EmbeddingModel


class TwoStageModel(FittedModel):
    """Union of the retrievers' top `candidates`, reordered by a keras-rs ranker.

    The fast retrievers always; the sequence two-tower too when `retrievers` names it (with its
    settings), at the price of two deep fits per fit: one per window, as for every retriever.
    """

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
        train_list: int = 128,
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
            "train_list": train_list,
            "learning_rate": learning_rate,
            "seed": seed,
        }
        self.keras_model = None
        self.snapshot: Snapshot | None = None  # fit on all of train: what the service ranks from (two_stage.served)
        self.served: Candidates | None = None  # the serving candidates, for candidate recall

    def fit(self, train: pd.DataFrame, items: pd.DataFrame, val: pd.DataFrame | None = None) -> TwoStageModel:
        """Train the ranker on the label period of `train`, then rank from retrievers refit on all of it.

        `val` is not used: the labels come from `train` itself, so scoring `val` afterwards
        (as tuning does) stays a fair test.
        """
        examples = ranker_examples(train, items, self.params)
        self.keras_model = ranker.train(examples.features, examples.labels, self.params)
        self.snapshot = snap = build_snapshot(train, items, self.params)
        self.served, served_features = reuse.kept(lambda: ("served", id(snap), int(self.params["candidates"])), lambda: self._served(snap))
        scores = ranker.score(ranker.weights(self.keras_model), served_features)
        self._model = score_table(snap.base, self.served, scores, {"family": self.family, **self.params})
        return self

    def _served(self, snap: Snapshot) -> tuple[Candidates, np.ndarray]:
        """Every known user's candidates from the snapshot of all of train, and their features."""
        users = np.arange(len(snap.base.user_ids))
        cands = candidates(snap, users, int(self.params["candidates"]))
        return cands, features(snap, users, cands)

    @property
    def retrievers(self) -> dict[str, Retriever]:
        """The retrievers the fitted model serves from, by name: what each is, with which settings.

        The trend is a popularity model over the last `trend_days`; the others are their families.
        """
        if self.snapshot is None:
            raise RuntimeError("fit the model before asking for its retrievers")
        params = {**retriever_params(self.params), "popularity": {}, "trend": {"trend_days": self.params["trend_days"]}}
        return {name: Retriever("popularity" if name == "trend" else name, params[name], model) for name, model in self.snapshot.exports().items()}

    def feature_importance(self, labels: pd.DataFrame, measured_on: str, max_lists: int = 1000, repeats: int = 3) -> Importance:
        """Permutation importance of the ranker's feature groups on the served candidates of `labels`' users.

        Lists are the candidates the fitted model serves each user (at most `max_lists` users,
        a fixed sample), labelled by the items they took in `labels`: given the test period,
        a held-out measure. Costs `repeats` forward passes per feature group.
        """
        if self.snapshot is None:
            raise RuntimeError("fit the model before measuring its feature importance")
        rng = np.random.default_rng(int(self.params["seed"]))
        users = np.sort(labels[USER_COL].unique())
        chosen = labels[labels[USER_COL].isin(rng.choice(users, min(max_lists, len(users)), replace=False))]
        lists, weights = labelled_lists(self.snapshot, chosen, int(self.params["candidates"])), ranker.weights(self.keras_model)
        groups = {group: members for group, members in GROUPS.items() if group not in RETRIEVERS or group in self.snapshot.retrievers}
        return permutation_importance(
            lambda f: ranker.score(weights, f), lists.features, lists.labels, measured_on, groups, repeats=repeats, seed=int(self.params["seed"])
        )

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
