"""The Keras models train under JAX with TensorFlow unimportable, as on the GPU machine (benchmarks/gpu.sh).

The backend is fixed per process, so the training runs in a child with `KERAS_BACKEND=jax`, on
CPU, and TensorFlow blocked: any `import tensorflow` on the way fails the child.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import importlib.abc, json, sys

class NoTensorFlow(importlib.abc.MetaPathFinder):  # what the GPU machine lacks: importing it raises
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, NoTensorFlow())
import keras
import numpy as np
from recsys.data.split import temporal_user_split
from recsys.data.synthetic import make_synthetic
from recsys.models.seq_two_tower import SeqTwoTowerModel
from recsys.models.two_stage import ranker

data = make_synthetic()
split = temporal_user_split(data.interactions)
exports = []  # each epoch's exported user vectors: they must follow the training
deep = SeqTwoTowerModel(
    epochs=3, batch_size=256, embedding_dim=16, max_len=10, bag_len=20,
    on_epoch_end=lambda epoch, logs, model: exports.append(model.user_vectors.copy()),
).fit(split.train, data.items)
vectors = deep.export().user_vectors

# the ranker on a planted rule: in each list of 12, the items whose feature 0 is among the top 3 were taken
rng = np.random.default_rng(0)
features = rng.normal(size=(96, 12, 4)).astype(np.float32)
labels = (features[..., 0] >= np.sort(features[..., 0], axis=1)[:, -3:-2]).astype(np.float32)
params = {"seed": 0, "cross_layers": 1, "hidden": 8, "learning_rate": 0.03, "batch_lists": 32, "ranker_epochs": 15, "train_list": 64}
scores = ranker.score(ranker.weights(ranker.train(features, labels, params)), features)
pairs = (scores[:, :, None] > scores[:, None, :]) & (labels[:, :, None] == 1) & (labels[:, None, :] == 0)
print(json.dumps({
    "backend": keras.backend.backend(),
    "tensorflow_loaded": "tensorflow" in sys.modules,
    "loss": deep.history["loss"],
    "finite": bool(np.isfinite(vectors).all()),
    "export_moves": [float(np.abs(b - a).max()) for a, b in zip(exports, exports[1:])],
    "users": int(vectors.shape[0]),
    "ranker_pair_accuracy": float(pairs.sum() / (labels.sum(axis=1) * (12 - labels.sum(axis=1))).sum()),
}))
"""


def test_the_deep_model_and_the_ranker_train_under_jax_without_tensorflow() -> None:
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    child = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax" and not result["tensorflow_loaded"]
    loss = result["loss"]
    assert len(loss) == 3 and loss[-1] < loss[0] - 0.3, loss  # it learns (in-batch softmax over 256 starts near ln 256 = 5.5)
    assert result["finite"] and result["users"] > 0
    assert min(result["export_moves"]) > 1e-3, result["export_moves"]  # each epoch's export differs from the last
    assert result["ranker_pair_accuracy"] > 0.9, result  # 0.5 is chance


def test_the_gpu_benchmark_chooses_epochs_without_mlflow() -> None:
    """The GPU machine has no MLflow (nor TensorFlow): the benchmark and the epoch choice it shares import neither."""
    blocked = "import sys\nfor name in ('mlflow', 'tensorflow'): sys.modules[name] = None\n"
    child = subprocess.run(
        [sys.executable, "-c", blocked + "import benchmarks.gpu as gpu; print(gpu.choose_epochs.__module__)"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert child.stdout.split() == ["recsys.epochs"]
