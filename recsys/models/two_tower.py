"""A two-tower retrieval model in Keras 3: user and item towers trained with in-batch softmax.

Each training example is a (user, item) pair the user interacted with; the other items of
the batch are its negatives. Towers end in L2-normalised vectors and logits are scaled
cosines, which keeps training stable with large learning rates. Written with `keras.ops`,
so the same code runs on the TensorFlow, JAX or PyTorch backend.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pandas as pd

from recsys.models.base import EmbeddingModel, FittedModel, build_seen, item_popularity, vocabularies
from recsys.schemas import ITEM_COL, USER_COL

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EpochCallback = Callable[[int, dict[str, float], EmbeddingModel], None]


def _build_keras_model(n_users: int, n_items: int, dim: int, temperature: float, seed: int):
    import keras
    from keras import layers, ops

    class TwoTower(keras.Model):
        """Scores every user of a batch against every item of the batch (in-batch softmax)."""

        def __init__(self) -> None:
            super().__init__()
            init = keras.initializers.RandomNormal(stddev=0.1, seed=seed)
            self.user_tower = layers.Embedding(n_users, dim, embeddings_initializer=init, name="user_tower")
            self.item_tower = layers.Embedding(n_items, dim, embeddings_initializer=init, name="item_tower")

        def embed_users(self, users):
            return ops.normalize(self.user_tower(users), axis=-1)

        def embed_items(self, items):
            return ops.normalize(self.item_tower(items), axis=-1)

        def call(self, inputs):
            users = self.embed_users(inputs["user"])
            items = self.embed_items(inputs["item"])
            logits = ops.matmul(users, ops.transpose(items)) / temperature
            # logQ correction: popular items are over-sampled as in-batch negatives.
            return logits - ops.expand_dims(inputs["log_q"], 0)

    return TwoTower()


class TwoTowerModel(FittedModel):
    """Fit user/item towers on implicit feedback; export their vectors for retrieval."""

    family = "two_tower"

    def __init__(
        self,
        embedding_dim: int = 64,
        epochs: int = 5,
        batch_size: int = 1024,
        learning_rate: float = 0.02,
        temperature: float = 0.2,
        seed: int = 42,
        on_epoch_end: EpochCallback | None = None,
    ) -> None:
        self.params = {
            "embedding_dim": embedding_dim,
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "temperature": temperature,
            "seed": seed,
        }
        self.on_epoch_end = on_epoch_end
        self.history: dict[str, list[float]] = {}
        self.keras_model = None

    def fit(self, train: pd.DataFrame, items: pd.DataFrame, val: pd.DataFrame | None = None) -> TwoTowerModel:
        import keras

        p = self.params
        keras.utils.set_random_seed(p["seed"])
        users, item_ids = vocabularies(train, items)
        pairs = train[[USER_COL, ITEM_COL]].drop_duplicates()
        u = pd.Categorical(pairs[USER_COL], categories=users).codes.astype(np.int32)
        i = pd.Categorical(pairs[ITEM_COL], categories=item_ids).codes.astype(np.int32)
        batch = int(min(p["batch_size"], len(u)))
        self.keras_model = _build_keras_model(len(users), len(item_ids), int(p["embedding_dim"]), p["temperature"], p["seed"])
        self.keras_model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=p["learning_rate"]),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        labels = np.arange(batch, dtype=np.int32)
        pop = item_popularity(train, item_ids)
        indptr, indices = build_seen(train, users, item_ids)
        item_counts = np.bincount(i, minlength=len(item_ids)).astype(np.float32)
        log_q = np.log(np.maximum(item_counts, 1.0) / len(i)).astype(np.float32)
        rng = np.random.default_rng(p["seed"])
        for epoch in range(int(p["epochs"])):
            order = rng.permutation(len(u))
            n_batches = len(order) // batch
            losses = []
            for b in range(n_batches):
                idx = order[b * batch : (b + 1) * batch]
                inputs = {"user": u[idx], "item": i[idx], "log_q": log_q[i[idx]]}
                losses.append(float(self.keras_model.train_on_batch(inputs, labels)))
            self.history.setdefault("loss", []).append(float(np.mean(losses)))
            self._model = self._export(users, item_ids, pop, indptr, indices)
            if self.on_epoch_end is not None:
                self.on_epoch_end(epoch, {"loss": self.history["loss"][-1]}, self._model)
        return self

    def _export(self, users: np.ndarray, item_ids: np.ndarray, pop: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> EmbeddingModel:
        km = self.keras_model
        user_vectors = np.asarray(km.embed_users(np.arange(len(users), dtype=np.int32)), dtype=np.float32)
        item_vectors = np.asarray(km.embed_items(np.arange(len(item_ids), dtype=np.int32)), dtype=np.float32)
        return EmbeddingModel(users, item_ids, user_vectors, item_vectors, pop, indptr, indices, meta={"family": self.family, **self.params})
