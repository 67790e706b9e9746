"""The bar a learned model must clear on the synthetic data: popular items in the user's own categories.

The synthetic users have planted category tastes (recsys.data.synthetic), so a rule that ranks
each user's most-bought categories' most popular items already beats global popularity by
far. A model that only clears popularity may have lost half of what it learned; one that
clears this rule has learned more than which categories a user buys.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.models.base import EmbeddingModel, build_seen, item_popularity, vocabularies
from recsys.schemas import CATEGORY_COL, ITEM_COL, USER_COL


def category_popularity(train: pd.DataFrame, items: pd.DataFrame) -> EmbeddingModel:
    """Score = the user's share of training events in the item's category × the item's popularity share.

    As an EmbeddingModel (user vector: category shares; item vector: its popularity in its
    category's slot), so the project's evaluation ranks it like any family.
    """
    users, item_ids = vocabularies(train, items)
    categories = items.set_index(ITEM_COL)[CATEGORY_COL].reindex(item_ids).fillna("?")
    codes, names = pd.factorize(categories)
    events = pd.DataFrame({"u": pd.Categorical(train[USER_COL], categories=users).codes,
                           "c": codes[pd.Categorical(train[ITEM_COL], categories=item_ids).codes]})  # fmt: skip
    shares = np.zeros((len(users), len(names)), dtype=np.float32)
    np.add.at(shares, (events["u"].to_numpy(), events["c"].to_numpy()), 1.0)
    shares /= shares.sum(axis=1, keepdims=True)
    pop = item_popularity(train, item_ids)
    item_vectors = np.zeros((len(item_ids), len(names)), dtype=np.float32)
    item_vectors[np.arange(len(item_ids)), codes] = pop / max(pop.max(), 1.0)
    indptr, indices = build_seen(train, users, item_ids)
    return EmbeddingModel(users, item_ids, shares, item_vectors, pop, indptr, indices, {"family": "category_popularity"})
