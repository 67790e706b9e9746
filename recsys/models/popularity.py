"""Most-popular items for everyone: the baseline every model must beat."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.models.base import EmbeddingModel, FittedModel, build_seen, item_popularity, vocabularies


class PopularityModel(FittedModel):
    """Scores each item by its training interaction count, the same for every user."""

    family = "popularity"

    def fit(self, train: pd.DataFrame, items: pd.DataFrame, val: pd.DataFrame | None = None) -> PopularityModel:
        users, item_ids = vocabularies(train, items)
        pop = item_popularity(train, item_ids)
        indptr, indices = build_seen(train, users, item_ids)
        self._model = EmbeddingModel(
            user_ids=users,
            item_ids=item_ids,
            user_vectors=np.ones((len(users), 1), dtype=np.float32),
            item_vectors=(pop / max(pop.max(), 1.0)).reshape(-1, 1).astype(np.float32),
            popularity=pop,
            seen_indptr=indptr,
            seen_indices=indices,
            meta={"family": self.family},
        )
        return self
