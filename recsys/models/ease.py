"""EASE (Steck 2019): a closed-form linear item-item model, the strongest simple baseline.

B = I - P diag(1/diag(P)), P = (XᵀX + λI)⁻¹, with the diagonal of B forced to zero so an
item cannot recommend itself. One matrix inverse over the trained items, in float32.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.models.item_item import ItemItemRecommender


class EASEModel(ItemItemRecommender):
    """Linear autoencoder with a zero-diagonal constraint; `l2` is the only knob."""

    family = "ease"

    def __init__(self, l2: float = 300.0) -> None:
        super().__init__()
        self.params = {"l2": l2}

    def item_item(self, x: sp.csr_matrix) -> np.ndarray:
        gram = (x.T @ x).toarray().astype(np.float32)
        gram[np.diag_indices_from(gram)] += self.params["l2"]
        p = np.linalg.inv(gram)
        b = p / -np.diag(p)
        b[np.diag_indices_from(b)] = 0.0
        return b.astype(np.float32)
