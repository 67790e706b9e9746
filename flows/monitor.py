"""Monitoring as a flow: drift of live traffic against the training period, and the decision.

The guardrails (recsys.monitoring.policy) decide, on drift and on the online hit rate from
the service's feedback events; only a window that would retrain pays for
counting the new data and running the GX gate on it. A decision to retrain is emitted as the
Prefect event `recsys.drift.detected`; the retrain deployment (flows/serve.py) has a trigger
on it, so the Prefect server starts the retrain itself.
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from recsys import registry
from recsys.data.ingest import load_dataset
from recsys.data.split import count_between
from recsys.models.base import EmbeddingModel
from recsys.models.two_stage import served
from recsys.monitoring.drift import DriftResult, drift_report
from recsys.monitoring.features import add_cost, add_coverage, add_embedding_drift, request_features, served_centroid
from recsys.monitoring.policy import NewData, PolicyConfig, WindowCheck, judge_window
from recsys.monitoring.request_log import online_hits, read_request_log, window_end
from recsys.settings import get_settings
from recsys.simulation.traffic import reference_records
from recsys.validation import validate_dataset

DRIFT_EVENT = "recsys.drift.detected"


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def reference_window(dataset: str):
    settings = get_settings()
    current = registry.champion(settings)
    if current is None:
        raise RuntimeError("no champion to monitor yet: run the pipeline first")
    export = registry.download_export(settings, current)  # once: the lists are ranked from it, the drift measured beside it
    model, searched = EmbeddingModel.load(export), served.searched_beside(export)
    cut = model.meta["train_until"]
    data = load_dataset(dataset, settings.shared_data_dir, cut)
    records = reference_records(model, data.interactions, cut)
    centroid = served_centroid(records, searched.item_index, searched.item_vectors)
    reference = add_embedding_drift(add_coverage(request_features(records), records, model.n_items), centroid, centroid)
    return reference, cut, current, model, searched, centroid


@task(cache_policy=NO_CACHE)
def compare(reference, window: int, model, searched, reference_centroid) -> tuple[DriftResult, str, float | None]:
    """Drift of the latest `window` requests against the reference, with their online quality.

    The embedding drift is measured in `searched`, the vectors the service searches: a two-stage
    model's export has identity item vectors (a score table), whose centroid would only count items.
    """
    settings = get_settings()
    records = read_request_log(settings.request_log, last_n=window)
    hits = online_hits(records, settings.events_log)
    if hits is not None:
        records["hit"] = hits
    end = window_end(records)
    html = settings.reports_dir / f"drift-{end.replace(':', '')}.html"
    current = add_cost(add_coverage(request_features(records), records, model.n_items), settings.price_per_core_hour)
    centroid = served_centroid(records, searched.item_index, searched.item_vectors)
    current = add_embedding_drift(current, centroid, reference_centroid)
    result = drift_report(reference, current, html, settings.evidently_workspace, timestamp=datetime.fromisoformat(end))
    return result, end, None if hits is None else float(hits.mean())


@task(cache_policy=NO_CACHE)
def new_data_check(dataset: str, cut: str, end: str) -> NewData:
    """The retrain data: interactions since the champion's cut, and the GX gate on it."""
    settings = get_settings()
    data = load_dataset(dataset, settings.shared_data_dir, end)
    gate = validate_dataset(data.interactions, data.items, settings.gx_dir)
    return NewData(count_between(data.interactions, cut, end), gate.success, str(gate.docs_index))


@flow(name="monitor")
def monitor(dataset: str = "online-retail", window: int | None = None) -> WindowCheck:
    """Compare the latest `window` requests with the reference; emit a retrain event on drift.

    Args:
        dataset: the dataset the champion was trained on
        window: how many of the latest requests to judge; empty for the configured size
    """
    settings = get_settings()
    logger = get_run_logger()
    reference, cut, version, model, searched, reference_centroid = reference_window(dataset)
    result, end, hit_rate = compare(reference, window or settings.window_size, model, searched, reference_centroid)
    check = judge_window(
        result,
        PolicyConfig.from_settings(settings),
        settings.policy_history,
        end,
        hit_rate,
        version,
        lambda: new_data_check(dataset, cut, end),
    )
    if check.new_data is not None:
        new = check.new_data
        logger.info("new data: %d interactions since %s; GX gate %s (%s)", new.interactions, cut, "passed" if new.gate_passed else "FAILED", new.docs)
    verdict = "retrain" if check.retrain else "no retrain"
    logger.info("drift share %.2f; report: %s", result.drift_share, result.html_path)
    logger.info("decision: %s (%s)", verdict, "; ".join(check.decision.reasons))
    metrics = {"drift_share": result.drift_share, "n_current": result.n_current}
    if hit_rate is not None:
        metrics["online_hit_rate"] = hit_rate
    registry.log_monitoring_run(settings, result.html_path, metrics, {"decision": verdict, "blocked_by": ",".join(check.decision.blocked_by)})
    if check.retrain:
        emit_event(
            event=DRIFT_EVENT,
            resource={"prefect.resource.id": f"recsys.model.{settings.registered_model}"},
            payload={"dataset": dataset, "window_end": end, "drift_share": result.drift_share, "reason": "; ".join(check.decision.reasons)},
        )
    return check
