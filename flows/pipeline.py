"""The pipeline: validate → train (popularity baseline and two-tower) → bless and promote.

It is also the retrain deployment: a drift event starts it with the new data window.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.promote import promote
from flows.train import train_model
from flows.validate import validate


@flow(name="pipeline")
def pipeline(
    dataset: str = "online-retail", train_until: str | None = None, epochs: int | None = None, reason: str = "manual"
) -> dict:
    """Gate the data, train, and promote the candidate if it is blessed."""
    logger = get_run_logger()
    logger.info("pipeline on %s up to %s (reason: %s)", dataset, train_until or "the end", reason)
    validation = validate(dataset, train_until)
    baseline = train_model(dataset, train_until, "popularity", None, validation)
    candidate = train_model(dataset, train_until, "two_tower", epochs, validation)
    result = promote(candidate["version"], candidate["run_id"], dataset, train_until)
    return {"validation": validation, "baseline": baseline["metrics"], "candidate": candidate, "promotion": result}
