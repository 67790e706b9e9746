"""Where the deep model trains: a `tf.distribute` strategy chosen from the devices present.

`choose_strategy` is a pure function of (number of GPUs, TF_CONFIG) so every set-up can be
tested without the hardware; `distribution` turns its answer into live objects. Mixed
precision pays off only on GPUs (float16 matmuls); XLA is an option because its compile time
dominates short CPU runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
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


def precision_policy(gpus: int) -> str:
    """Mixed float16 on GPUs (tensor cores); plain float32 on CPUs, where float16 is slower."""
    return "mixed_float16" if gpus > 0 else "float32"


@dataclass
class Distribution:
    """The live strategy plus the settings the model compiles with."""

    name: str
    strategy: Any  # tf.distribute.Strategy
    policy: str
    jit_compile: bool

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)


def distribution(xla: bool = False) -> Distribution:
    """Inspect the visible GPUs and TF_CONFIG and build the matching strategy."""
    import tensorflow as tf

    gpus = len(tf.config.list_physical_devices("GPU"))
    name = choose_strategy(gpus, os.environ.get("TF_CONFIG"))
    strategies = {
        DEFAULT: tf.distribute.get_strategy,
        MIRRORED: tf.distribute.MirroredStrategy,
        MULTI_WORKER: tf.distribute.MultiWorkerMirroredStrategy,
    }
    return Distribution(name, strategies[name](), precision_policy(gpus), xla)


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
