"""The one form every model is evaluated, registered and served in: user and item vectors.

A model's score for (user, item) is the dot product of their vectors. Popularity fits this
form too (user vector 1, item vector = popularity), so one recommend function, one saved
layout (npz + json, no pickles) and one evaluation protocol serve every model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from recsys.schemas import ITEM_COL, TITLE_COL, USER_COL

#: Families whose export's user vector is the binary history row over the trained items
#: (recsys.models.item_item): a user's scores are the sum of the item-item rows of their seen
#: items, which two-stage retrieval and the service compute instead of the dot product.
HISTORY_ROW_FAMILIES = ("ease", "item_knn")


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the `k` best along the last axis, best first (ties in index order)."""
    top = np.argpartition(-scores, k - 1, axis=-1)[..., :k]
    top_scores = np.take_along_axis(scores, top, axis=-1)
    order = np.argsort(-top_scores, axis=-1, kind="stable")
    return np.take_along_axis(top, order, axis=-1), np.take_along_axis(top_scores, order, axis=-1)


@dataclass
class EmbeddingModel:
    """User/item vocabularies and vectors, item popularity and each user's seen items."""

    user_ids: np.ndarray  # str, shape (n_users,)
    item_ids: np.ndarray  # str, shape (n_items,)
    user_vectors: np.ndarray  # float32, (n_users, d)
    item_vectors: np.ndarray  # float32, (n_items, d)
    popularity: np.ndarray  # float32, (n_items,): training interactions per item
    seen_indptr: np.ndarray  # CSR rows of seen item indices, one row per user
    seen_indices: np.ndarray
    meta: dict = field(default_factory=dict)
    item_titles: np.ndarray | None = None  # str, (n_items,): what a person reads beside an id ("" if none)

    def __post_init__(self) -> None:
        self.user_index = {u: i for i, u in enumerate(self.user_ids.tolist())}
        self.item_index = {it: i for i, it in enumerate(self.item_ids.tolist())}
        ranks = self.popularity.argsort().argsort()
        self.popularity_percentile = (ranks / max(len(ranks) - 1, 1)).astype(np.float32)
        self.popular_order = np.argsort(-self.popularity, kind="stable")

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def seen(self, user: int) -> np.ndarray:
        return self.seen_indices[self.seen_indptr[user] : self.seen_indptr[user + 1]]

    def recommend(self, users: np.ndarray, k: int, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores for known user indices (full ranking over all items)."""
        scores = self.user_vectors[users] @ self.item_vectors.T
        if exclude_seen:
            for row, user in enumerate(users):
                scores[row, self.seen(int(user))] = -np.inf
        return top_k(scores, min(k, self.n_items))

    def title(self, item_id: str | None) -> str | None:
        """The item's title (its description in the catalogue), None if unknown or untitled."""
        row = self.item_index.get(item_id) if item_id is not None and self.item_titles is not None else None
        return (str(self.item_titles[row]) or None) if row is not None else None

    def popular(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The fallback for unknown users: the k most popular items, scored by percentile."""
        top = self.popular_order[:k]
        return top, self.popularity_percentile[top]

    def without_users(self, user_ids: set[str]) -> EmbeddingModel:
        """The same model less the vectors and seen items of `user_ids` (an erasure; no retraining).

        Item vectors and popularity are aggregates over everybody and stay as they are until
        the next retrain, which learns without the removed users.
        """
        keep = ~np.isin(self.user_ids.astype(str), np.array(sorted(user_ids), dtype=str))
        counts = np.diff(self.seen_indptr)[keep]
        rows = np.repeat(keep, np.diff(self.seen_indptr))
        return EmbeddingModel(
            self.user_ids[keep],
            self.item_ids,
            self.user_vectors[keep],
            self.item_vectors,
            self.popularity,
            np.concatenate([[0], np.cumsum(counts)]).astype(self.seen_indptr.dtype),
            self.seen_indices[rows],
            dict(self.meta),
            self.item_titles,
        )

    def save(self, folder: Path) -> Path:
        """Write arrays as .npz and metadata as JSON (no pickles: safe to load anywhere)."""
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(
            folder / "arrays.npz",
            user_ids=self.user_ids.astype(str),
            item_ids=self.item_ids.astype(str),
            user_vectors=self.user_vectors,
            **_packed("item_vectors", self.item_vectors),
            popularity=self.popularity,
            seen_indptr=self.seen_indptr,
            seen_indices=self.seen_indices,
            **({"item_titles": self.item_titles.astype(str)} if self.item_titles is not None else {}),
        )
        (folder / "meta.json").write_text(json.dumps(self.meta, indent=2, default=str))
        return folder

    @classmethod
    def load(cls, folder: Path) -> EmbeddingModel:
        with np.load(folder / "arrays.npz", allow_pickle=False) as arrays:
            fields = {name: arrays[name] for name in arrays.files if not name.startswith("item_vectors_")}
            fields["item_vectors"] = _unpacked("item_vectors", arrays)
        meta = json.loads((folder / "meta.json").read_text())
        return cls(**fields, meta=meta)


def _packed(name: str, matrix: np.ndarray) -> dict[str, np.ndarray]:
    """`matrix` as saved: whole, or only its nonzero values and their flat positions when that takes under half the bytes.

    Item-kNN keeps about 100 neighbours per item (2.7% of Online Retail's 3,659 x 3,594
    item-item matrix is nonzero: 54 MB whole) and a two-stage export's item vectors are the
    identity (54 MB): whole, they were near half of a registered two-stage model. Lossless: the
    same array loads back. numpy, not scipy.sparse: the bento that loads it ships no scipy.
    """
    if np.count_nonzero(matrix) * (np.dtype(np.intp).itemsize + matrix.itemsize) >= matrix.nbytes // 2:  # counted first: no positions of a dense matrix
        return {name: matrix}
    at = np.flatnonzero(matrix)
    return {f"{name}_shape": np.array(matrix.shape), f"{name}_at": at, f"{name}_values": matrix.flat[at]}


def _unpacked(name: str, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """The matrix `_packed` saved under `name`, whole again."""
    if name in arrays:
        return arrays[name]
    values = arrays[f"{name}_values"]
    matrix = np.zeros(arrays[f"{name}_shape"], dtype=values.dtype)
    matrix.flat[arrays[f"{name}_at"]] = values
    return matrix


def titles_for(items: pd.DataFrame, item_ids: np.ndarray) -> np.ndarray:
    """Each item's title from the items table, in `item_ids` order ("" where it has none)."""
    if TITLE_COL not in items.columns:
        return np.full(len(item_ids), "", dtype=str)
    by_id = items.drop_duplicates(ITEM_COL).set_index(ITEM_COL)[TITLE_COL]
    return by_id.reindex(item_ids).fillna("").astype(str).to_numpy().astype(str)


def build_seen(train: pd.DataFrame, user_ids: np.ndarray, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, indices) of the distinct items each user interacted with in `train`."""
    u = pd.Categorical(train[USER_COL], categories=user_ids).codes
    i = pd.Categorical(train[ITEM_COL], categories=item_ids).codes
    pairs = pd.DataFrame({"u": u, "i": i})
    pairs = pairs[(pairs["u"] >= 0) & (pairs["i"] >= 0)].drop_duplicates().sort_values(["u", "i"])
    counts = np.bincount(pairs["u"].to_numpy(), minlength=len(user_ids))
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return indptr, pairs["i"].to_numpy().astype(np.int32)


def item_popularity(train: pd.DataFrame, item_ids: np.ndarray) -> np.ndarray:
    """Number of training interactions per item, in `item_ids` order."""
    counts = train[ITEM_COL].value_counts()
    return counts.reindex(item_ids, fill_value=0).to_numpy().astype(np.float32)


def vocabularies(train: pd.DataFrame, items: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted user ids of `train`; item ids of `train` plus the catalogue (so new items rank too)."""
    users = np.array(sorted(train[USER_COL].unique()), dtype=str)
    known = set(train[ITEM_COL].unique())
    if items is not None:
        known |= set(items[ITEM_COL])
    return users, np.array(sorted(known), dtype=str)


class FittedModel:
    """Holds the EmbeddingModel a `fit` produced; `export` refuses before the first fit."""

    _model: EmbeddingModel | None = None

    def export(self) -> EmbeddingModel:
        if self._model is None:
            raise RuntimeError("fit the model before exporting it")
        return self._model


class Recommender(Protocol):
    """What a model offers the training step: fit on interactions, export vectors."""

    family: str

    def fit(self, train: pd.DataFrame, items: pd.DataFrame, val: pd.DataFrame | None = None) -> Recommender: ...

    def export(self) -> EmbeddingModel: ...
