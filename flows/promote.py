"""Blessing and promotion as a flow: the candidate must not be worse than the champion."""

from __future__ import annotations

from dataclasses import asdict

from prefect import flow, get_run_logger, task

from recsys.data.ingest import load_dataset
from recsys.data.split import temporal_user_split
from recsys.promotion import bless_and_promote
from recsys.settings import get_settings


@task(retries=2, retry_delay_seconds=5)
def bless_and_export(version: str, run_id: str, dataset: str, train_until: str | None) -> dict:
    settings = get_settings()
    data = load_dataset(dataset, settings.shared_data_dir, train_until)
    return asdict(bless_and_promote(settings, version, run_id, temporal_user_split(data.interactions), data.items))


@flow(name="promote")
def promote(version: str, run_id: str, dataset: str = "online-retail", train_until: str | None = None) -> dict:
    """Give `version` the champion alias and export it to BentoML, if it is blessed (online mode: deploy it as shadow and canary)."""
    result = bless_and_export(version, run_id, dataset, train_until)
    if result["promoted"]:
        verdict = "promoted"
    elif result["deployed_as"]:
        verdict = f"deployed as {' and '.join(result['deployed_as'])} (online promotion: the canary flow decides)"
    else:
        verdict = "not promoted; the champion stays"
    get_run_logger().info("version %s %s: %s", version, verdict, "; ".join(result["blessing"]["reasons"]))
    return result
