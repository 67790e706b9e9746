"""The ranker: a small DCN-v2 over each candidate's features, trained listwise per user.

Each user's candidates are one list; the loss (keras-rs `PairwiseLogisticLoss`) asks every
item the user took in the label period to score above every item they did not. Padded list
entries carry the label -1, which keras-rs masks out. Features are standardised by a
`Normalization` layer adapted on the real (unpadded) candidates, then crossed
(`keras_rs.layers.FeatureCross`, x0 ⊙ (W x + b) + x) before a small MLP: crosses let the
ranker learn "popular *and* in the user's category" that no single feature says.
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PAD_LABEL = -1.0
MIN_VARIANCE = 1e-4  # features are log-scaled counts, shares and scores: below this they are constant
MUTED = 1e12


def build(n_features: int, cross_layers: int, hidden: int, seed: int):
    """A Keras model from (lists, L, n_features) features to (lists, L) scores."""
    import keras
    import keras_rs

    inputs = keras.Input(shape=(None, n_features), name="features")
    norm = keras.layers.Normalization(axis=-1, name="standardise")
    x0 = norm(inputs)
    x = x0
    for i in range(cross_layers):
        x = keras_rs.layers.FeatureCross(kernel_initializer=keras.initializers.GlorotUniform(seed=seed + i), name=f"cross_{i}")(x0, x)
    x = keras.layers.Dense(hidden, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(seed=seed), name="hidden")(x)
    score = keras.layers.Dense(1, kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 99), name="score")(x)
    return keras.Model(inputs, keras.ops.squeeze(score, axis=-1), name="ranker")


def train(features: np.ndarray, labels: np.ndarray, params: dict):
    """Fit a ranker on lists of candidates: `labels` 1 taken, 0 not, PAD_LABEL padding."""
    import keras
    import keras_rs

    keras.utils.set_random_seed(int(params["seed"]))
    model = build(features.shape[-1], int(params["cross_layers"]), int(params["hidden"]), int(params["seed"]))
    standardise(model.get_layer("standardise"), features[labels != PAD_LABEL])
    model.compile(optimizer=keras.optimizers.Adam(float(params["learning_rate"])), loss=keras_rs.losses.PairwiseLogisticLoss())
    model.fit(features, labels, batch_size=int(params["batch_lists"]), epochs=int(params["ranker_epochs"]), shuffle=True, verbose=0)
    return model


def standardise(layer, rows: np.ndarray) -> None:
    """Adapt the Normalization layer to `rows`, muting the features that do not vary there.

    A feature constant in the training lists teaches nothing, but it may differ when serving:
    on the synthetic shop every user has the same history length in the label split and a
    longer one when serving, and divided by its ~0 spread that shift blew the scores up to
    ±1e5. Its variance is set so large that it standardises to ~0 everywhere.
    """
    layer.adapt(rows[None])  # one list holding every real candidate (the layer is built for lists)
    variance = np.asarray(layer.adapt_variance)
    layer.adapt_variance.assign(np.where(variance < MIN_VARIANCE, MUTED, variance))
    layer.finalize_state()


def score(model, features: np.ndarray, batch: int = 256) -> np.ndarray:
    """(lists, L) ranker scores, in batches of lists."""
    return np.concatenate([np.asarray(model(features[s : s + batch], training=False)) for s in range(0, len(features), batch)])
