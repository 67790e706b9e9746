"""iALS (Hu, Koren, Volinsky 2008) from the `implicit` package: weighted matrix factorisation.

Every unobserved (user, item) pair is a weak negative; observed pairs get confidence
1 + alpha. The factors are the exported vectors as they are (score = dot product).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from recsys.models.base import EmbeddingModel, FittedModel, build_seen, item_popularity, vocabularies
from recsys.models.item_item import interaction_matrix


class IALSModel(FittedModel):
    """Implicit ALS with a conjugate-gradient solver (CPU) or CUDA when `implicit` has it."""

    family = "ials"

    def __init__(self, factors: int = 64, regularization: float = 0.1, iterations: int = 15, alpha: float = 10.0, seed: int = 42) -> None:
        self.params = {"factors": factors, "regularization": regularization, "iterations": iterations, "alpha": alpha, "seed": seed}

    def fit(self, train: pd.DataFrame, items: pd.DataFrame, val: pd.DataFrame | None = None) -> IALSModel:
        from implicit.als import AlternatingLeastSquares

        p = self.params
        users, item_ids = vocabularies(train, items)
        x = interaction_matrix(train, users, item_ids)
        with threadpool_limits(1, "blas"):  # implicit parallelises itself; nested BLAS threads thrash
            als = AlternatingLeastSquares(
                factors=int(p["factors"]),
                regularization=float(p["regularization"]),
                alpha=float(p["alpha"]),
                iterations=int(p["iterations"]),
                random_state=int(p["seed"]),
                use_gpu=False,
            )
            als.fit(x, show_progress=False)
        indptr, indices = build_seen(train, users, item_ids)
        self._model = EmbeddingModel(
            users,
            item_ids,
            np.asarray(als.user_factors, dtype=np.float32),
            np.asarray(als.item_factors, dtype=np.float32),
            item_popularity(train, item_ids),
            indptr,
            indices,
            meta={"family": self.family, **p},
        )
        return self
