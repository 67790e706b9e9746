"""A failed GX gate stops the pipeline flow before training, and nothing downstream changes."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from recsys import registry
from recsys.data.ingest import Dataset
from recsys.settings import Settings
from recsys.validation import DataValidationError


def _write(data: Dataset, folder: Path, name: str) -> Path:
    path = folder / f"{name}.parquet"
    data.interactions.to_parquet(path)
    data.items.to_parquet(folder / f"{name}.items.parquet")
    return path


def test_corrupt_data_stops_the_pipeline_and_keeps_the_champion(prefect_api, settings: Settings, synthetic: Dataset, tmp_path: Path) -> None:
    from flows.pipeline import pipeline

    api, _ = prefect_api
    good = _write(synthetic, tmp_path, "good")
    corrupt_rows = synthetic.interactions.copy()
    corrupt_rows.loc[:9, "user_id"] = None
    corrupt_rows.loc[10:19, "weight"] = -1.0
    bad = _write(Dataset("bad", corrupt_rows, synthetic.items), tmp_path, "bad")

    with temporary_settings({PREFECT_API_URL: api}):
        first = pipeline(dataset=str(good))
        assert first["promotion"]["promoted"]
        registry.configure(settings)
        runs_before = len(mlflow.search_runs(search_all_experiments=True))
        with pytest.raises(DataValidationError) as failure:
            pipeline(dataset=str(bad))
    message = str(failure.value)
    assert "expect_column_values_to_not_be_null(user_id)" in message
    assert "weight" in message and "index.html" in message
    assert len(mlflow.search_runs(search_all_experiments=True)) == runs_before  # nothing trained
    assert registry.champion(settings) == first["candidate"]["version"]
    assert len(mlflow.MlflowClient().search_model_versions("name='recsys'")) == 1


def test_pipeline_on_a_store_validates_each_new_month_once_and_stops_at_a_corrupt_one(
    prefect_api, settings: Settings, synthetic: Dataset, tmp_path: Path
) -> None:
    from flows.pipeline import pipeline
    from recsys.data import store

    api, _ = prefect_api
    root = tmp_path / "shop"
    store.write_items(root, synthetic.items)
    months = synthetic.interactions["timestamp"].dt.strftime("%Y-%m")
    store.append(root, synthetic.interactions[months < months.max()])
    with temporary_settings({PREFECT_API_URL: api}):
        first = pipeline(dataset=str(root))
        assert first["validation"]["success"] and first["promotion"]["promoted"]
        assert first["validation"]["statistics"]["store"]["files_skipped"] == 0
        checked = first["validation"]["statistics"]["store"]["files_checked"]
        assert checked == len(store.snapshot(root).files) >= 3

        last = synthetic.interactions[months == months.max()].copy()
        last.loc[last.index[:5], "weight"] = -1.0
        store.append(root, last)  # a corrupt new month
        registry.configure(settings)
        runs_before = len(mlflow.search_runs(search_all_experiments=True))
        with pytest.raises(DataValidationError) as failure:
            pipeline(dataset=str(root))
    message = str(failure.value)
    assert f"month={months.max()}/" in message and "expect_column_values_to_be_between(weight)" in message
    assert "index.html" in message
    assert len(mlflow.search_runs(search_all_experiments=True)) == runs_before  # nothing trained
    assert registry.champion(settings) == first["candidate"]["version"]
    ledger = (root / "validation.json").read_text()
    assert f"month={months.max()}" not in ledger and ledger.count("month=") == checked  # good months stay vouched for
