"""The ranker: a small DCN-v2 over each candidate's features, trained listwise per user.

Each user's candidates are one list; the loss (keras-rs `PairwiseLogisticLoss`) asks every
item the user took in the label period to score above every item they did not. Padded list
entries carry the label -1, which keras-rs masks out. Features are standardised by a
`Normalization` layer adapted on the real (unpadded) candidates, then crossed
(`keras_rs.layers.FeatureCross`, x0 ⊙ (W x + b) + x) before a small MLP: crosses let the
ranker learn "popular *and* in the user's category" that no single feature says.

Keras trains it; scoring is numpy (`weights`, `score`) on the same arrays, offline for the export
and per request in the service, so both order candidates by one definition and the service
never imports Keras.
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PAD_LABEL = -1.0
MIN_VARIANCE = 1e-4  # features are log-scaled counts, shares and scores: below this they are constant
MUTED = 1e12
KERAS_EPSILON = 1e-7  # keras.backend.epsilon(): the Normalization layer's floor on the spread


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
    """Fit a ranker on lists of candidates: `labels` 1 taken, 0 not, PAD_LABEL padding.

    Each list is cut to `train_list` candidates first (`sample_lists`): the pairwise loss costs
    the square of a list's length, and a union of five retrievers' top 100 is some 300 long.
    """
    import keras
    import keras_rs

    keras.utils.set_random_seed(int(params["seed"]))
    features, labels = sample_lists(features, labels, int(params["train_list"]), int(params["seed"]))
    model = build(features.shape[-1], int(params["cross_layers"]), int(params["hidden"]), int(params["seed"]))
    standardise(model.get_layer("standardise"), features[labels != PAD_LABEL])
    model.compile(optimizer=keras.optimizers.Adam(float(params["learning_rate"])), loss=keras_rs.losses.PairwiseLogisticLoss())
    model.fit(features, labels, batch_size=int(params["batch_lists"]), epochs=int(params["ranker_epochs"]), shuffle=True, verbose=0)
    return model


def sample_lists(features: np.ndarray, labels: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each list cut to `size` candidates: every item taken (up to `size`), then items not taken, drawn at random.

    Negative sampling, as rankers are commonly trained: the pairs the loss sees are each taken
    item against a random sample of the others, drawn once per fit (fixed by `seed`).
    """
    if labels.shape[1] <= size:
        return features, labels
    key = np.random.default_rng(seed).random(labels.shape) + np.where(labels == 1.0, -2.0, np.where(labels == PAD_LABEL, 2.0, 0.0))
    keep = np.sort(np.argsort(key, axis=1, kind="stable")[:, :size], axis=1)
    return np.take_along_axis(features, keep[:, :, None], axis=1), np.take_along_axis(labels, keep, axis=1)


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


def weights(model) -> dict[str, np.ndarray]:
    """The trained ranker as named float32 arrays: what `score` needs, saved without pickles."""
    norm = model.get_layer("standardise")
    out = {"mean": np.asarray(norm.mean).reshape(-1), "variance": np.asarray(norm.variance).reshape(-1)}
    for cross in (layer for layer in model.layers if layer.name.startswith("cross_")):
        out[f"{cross.name}_kernel"], out[f"{cross.name}_bias"] = np.asarray(cross.dense.kernel), np.asarray(cross.dense.bias)
    for name in ("hidden", "score"):
        layer = model.get_layer(name)
        out[f"{name}_kernel"], out[f"{name}_bias"] = np.asarray(layer.kernel), np.asarray(layer.bias)
    return {name: value.astype(np.float32) for name, value in out.items()}


def forward(weights: dict[str, np.ndarray], features: np.ndarray) -> np.ndarray:
    """(..., L) scores of (..., L, n_features) features: the Keras model's forward pass in numpy.

    Normalization (x - mean) / max(sqrt(variance), 1e-7), Keras's epsilon; each FeatureCross
    x0 * (W x + b) + x (keras-rs's default: no projection, no diagonal scale); Dense relu; Dense.
    """
    x0 = (features - weights["mean"]) / np.maximum(np.sqrt(weights["variance"]), KERAS_EPSILON)
    x, layer = x0, 0
    while f"cross_{layer}_kernel" in weights:
        x = x0 * (x @ weights[f"cross_{layer}_kernel"] + weights[f"cross_{layer}_bias"]) + x
        layer += 1
    hidden = np.maximum(x @ weights["hidden_kernel"] + weights["hidden_bias"], 0.0)
    return (hidden @ weights["score_kernel"] + weights["score_bias"])[..., 0]


def score(weights: dict[str, np.ndarray], features: np.ndarray, batch: int = 256) -> np.ndarray:
    """(lists, L) ranker scores, in batches of lists (the intermediates of all users at once are large)."""
    return np.concatenate([forward(weights, features[s : s + batch]) for s in range(0, len(features), batch)])
