"""Shared pieces of the neighbourhood baselines: the interaction matrix and the export.

EASE and item-kNN both score a user as `x_u · B[:, j]`, with `x_u` the user's binary row and
`B` an item-item matrix. That is a dot product, so they export to EmbeddingModel as they are:
user vector = the binary row, item vector j = column j of B. To keep memory sane, B only
spans items seen in training (catalogue-only items get zero vectors: nothing to learn from).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.models.base import EmbeddingModel, FittedModel, build_seen, item_popularity, vocabularies
from recsys.schemas import ITEM_COL, USER_COL


def interaction_matrix(train: pd.DataFrame, users: np.ndarray, items: np.ndarray) -> sp.csr_matrix:
    """Binary users x items CSR matrix of `train` (repeat interactions count once)."""
    u = pd.Categorical(train[USER_COL], categories=users).codes
    i = pd.Categorical(train[ITEM_COL], categories=items).codes
    keep = (u >= 0) & (i >= 0)
    matrix = sp.csr_matrix((np.ones(keep.sum(), dtype=np.float32), (u[keep], i[keep])), shape=(len(users), len(items)))
    matrix.data[:] = 1.0  # duplicates were summed
    return matrix


class ItemItemRecommender(FittedModel):
    """Fit an item-item matrix on the trained items and export it as user/item vectors."""

    family = "item_item"

    def __init__(self) -> None:
        self.params: dict = {}

    def item_item(self, x: sp.csr_matrix) -> np.ndarray:
        """The (n, n) float32 matrix B over the columns of `x`; subclasses define it."""
        raise NotImplementedError

    def fit(self, train: pd.DataFrame, items: pd.DataFrame, val: pd.DataFrame | None = None) -> ItemItemRecommender:
        users, item_ids = vocabularies(train, items)
        trained = np.array(sorted(train[ITEM_COL].unique()), dtype=str)
        x = interaction_matrix(train, users, trained)
        b = self.item_item(x)
        item_vectors = np.zeros((len(item_ids), len(trained)), dtype=np.float32)
        item_vectors[np.searchsorted(item_ids, trained)] = b.T
        indptr, indices = build_seen(train, users, item_ids)
        self._model = EmbeddingModel(
            users,
            item_ids,
            x.toarray(),
            item_vectors,
            item_popularity(train, item_ids),
            indptr,
            indices,
            meta={"family": self.family, **self.params},
        )
        return self
