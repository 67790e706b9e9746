"""Quality floors per family on the synthetic shop, and the rule that shows what is reachable there.

The synthetic users buy an item with probability popularity × (0.95 in their two taste
categories, 0.05 elsewhere) (recsys.data.synthetic). `category_popularity` ranks by exactly
that rule, with each user's category shares estimated from their training events: it is the
generator's own ranking, so no model can beat it by more than noise, and it sets the scale.
On the test fixture (seed 0), NDCG@10 over popularity's (0.081): this rule 2.61, EASE 2.24,
item-kNN 2.36, two-tower 2.34, iALS 1.96, sequence two-tower 1.89 (72-91% of the rule; on the
generator's seeds 1-3 every family, and the rule, scored 0.1-0.4 lower: the floors are for the
fixture's data). The floors sit about 10% under each family's
measured value, so a family that loses a fifth of its lift fails; the old shared floor
(1.2-1.3× popularity) passed a model that had lost half of it. The sequence two-tower varies
most: 1.89 and 1.73 with seeds 42 and 43 alone, and 1.66 with seed 42 inside a full suite run
(other tests before it in the same process), so its floor is 1.6: a quarter of its lift lost.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.models.base import EmbeddingModel, build_seen, item_popularity, vocabularies
from recsys.schemas import CATEGORY_COL, ITEM_COL, USER_COL

#: NDCG@10 over popularity's that each family must reach with the tests' small settings.
FLOORS = {"ease": 2.0, "item_knn": 2.1, "two_tower": 2.1, "ials": 1.75, "seq_two_tower": 1.6}


def category_popularity(train: pd.DataFrame, items: pd.DataFrame) -> EmbeddingModel:
    """Score = the user's share of training events in the item's category × the item's popularity share.

    As an EmbeddingModel (user vector: category shares; item vector: its popularity in its
    category's slot), so the project's evaluation ranks it like any family.
    """
    users, item_ids = vocabularies(train, items)
    categories = items.set_index(ITEM_COL)[CATEGORY_COL].reindex(item_ids).fillna("?")
    codes, names = pd.factorize(categories)
    events = pd.DataFrame(
        {"u": pd.Categorical(train[USER_COL], categories=users).codes, "c": codes[pd.Categorical(train[ITEM_COL], categories=item_ids).codes]}
    )
    shares = np.zeros((len(users), len(names)), dtype=np.float32)
    np.add.at(shares, (events["u"].to_numpy(), events["c"].to_numpy()), 1.0)
    shares /= shares.sum(axis=1, keepdims=True)
    pop = item_popularity(train, item_ids)
    item_vectors = np.zeros((len(item_ids), len(names)), dtype=np.float32)
    item_vectors[np.arange(len(item_ids)), codes] = pop / max(pop.max(), 1.0)
    indptr, indices = build_seen(train, users, item_ids)
    return EmbeddingModel(users, item_ids, shares, item_vectors, pop, indptr, indices, {"family": "category_popularity"})
