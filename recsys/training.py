"""Fit a model on a split, log everything to MLflow, and register it as a model version.

One run holds the params, what the fit cost (`train_cpu_s`, `train_wall_s`, peak memory, a money
estimate; recsys.cost), per-epoch loss and validation metrics of the epoch-choosing fit, the training data as an
MLflow dataset input (with its digest), the GX result, a training-curve plot, the test
metrics of the shared protocol with bootstrap intervals, a metric@K plot, the model, and what
its family reports beyond that (recsys.reporting: a two-stage model's retrievers as nested runs,
its ranker's feature importance).
Every family is one run with the `model_family` tag, so runs compare side by side.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mlflow
import pandas as pd
from mlflow.data.meta_dataset import MetaDataset
from mlflow.models import infer_signature

from recsys import registry, reporting
from recsys.cost import Cost, Meter
from recsys.data.ingest import Dataset
from recsys.data.split import Split
from recsys.epochs import choose_epochs
from recsys.evaluation import BOOTSTRAP, evaluate, metric_curve
from recsys.models import families
from recsys.models.base import Recommender, titles_for
from recsys.schemas import TS_COL
from recsys.settings import Settings

PROTOCOL = "standard: configuration and epochs chosen on validation, refit on train+validation, scored on test"
SCHEMA_SAMPLE = 1000  # rows the logged dataset's schema is inferred from


def training_input(frame: pd.DataFrame, name: str) -> MetaDataset:
    """The training data as the run's dataset input: digest and source of the whole frame.

    MLflow's own PandasDataset infers its schema by visiting every value of every string
    column: 12-15 s for Online Retail's 300k rows, longer than fitting EASE. The column
    types are the same on a sample, so the schema is inferred from one.
    """
    data = mlflow.data.from_pandas(frame, name=name)
    schema = infer_signature(frame.head(SCHEMA_SAMPLE)).inputs
    return MetaDataset(data.source, name=name, digest=data.digest, schema=schema)


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced: where it is logged and how well it ranks the test set."""

    family: str
    run_id: str
    model_uri: str
    version: str | None
    metrics: dict[str, float]
    data_digest: str
    cost: Cost


