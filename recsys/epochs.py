"""How an epoch family's epoch count is chosen on validation, apart from the MLflow run that logs it.

The choice is the training protocol's (`recsys.training.fit_by_protocol`), and the GPU machine's
benchmark (`benchmarks/gpu.py`) makes it too: that machine has no MLflow, so this module imports
none (nor anything beyond numpy, pandas, the settings and the model families).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from recsys.data.split import Split
from recsys.evaluation import evaluate
from recsys.models import families
from recsys.models.base import EmbeddingModel, Recommender
from recsys.settings import Settings

SELECTION_METRIC = "ndcg_at_10"


def choose_epochs(
    family: str,
    settings: Settings,
    params: dict | None,
    split: Split,
    items: pd.DataFrame,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[Recommender, int, dict[str, list[float]]]:
    """One fit on train, validation scored after each epoch: the fitted model, the best epoch count, the curves."""
    history: dict[str, list[float]] = {}
    sample = {"max_users": settings.eval_max_users, "seed": settings.seed}

    def epoch_end(epoch: int, logs: dict[str, float], model: EmbeddingModel) -> None:
        val = evaluate(model, split.val, ks=(10,), **sample)
        step = {**logs, "val_ndcg_at_10": val["ndcg_at_10"], "val_recall_at_10": val["recall_at_10"]}
        for name, value in step.items():
            history.setdefault(name, []).append(value)
        if on_epoch is not None:
            on_epoch(epoch, step)

    selection, _ = families.by_name(family).build(settings, params, epoch_end)
    selection.fit(split.train, items, split.val)
    return selection, chosen_epochs(history), history


def chosen_epochs(history: dict[str, list[float]]) -> int:
    """The epoch count whose validation NDCG@10 was best (the first of ties; all epochs without a curve)."""
    curve = history.get(f"val_{SELECTION_METRIC}", [])
    return int(np.argmax(curve)) + 1 if curve else len(history.get("loss", [])) or 1
