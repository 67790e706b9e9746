"""Every model family in one table: how it is built, tuned, trained and saved.

Training, tuning, the worker, the CLI's `--family` choices and the Prefect run forms all read
this table, so a new family is one entry here and a typo fails where the name is typed, listing
the valid names, before any data loads. Model classes are named by import path and imported on
build, so asking for the names (the CLI does) imports neither Keras nor the models.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recsys.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

    from recsys.models.report import Report

#: Extra files a family logs beside its exported model: {artifact name: path written under a folder}.
Artifacts = Callable[[Any, Path], dict[str, Path]]
#: What a family tells about a fitted model beyond the shared metrics, given the test interactions.
Reporter = Callable[[Any, "pd.DataFrame"], "Report"]


def _keras_model(model: Any, folder: Path) -> dict[str, Path]:
    """The whole two-tower Keras model, so it can be reloaded and fine-tuned."""
    path = folder / "two_tower.keras"
    model.keras_model.save(path)
    return {"keras_model": path}


def _keras_weights(model: Any, folder: Path) -> dict[str, Path]:
    """The sequence model's weights (its subclassed Keras model is rebuilt from params)."""
    path = folder / "seq_two_tower.weights.h5"
    model.keras_model.save_weights(path)
    return {"keras_weights": path}


def _stage_two(model: Any, folder: Path) -> dict[str, Path]:
    """What the service ranks a two-stage model's users with per request: its snapshot and ranker as arrays."""
    from recsys.models.two_stage import served

    return {served.ARTIFACT: served.StageTwo.of(model).save(folder / served.ARTIFACT)}


def _two_stage_report(model: Any, test: pd.DataFrame) -> Report:
    """The retrievers of the served fit, each a part, and the ranker's feature importance on the test period.

    The test period is held out from every fit, so the importance says what the ranker leans
    on where it is scored, not what it memorised in its own training lists.
    """
    from recsys.models.report import Part, Report

    importance = model.feature_importance(test, "the test period (held out): sampled test users' served candidates, labelled by what they took in it")
    files = {"ranker/feature_importance.json": json.dumps(importance.as_dict(), indent=2), "ranker/feature_importance.md": importance.markdown()}
    parts = tuple(Part(name, "retriever", r.family, r.params, r.model) for name, r in model.retrievers.items())
    return Report(parts, files, importance.metrics())


@dataclass(frozen=True)
class Family:
    """One model family.

    `defaults` names the Settings fields that give its hyper-parameters unless params override
    them (the shared epochs, embedding size, seed...); `grid` is the tuning search space.
    """

    name: str
    model_class: str  # "module:Class", imported on build
    defaults: tuple[str, ...] = ()
    grid: dict[str, list] = field(default_factory=dict)
    epochs: bool = False  # the epoch count is chosen on validation (standard protocol)
    candidate: bool = True  # may be registered, blessed and promoted; popularity is the baseline
    distributed: bool = False  # trains under tf.distribute across the workers of a cluster
    artifacts: Artifacts | None = None
    report: Reporter | None = None

    def build(self, settings: Settings, params: dict | None = None, on_epoch_end: Callable | None = None) -> tuple[Any, dict]:
        """The model and the hyper-parameters it is logged with (settings < params)."""
        module, _, name = self.model_class.partition(":")
        cls = getattr(importlib.import_module(module), name)
        hp = {key: getattr(settings, key) for key in self.defaults} | (params or {})
        return (cls(**hp, on_epoch_end=on_epoch_end) if self.epochs else cls(**hp)), hp


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "two_tower",
            "recsys.models.two_tower:TwoTowerModel",
            defaults=("embedding_dim", "epochs", "batch_size", "learning_rate", "seed"),
            epochs=True,
            artifacts=_keras_model,
        ),
        Family("popularity", "recsys.models.popularity:PopularityModel", candidate=False),
        Family(  # its own learning rate (model default): the shared 0.02 is too high for attention
            "seq_two_tower",
            "recsys.models.seq_two_tower:SeqTwoTowerModel",
            defaults=("embedding_dim", "epochs", "seed"),
            grid={"temperature": [0.05, 0.1], "learning_rate": [0.001, 0.003]},
            epochs=True,
            distributed=True,
            artifacts=_keras_weights,
        ),
        Family("ease", "recsys.models.ease:EASEModel", grid={"l2": [100.0, 300.0, 1000.0, 3000.0]}),
        Family(
            "ials",
            "recsys.models.ials:IALSModel",
            defaults=("seed",),
            grid={"factors": [64, 128], "regularization": [0.01, 0.1, 1.0], "alpha": [1.0, 10.0], "iterations": [15]},
        ),
        Family("item_knn", "recsys.models.item_knn:ItemKNNModel", grid={"neighbours": [50, 200], "shrink": [0.0, 10.0]}),
        Family(
            "two_stage",
            "recsys.models.two_stage:TwoStageModel",
            defaults=("seed",),
            grid={"candidates": [25, 50, 100]},  # N, each retriever's share of the union: the ranker's ceiling
            artifacts=_stage_two,
            report=_two_stage_report,
        ),
    )
}
NAMES = tuple(FAMILIES)
CANDIDATES = tuple(name for name, f in FAMILIES.items() if f.candidate)
TUNABLE = tuple(name for name, f in FAMILIES.items() if f.grid)
DISTRIBUTED = tuple(name for name, f in FAMILIES.items() if f.distributed)


def by_name(name: str) -> Family:
    """The family called `name`; an unknown name is refused with the valid ones."""
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(NAMES)}")
    return FAMILIES[name]