def train(
    dataset: Dataset,
    split: Split,
    settings: Settings,
    family: str = "two_tower",
    validation: dict | None = None,
    register: bool = True,
    params: dict | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Fit `family` by the standard protocol, evaluate on split.test, log to MLflow, register if asked.

    The registered model is fit on train + validation and scored on test. A family that trains
    in epochs first fits on train alone, scoring validation after each epoch (the logged curves),
    and is then refit for the epoch count that scored best there: a test score never chose it.
    `on_epoch(epoch, metrics)` sees what each epoch of that first fit logged (loss, validation
    metrics): the CLI draws its progress bar from it.
    """
    kind = families.by_name(family)  # an unknown name fails here, before MLflow is touched
    registry.configure(settings)
    sample = {"max_users": settings.eval_max_users, "seed": settings.seed}  # the same users for every metric

    def on_epoch_end(epoch: int, step: dict[str, float]) -> None:
        mlflow.log_metrics(step, step=epoch)
        if on_epoch is not None:
            on_epoch(epoch, step)

    _, hp = kind.build(settings, params)
    train_data = training_input(split.train_val, dataset.name)
    with mlflow.start_run(run_name=f"{family}-{dataset.name}") as run:
        mlflow.set_tags({"model_family": family, "dataset": dataset.name, "data_digest": train_data.digest, "protocol": PROTOCOL})
        mlflow.log_params({"family": family, "dataset": dataset.name, **hp})
        mlflow.log_params({"n_train": len(split.train), "n_val": len(split.val), "n_test": len(split.test), "n_fit": len(split.train_val)})
        mlflow.log_input(train_data, context="training")
        if validation is not None:
            mlflow.log_dict(validation, "validation/gx_result.json")
            mlflow.set_tag("gx_result_id", validation.get("result_id", ""))
        with Meter() as meter:  # what this run cost: choosing the epochs and the refit
            fitted = fit_by_protocol(family, settings, params, split, dataset.items, on_epoch_end)
            exported = fitted.model.export()
        model, history = fitted.model, fitted.history
        if fitted.chosen_epochs is not None:
            mlflow.log_param("epochs_chosen", fitted.chosen_epochs)
        exported.item_titles = titles_for(dataset.items, exported.item_ids)  # served beside the ids
        cost = meter.cost(len(split.train_val), settings.price_per_core_hour, settings.price_per_gpu_hour)
        mlflow.log_metrics(cost.metrics())
        exported.meta.update(dataset=dataset.name, train_until=str(train_until(dataset)))
        mlflow.log_params({k: exported.meta[k] for k in ("strategy", "replicas") if k in exported.meta})  # where it trained
        metrics = evaluate(exported, split.test, bootstrap=BOOTSTRAP, **sample)
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        part_runs = {}  # the runs of the model's parts, by role (a two-stage model's retrievers)
        if kind.report is not None:
            part_runs = reporting.log_report(kind.report(model, split.test), lambda part: evaluate(part, split.test, **sample), metrics)
        _log_figure(_plot_at_k(metric_curve(exported, split.test, **sample)), "metric_at_k.png")
        with tempfile.TemporaryDirectory() as tmp:
            if history:
                _log_figure(_plot(history), "training_curve.png")
            extra = kind.artifacts(model, Path(tmp)) if kind.artifacts else {}
            model_uri = registry.log_model(exported, extra)
        version = None
        if register:
            tags = {"model_family": family, "data_digest": train_data.digest, "test_ndcg_at_10": f"{metrics['ndcg_at_10']:.5f}", **part_runs}
            if validation is not None:
                tags["gx_result_id"] = str(validation.get("result_id", ""))
            version = registry.register(model_uri, settings, run.info.run_id, tags)
    return TrainResult(family, run.info.run_id, model_uri, version, metrics, train_data.digest, cost)


@dataclass(frozen=True)
class Fitted:
    """The fits of the standard protocol: the refit model, and for epoch families the choice."""

    model: Recommender  # fit on train + validation
    selection: Recommender | None  # the fit on train that chose the epochs (epoch families only)
    chosen_epochs: int | None
    history: dict[str, list[float]]  # per epoch of the selection fit: loss and validation metrics


def fit_by_protocol(
    family: str,
    settings: Settings,
    params: dict | None,
    split: Split,
    items: pd.DataFrame,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> Fitted:
    """Choose the epoch count on validation (epoch families), then refit on train + validation.

    One function for every caller so that every task of a multi-worker cluster runs exactly the
    same fits as the chief: their collectives line up (the chief also logs, the others do not).
    The choice is deterministic: the replicas hold the same weights and score the same users.
    """
    selection, chosen, history = None, None, {}
    if families.by_name(family).epochs:  # the epoch count is chosen on validation, like any other setting
        selection, chosen, history = choose_epochs(family, settings, params, split, items, on_epoch)
        params = {**(params or {}), "epochs": chosen}
    model, _ = families.by_name(family).build(settings, params)
    model.fit(split.train_val, items)
    return Fitted(model, selection, chosen, history)


def train_until(dataset: Dataset) -> pd.Timestamp:
    """The end of the data a model saw: one second after its last interaction."""
    return dataset.interactions[TS_COL].max() + pd.Timedelta(seconds=1)


def _log_figure(fig, name: str) -> None:
    """Log a figure to the active run and free it (pyplot keeps every open figure alive)."""
    mlflow.log_figure(fig, name)
    plt.close(fig)


def _plot(history: dict[str, list[float]]):
    fig, axes = plt.subplots(1, len(history), figsize=(4 * len(history), 3), squeeze=False)
    for ax, (name, values) in zip(axes[0], history.items()):
        ax.plot(range(1, len(values) + 1), values, marker="o")
        ax.set_title(name)
        ax.set_xlabel("epoch")
    fig.tight_layout()
    return fig


def _plot_at_k(curves: dict[str, list[float]]):
    fig, ax = plt.subplots(figsize=(5, 3))
    for name, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, marker=".", label=f"{name}@K")
    ax.set_xlabel("K")
    ax.set_xticks(range(0, len(next(iter(curves.values()), [])) + 1, 5))
    ax.legend()
    fig.tight_layout()
    return fig
