"""Item-kNN: cosine similarity between item columns, pruned to each item's top neighbours.

A user's score for item j is the summed similarity of j to the items the user interacted
with. Pruning to `neighbours` per item removes the long tail of weak, noisy similarities.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.models.item_item import ItemItemRecommender


class ItemKNNModel(ItemItemRecommender):
    """Cosine item-item neighbourhood model; `shrink` damps similarities of rare items."""

    family = "item_knn"

    def __init__(self, neighbours: int = 100, shrink: float = 10.0) -> None:
        super().__init__()
        self.params = {"neighbours": neighbours, "shrink": shrink}

    def item_item(self, x: sp.csr_matrix) -> np.ndarray:
        co = (x.T @ x).toarray().astype(np.float32)
        norms = np.sqrt(np.diag(co))
        sim = co / (np.outer(norms, norms) + self.params["shrink"] + 1e-9)
        np.fill_diagonal(sim, 0.0)
        k = min(int(self.params["neighbours"]), len(sim) - 1)
        if k < len(sim) - 1:  # keep each column's k largest similarities
            cut = np.partition(sim, len(sim) - k - 1, axis=0)[len(sim) - k - 1]
            sim[sim < cut[None, :]] = 0.0
        return sim
