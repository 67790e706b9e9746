"""Training as a flow: fit one model family, log the run to MLflow, register it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from prefect import flow, task

from recsys.data.ingest import load_dataset
from recsys.data.split import temporal_user_split
from recsys.models import families
from recsys.settings import get_settings
from recsys.training import train

#: The model families as a type, so the Prefect UI's run form offers them as a choice.
ModelFamily = Literal[families.NAMES]  # type: ignore[valid-type]


@task(retries=2, retry_delay_seconds=5)
def fit_and_log(dataset: str, train_until: str | None, family: str, epochs: int | None, validation: dict | None, params: dict | None = None) -> dict:
    settings = get_settings()
    data = load_dataset(dataset, settings.shared_data_dir, train_until)
    params = (params or {}) | ({"epochs": epochs} if epochs else {})
    result = train(data, temporal_user_split(data.interactions), settings, family, validation, families.by_name(family).candidate, params or None)
    return asdict(result)


@flow(name="train")
def train_model(
    dataset: str = "online-retail",
    train_until: str | None = None,
    family: ModelFamily = "two_tower",
    epochs: int | None = None,
    validation: dict | None = None,
    params: dict | None = None,
) -> dict:
    """Train `family` on the data before `train_until`; candidates are registered (popularity, the baseline, is only logged).

    Args:
        dataset: online-retail, ml-100k, ml-latest-small, or a .csv/.parquet path
        train_until: only interactions before this time (ISO date); empty for all
        family: the model family to fit
        epochs: training epochs (neural families); empty for the configured default
        validation: the GX gate's result to attach to the run, if any
        params: the family's hyper-parameters over its defaults, e.g. {"retrievers": {"seq_two_tower": {"epochs": 3}}}
            puts the sequence two-tower in a two-stage union; empty for the defaults
    """
    return fit_and_log(dataset, train_until, family, epochs, validation, params)
