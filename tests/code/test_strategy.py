"""The distribution strategy for each set-up, decided without the hardware."""

from __future__ import annotations

import json

import pytest

from recsys.models.strategy import DEFAULT, MIRRORED, MULTI_WORKER, choose_strategy, distribution, precision_policy

TWO_WORKERS = json.dumps({"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}})
ONE_WORKER = json.dumps({"cluster": {"worker": ["host1:2222"]}, "task": {"type": "worker", "index": 0}})
CHIEF_AND_WORKER = json.dumps({"cluster": {"chief": ["h0:2222"], "worker": ["h1:2222"]}, "task": {"type": "chief", "index": 0}})


@pytest.mark.parametrize(
    ("gpus", "tf_config", "expected"),
    [
        (0, None, DEFAULT),  # CPU
        (1, None, DEFAULT),  # one GPU: the default strategy already places ops on it
        (4, None, MIRRORED),  # several GPUs in one machine
        (0, "", DEFAULT),
        (1, ONE_WORKER, DEFAULT),  # a TF_CONFIG with a single task is not a cluster
        (2, TWO_WORKERS, MULTI_WORKER),
        (0, CHIEF_AND_WORKER, MULTI_WORKER),
    ],
)
def test_strategy_for_each_setup(gpus: int, tf_config: str | None, expected: str) -> None:
    assert choose_strategy(gpus, tf_config) == expected


def test_mixed_precision_only_on_gpu() -> None:
    assert precision_policy(0) == "float32"
    assert precision_policy(1) == "mixed_float16"


def test_this_machine_gets_the_strategy_of_its_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow as tf

    monkeypatch.delenv("TF_CONFIG", raising=False)
    gpus = len(tf.config.list_physical_devices("GPU"))
    setup = distribution(xla=True)
    # written out, not taken from the functions under test: CPU and one GPU get the default
    # strategy (float32 / mixed precision), several GPUs mirror with one replica each
    name, policy = {0: (DEFAULT, "float32"), 1: (DEFAULT, "mixed_float16")}.get(gpus, (MIRRORED, "mixed_float16"))
    assert (setup.name, setup.policy, setup.jit_compile, setup.replicas) == (name, policy, True, max(gpus, 1))
