"""The validation gate as a flow: a failed GX suite stops everything downstream."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from prefect import flow, get_run_logger, task

from recsys.data.ingest import load_dataset
from recsys.data.store import is_store, snapshot
from recsys.settings import get_settings
from recsys.validation import ValidationResult, gate, validate_dataset
from recsys.validation_store import validate_store


@task
def run_suites(dataset: str, train_until: str | None) -> ValidationResult:
    settings = get_settings()
    if is_store(Path(dataset)):  # new files only; the ones that passed before are in the store's ledger
        checked = validate_store(snapshot(Path(dataset)), settings.gx_dir / "store", engine=settings.gx_engine)
        return checked.as_result()
    data = load_dataset(dataset, settings.shared_data_dir, train_until)
    return validate_dataset(data.interactions, data.items, settings.gx_dir, engine=settings.gx_engine)


@flow(name="validate")
def validate(dataset: str = "online-retail", train_until: str | None = None) -> dict:
    """Run the GX suites on the dataset; fail, naming the failed expectations, if any fails."""
    result = run_suites(dataset, train_until)
    get_run_logger().info("GX data docs: %s", result.docs_index)
    gate(result)
    return {**asdict(result), "docs_index": str(result.docs_index)}
