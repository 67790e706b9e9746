"""The quality benchmark's deep model configuration, on its own so the GPU run (benchmarks/gpu.py) reads it.

`benchmarks.quality` imports the whole training chain (MLflow, the tuners); the GPU machine has
none of it, only what the model itself needs.
"""

from __future__ import annotations

DEEP = {"epochs": 5, "batch_size": 512, "embedding_dim": 64, "max_len": 50, "horizon": 0.3}
DEEP_EPOCHS = {"online-retail": 3}  # 3x the examples of the MovieLens sets


def deep_config(name: str) -> dict:
    """The seq two-tower's parameters on dataset `name` (its epochs being the most the benchmark tries)."""
    return {**DEEP, "epochs": DEEP_EPOCHS.get(name, DEEP["epochs"])}
