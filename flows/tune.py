"""Tuning as a flow: a small grid search of one model family, one nested MLflow run per trial."""

from __future__ import annotations

from typing import Literal

from prefect import flow, task

from recsys.data.ingest import load_dataset
from recsys.data.split import temporal_user_split
from recsys.models.families import TUNABLE
from recsys.settings import get_settings
from recsys.tuning import tune

#: The families with a search space, offered as a choice in the Prefect UI's run form.
TunableFamily = Literal[TUNABLE]  # type: ignore[valid-type]


@task
def search_grid(dataset: str, family: str, space: dict[str, list] | None) -> dict:
    settings = get_settings()
    data = load_dataset(dataset, settings.shared_data_dir)
    tuned = tune(data, temporal_user_split(data.interactions), settings, family, space)
    return {
        "best": tuned.best.params,
        "best_score": tuned.best.score,
        "test_ndcg_at_10": tuned.test["ndcg_at_10"],
        "trials": [{"params": t.params, "score": t.score} for t in tuned.trials],
    }


@flow(name="tune")
def tune_model(dataset: str = "ml-100k", family: TunableFamily = "ease", space: dict[str, list] | None = None) -> dict:
    """Grid-search `family` on the validation split of `dataset`; the best config is tagged, refit
    on train + validation and scored on test (the standard protocol)."""
    return search_grid(dataset, family, space)
