"""Where the deep model trains: a `tf.distribute` strategy chosen from the devices present.

`choose_strategy` is a pure function of (number of GPUs, TF_CONFIG) so every set-up can be
tested without the hardware; `distribution` turns its answer into live objects. Mixed
precision pays off only on GPUs (float16 matmuls); XLA is an option because its compile time
dominates short CPU runs.

All of this is TensorFlow's: under another Keras backend (`KERAS_BACKEND=jax`, the GPU
machine's, which has no TensorFlow) the model trains on one device (`single_device`).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

DEFAULT, MIRRORED, MULTI_WORKER = "default", "mirrored", "multi_worker_mirrored"


def choose_strategy(gpus: int, tf_config: str | None) -> str:
    """MultiWorkerMirrored when TF_CONFIG names several tasks, Mirrored for >1 GPU, else default."""
    if tf_config:
        cluster = json.loads(tf_config).get("cluster", {})
        if sum(len(tasks) for role, tasks in cluster.items() if role in ("chief", "worker")) > 1:
            return MULTI_WORKER
    return MIRRORED if gpus > 1 else DEFAULT


def is_chief(tf_config: str | None) -> bool:
    """True for the one task that writes artifacts: the `chief`, else worker 0, else a lone process.

    Every worker of a MultiWorkerMirrored cluster runs the same training steps (the collectives
    need them all); only this one logs, saves and registers, so nothing is written twice.
    """
    if not tf_config:
        return True
    config = json.loads(tf_config)
    task, cluster = config.get("task", {}), config.get("cluster", {})
    role, index = task.get("type", "worker"), int(task.get("index", 0))
    if role == "chief":
        return True
    return role == "worker" and index == 0 and not cluster.get("chief")


def cluster_config(workers: list[str], index: int) -> str:
    """The TF_CONFIG of worker `index` in a cluster of `workers` ("host:port" each, same order everywhere)."""
    return json.dumps({"cluster": {"worker": list(workers)}, "task": {"type": "worker", "index": index}})


def precision_policy(gpus: int) -> str:
    """Mixed float16 on GPUs (tensor cores); plain float32 on CPUs, where float16 is slower."""
    return "mixed_float16" if gpus > 0 else "float32"


@dataclass
class Distribution:
    """The live strategy plus the settings the model compiles with."""

    name: str
    strategy: Any  # tf.distribute.Strategy, or a SingleDevice outside TensorFlow
    policy: str
    jit_compile: bool

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)


class SingleDevice:
    """The part of a tf.distribute strategy the model uses, for backends that train on one device."""

    num_replicas_in_sync = 1

    def scope(self) -> AbstractContextManager[None]:
        return nullcontext()


def tensorflow_backend() -> bool:
    """True when Keras runs on TensorFlow (the default here); the backend is fixed per process."""
    import keras

    return keras.backend.backend() == "tensorflow"


def single_device() -> Distribution:
    """One device, float32, always compiled: the set-up under JAX.

    JAX runs an uncompiled train step op by op, so XLA is not optional there. float32 keeps the
    GPU run's quality comparable with the CPU's: the 64-dim model's steps are bound by kernel
    launches, not by the matmuls that half precision speeds up. Several devices would take
    `keras.distribution.DataParallel`; the GPU machine has one.
    """
    return Distribution(DEFAULT, SingleDevice(), "float32", True)


def distribution(xla: bool = False) -> Distribution:
    """Inspect the visible GPUs and TF_CONFIG and build the matching strategy (`single_device` outside TensorFlow)."""
    if not tensorflow_backend():
        return single_device()
    import tensorflow as tf

    gpus = len(tf.config.list_physical_devices("GPU"))
    name = choose_strategy(gpus, os.environ.get("TF_CONFIG"))
    return Distribution(name, _live_strategy(name), precision_policy(gpus), xla)


@functools.cache
def _live_strategy(name: str) -> Any:
    """One strategy object per process, shared by every fit in it.

    The standard protocol fits twice (choose the epochs, then refit). A second
    MultiWorkerMirroredStrategy re-enables collective ops on the running TensorFlow context
    (TensorFlow warns that this may break what exists) and registers the task with the cluster
    again; with one strategy per fit, a CI run saw worker 1 stop its heartbeats just as the
    refit began. TensorFlow's guide makes the strategy once, at program start.
    """
    import tensorflow as tf

    strategies = {
        DEFAULT: tf.distribute.get_strategy,
        MIRRORED: tf.distribute.MirroredStrategy,
        MULTI_WORKER: tf.distribute.MultiWorkerMirroredStrategy,
    }
    return strategies[name]()


def compiled(model: Any, method: Callable) -> Callable:
    """`method` of a Keras `model` for inference, XLA-compiled under JAX; unchanged under TensorFlow.

    Eager JAX compiles every op on its own the first time it meets a shape: the seq two-tower's
    first export took ~14 s so on 2 cores. Compiled whole, with the weights as arguments (read
    through a `keras.StatelessScope`), it traces once per input shape and follows the training.
    The weights are listed at each call, not once here: a Keras model makes some of them on its
    first call, and a weight missing from the list would be traced in as a constant, so every
    export after the first epoch would repeat that epoch's vectors.
    """
    if tensorflow_backend():
        return method
    import jax
    import keras

    @jax.jit
    def run(values: list, *args: Any) -> Any:
        with keras.StatelessScope(state_mapping=list(zip(model.variables, values))):
            return method(*args)

    return lambda *args: run([v.value for v in model.variables], *args)


def fit_mixins() -> tuple[type, ...]:
    """The bases a Keras model puts before `keras.Model`: `DistributedFit` under TensorFlow only.

    Its `train_step(data)` is TensorFlow's signature; the JAX trainer's is `train_step(state, data)`.
    """
    return (DistributedFit,) if tensorflow_backend() else ()


class DistributedFit:
    """Mixin that lets `keras.Model.fit` (Keras 3.15, TF backend) train under tf.distribute.

    Two Keras bugs stop fit under these strategies, each fixed here at its source:
    - before the first step Keras builds the model from one batch merged by a single
      `strategy.reduce` call, which takes one tensor, not a dict of inputs: fit fails under
      Mirrored and MultiWorkerMirrored (keras-team/keras issue 20329). We build from one
      replica's share of the batch, which has exactly the shapes each replica computes on;
    - across workers Keras averages each step's logs with `strategy.reduce("MEAN", v, axis=0)`,
      which fails on scalars (tensorflow/tensorflow issue 72388): we hand it shape-[1] logs,
      so it averages them over the workers.
    The model's loss must be scaled for distribution (a keras.losses.Loss object does it).
    """

    def train_step(self, data):
        import tensorflow as tf

        logs = super().train_step(data)
        if not isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return logs
        return {name: tf.reshape(value, [1]) for name, value in logs.items()}

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = getattr(self, "_distribute_strategy", None)
        if iterator is not None and data_batch is None and strategy is not None:
            import tensorflow as tf

            for _, _, it in iterator:
                batch = next(it)
                data_batch = tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], batch)
                break
        if data_batch is None:
            return super()._maybe_symbolic_build(iterator=iterator)
        return super()._maybe_symbolic_build(data_batch=data_batch)


@contextmanager
def dtype_policy(policy: str) -> Iterator[None]:
    """Build layers under `policy` and restore the global policy afterwards."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
