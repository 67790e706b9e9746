"""Monitoring as a flow: drift of live traffic against the training period, and the decision.

A decision to retrain is emitted as the Prefect event `recsys.drift.detected`; the retrain
deployment (flows/serve.py) has a trigger on it, so the server starts the retrain itself.
"""

from __future__ import annotations

from dataclasses import asdict

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from recsys import registry
from recsys.data.ingest import load_dataset
from recsys.monitoring.policy import decide
from recsys.monitoring.reports import DriftResult, drift_report, read_request_log, request_features
from recsys.monitoring.traffic import reference_records, window_end
from recsys.settings import get_settings

DRIFT_EVENT = "recsys.drift.detected"


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def reference_window(dataset: str):  # noqa: ANN201
    settings = get_settings()
    current = registry.champion(settings)
    if current is None:
        raise RuntimeError("no champion to monitor yet: run the pipeline first")
    model = registry.load_version(settings, current)
    cut = model.meta["train_until"]
    data = load_dataset(dataset, settings.shared_data_dir, cut)
    return request_features(reference_records(model, data.interactions, cut))


@task(cache_policy=NO_CACHE)
def compare(reference, window: int) -> tuple[DriftResult, str]:  # noqa: ANN001
    settings = get_settings()
    records = read_request_log(settings.request_log, last_n=window)
    html = settings.reports_dir / f"drift-{window_end(records).replace(':', '')}.html"
    result = drift_report(reference, request_features(records), html, settings.evidently_workspace)
    return result, window_end(records)


@flow(name="monitor")
def monitor(dataset: str = "online-retail", window: int | None = None, threshold: float | None = None) -> dict:
    """Compare the latest `window` requests with the reference; emit a retrain event on drift."""
    settings = get_settings()
    logger = get_run_logger()
    result, end = compare(reference_window(dataset), window or settings.window_size)
    decision = decide(result, threshold if threshold is not None else settings.drift_threshold)
    logger.info("drift share %.2f (%s); report: %s", result.drift_share, ", ".join(result.drifted_columns), result.html_path)
    logger.info("decision: %s (%s)", "retrain" if decision.retrain else "no retrain", "; ".join(decision.reasons))
    registry.log_monitoring_run(
        settings, result.html_path, {"drift_share": result.drift_share, "n_current": result.n_current},
        {"decision": "retrain" if decision.retrain else "none"},
    )  # fmt: skip
    if decision.retrain:
        emit_event(
            event=DRIFT_EVENT,
            resource={"prefect.resource.id": f"recsys.model.{settings.registered_model}"},
            payload={
                "dataset": dataset,
                "window_end": end,
                "drift_share": result.drift_share,
                "reason": "; ".join(decision.reasons),
            },
        )
    return {"drift": {**asdict(result), "html_path": str(result.html_path)}, "retrain": decision.retrain,
            "reasons": decision.reasons, "window_end": end}  # fmt: skip
