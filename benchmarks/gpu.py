"""The quality benchmark's deep model where Keras runs on JAX: training steps/s and test NDCG@10.

Made for the GPU machine (`benchmarks/gpu.sh` sets it up: JAX, numpy, pandas and pyarrow there,
Keras and keras-rs brought as wheels, no TensorFlow, no MLflow), and runs on CPU too, under
either backend, so its figures compare. The protocol is `benchmarks/quality.py`'s: per-user
temporal split, the seq two-tower with its config (`benchmarks/deep.py`) chooses its epoch count
on validation (NDCG@10 after each epoch of one fit on train), then is refit on train + validation
and scored on test (95% bootstrap interval over users). `--epochs N` skips the choice and refits
with N. The selection is the pipeline's own (`recsys.epochs`, which imports no MLflow).

steps/s is the refit's: its epochs after the first (which also compiles the train step), timed
from the first batch to the last with the loss read back, so the device has finished.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

from benchmarks.deep import deep_config
from recsys.data.ingest import load_dataset
from recsys.data.split import temporal_user_split
from recsys.epochs import SELECTION_METRIC, choose_epochs
from recsys.evaluation import BOOTSTRAP, evaluate
from recsys.models.base import EmbeddingModel
from recsys.models.families import FAMILIES
from recsys.settings import get_settings

DATASETS = ("ml-100k", "ml-latest-small")


@dataclass(frozen=True)
class Result:
    """One dataset's deep run: the epochs it trained, how fast, and its test quality."""

    dataset: str
    epochs: int
    val_curve: list[float]  # validation NDCG@10 per epoch of the choosing fit (empty with --epochs)
    steps_per_epoch: int
    first_epoch_s: float  # compiles the train step
    steps_per_s: float  # median over the later epochs (the first's when only one)
    refit_s: float
    test: dict[str, float]

    def line(self) -> str:
        m = self.test
        curve = f" val NDCG@10 by epoch {[round(v, 4) for v in self.val_curve]}" if self.val_curve else ""
        return (
            f"{self.dataset}: epochs={self.epochs}{curve} steps/epoch={self.steps_per_epoch} first_epoch={self.first_epoch_s:.1f}s "
            f"steps/s={self.steps_per_s:.1f} refit={self.refit_s:.1f}s test NDCG@10={m['ndcg_at_10']:.4f} "
            f"[{m['ndcg_at_10_lo']:.4f}, {m['ndcg_at_10_hi']:.4f}] Recall@20={m['recall_at_20']:.4f}"
        )


def _timed_refit(config: dict, train_val, items) -> tuple[EmbeddingModel, int, list[float], float]:
    """Fit on train + validation by hand (prepare, Keras fit, export), timing each epoch."""
    import keras

    class Clock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.seconds.append(time.perf_counter() - self.start)

    start = time.perf_counter()
    model = FAMILIES["seq_two_tower"].build(get_settings(), config)[0]
    model.prepare(train_val, items)
    feed, clock = model.feed(), Clock()
    model.keras_model.fit(model.dataset(), epochs=int(config["epochs"]), callbacks=[clock], verbose=0, shuffle=False)
    exported = model.export_now()
    return exported, len(feed.examples.item) // feed.batch, clock.seconds, time.perf_counter() - start


def run(name: str, epochs: int | None) -> Result:
    """The deep model on dataset `name`: epochs chosen on validation (or given), refit, test."""
    settings = get_settings()
    data = load_dataset(name, settings.shared_data_dir)
    split = temporal_user_split(data.interactions)
    config = deep_config(name)
    chosen, curve = epochs, []
    if not epochs:
        _, chosen, history = choose_epochs("seq_two_tower", settings, config, split, data.items)
        curve = history[f"val_{SELECTION_METRIC}"]
    exported, steps, seconds, refit_s = _timed_refit({**config, "epochs": chosen}, split.train_val, data.items)
    rate = steps / statistics.median(seconds[1:] or seconds)
    test = evaluate(exported, split.test, bootstrap=BOOTSTRAP)
    return Result(name, chosen, curve, steps, seconds[0], rate, refit_s, test)


def main() -> None:
    import keras

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated, from " + ", ".join(DATASETS))
    parser.add_argument("--epochs", type=int, default=None, help="refit with this many epochs instead of choosing them on validation")
    args = parser.parse_args()
    devices = keras.distribution.list_devices()
    print(f"keras {keras.__version__} backend={keras.backend.backend()} devices={devices}", flush=True)
    start = time.perf_counter()
    for name in args.datasets.split(","):
        print(run(name, args.epochs).line(), flush=True)
    print(f"total {time.perf_counter() - start:.1f}s", flush=True)


if __name__ == "__main__":
    main()
