"""A small hyper-parameter search by the standard protocol: choose on validation, refit, score on test.

The search loop (`search`) is plain Python so the benchmark reuses it without MLflow; `tune`
wraps it in a parent run with one nested run per trial and records the best config on the
parent (tag `best_config`, params `best_<name>`). Selection uses validation only (its window is
cut like the test's, `recsys.data.split`); then `refit_score` fits the chosen config on train +
validation and scores it on test, once, so the figure a user reads is the one a reviewer reruns.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import mlflow

from recsys import registry
from recsys.data.ingest import Dataset
from recsys.data.split import Split
from recsys.evaluation import evaluate
from recsys.models import families
from recsys.models.two_stage.reuse import reusing
from recsys.settings import Settings

METRIC = "ndcg_at_10"


@dataclass(frozen=True)
class Trial:
    """One config, its validation metrics and how long it took to fit and score."""

    params: dict
    metrics: dict[str, float]
    seconds: float

    @property
    def score(self) -> float:
        return self.metrics[METRIC]


def grid(space: dict[str, list]) -> list[dict]:
    """Every combination of the listed values, in a stable order."""
    names = sorted(space)
    return [dict(zip(names, values)) for values in itertools.product(*(space[n] for n in names))]


def search(configs: list[dict], objective: Callable[[dict], dict[str, float]], on_trial: Callable[[Trial], None] | None = None) -> list[Trial]:
    """Score each config with `objective` (validation metrics) sequentially; best first."""
    trials = []
    for params in configs:
        start = time.perf_counter()
        trial = Trial(params, objective(params), time.perf_counter() - start)
        if on_trial is not None:
            on_trial(trial)
        trials.append(trial)
    return sorted(trials, key=lambda t: -t.score)


def validation_objective(family: str, dataset: Dataset, split: Split, settings: Settings) -> Callable[[dict], dict[str, float]]:
    """Fit `family` with a config on split.train and score it on split.val."""
    kind = families.by_name(family)

    def objective(params: dict) -> dict[str, float]:
        model, _ = kind.build(settings, params)
        return evaluate(model.fit(split.train, dataset.items, split.val).export(), split.val, ks=(10, 20))

    return objective


def refit_score(family: str, params: dict, dataset: Dataset, split: Split, settings: Settings, bootstrap: int = 0) -> dict[str, float]:
    """Fit `family` with the chosen config on train + validation; its metrics on test."""
    model, _ = families.by_name(family).build(settings, params)
    return evaluate(model.fit(split.train_val, dataset.items).export(), split.test, bootstrap=bootstrap)


@dataclass(frozen=True)
class Tuned:
    """A search's trials (best first) and the best config's test metrics after the refit."""

    trials: list[Trial]
    test: dict[str, float]

    @property
    def best(self) -> Trial:
        return self.trials[0]


def tune(dataset: Dataset, split: Split, settings: Settings, family: str, space: dict[str, list] | None = None) -> Tuned:
    """Grid-search `family` on validation, refit the best on train + validation and score it on test.

    A parent MLflow run holds the choice and its test score (`refit_test_ndcg_at_10`), with
    one nested run per trial.
    """
    space = space or families.by_name(family).grid  # the family's default search space
    registry.configure(settings)
    configs = grid(space)

    def log_trial(trial: Trial) -> None:
        with mlflow.start_run(run_name=f"{family}-trial", nested=True):
            mlflow.set_tags({"model_family": family, "dataset": dataset.name, "tuning": "trial"})
            mlflow.log_params(trial.params)
            mlflow.log_metrics({f"val_{k}": v for k, v in trial.metrics.items()} | {"fit_seconds": trial.seconds})

    with mlflow.start_run(run_name=f"tune-{family}-{dataset.name}"):
        mlflow.set_tags({"model_family": family, "dataset": dataset.name, "tuning": "parent", "search_space": json.dumps(space)})
        with reusing():  # a two-stage grid fits its retrievers once per window
            trials = search(configs, validation_objective(family, dataset, split, settings), log_trial)
        best = trials[0]
        mlflow.set_tag("best_config", json.dumps(best.params, sort_keys=True))
        mlflow.log_params({f"best_{k}": v for k, v in best.params.items()} | {"n_trials": len(trials)})
        mlflow.log_metric(f"best_val_{METRIC}", best.score)
        refit = refit_score(family, best.params, dataset, split, settings)
        mlflow.log_metrics({f"refit_test_{k}": v for k, v in refit.items()})
    return Tuned(trials, refit)
