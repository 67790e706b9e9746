"""Why was this item recommended? The user's history items closest to it in embedding space.

A pure function over EmbeddingModel, so it explains every family the same way: cosine
similarity between the recommended item's vector and the vectors of the items the user
interacted with in training (for EASE/item-kNN, item vectors are item-item columns, so this
reads as "people who took these also took that").
"""

from __future__ import annotations

import numpy as np

from recsys.models.base import EmbeddingModel


def explain(model: EmbeddingModel, user_id: str, item_id: str, top: int = 3) -> list[tuple[str, float]]:
    """Up to `top` (history item id, cosine similarity) pairs, most similar first.

    Empty for users the model does not know (they got popularity, which has no history to cite).
    """
    if user_id not in model.user_index:
        return []
    if item_id not in model.item_index:
        raise KeyError(f"unknown item {item_id!r}")
    history = model.seen(model.user_index[user_id])
    history = history[history != model.item_index[item_id]]
    if len(history) == 0:
        return []
    target = model.item_vectors[model.item_index[item_id]]
    vectors = model.item_vectors[history]
    norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(target)
    similarity = np.where(norms > 0, vectors @ target / np.maximum(norms, 1e-12), 0.0)
    order = np.argsort(-similarity, kind="stable")[:top]
    return [(str(model.item_ids[history[i]]), float(similarity[i])) for i in order]
