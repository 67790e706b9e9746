"""The pipeline: validate → train (popularity baseline and a candidate family) → bless and promote.

It is also the retrain deployment: a drift event starts it with the new data window.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.promote import promote
from flows.train import train_model
from flows.validate import validate
from recsys.settings import CandidateFamily


@flow(name="pipeline")
def pipeline(
    dataset: str = "online-retail",
    train_until: str | None = None,
    epochs: int | None = None,
    reason: str = "manual",
    family: CandidateFamily = "two_tower",
) -> dict:
    """Gate the data, train, and promote the candidate if it is blessed.

    Args:
        dataset: online-retail, ml-100k, ml-latest-small, or a .csv/.parquet path
        train_until: only interactions before this time (ISO date); empty for all
        epochs: training epochs of the neural families; empty for the configured default
        reason: why this run happens (a drift event fills it in)
        family: the candidate model family, trained, blessed and promoted
    """
    logger = get_run_logger()
    logger.info("pipeline of %s on %s up to %s (reason: %s)", family, dataset, train_until or "the end", reason)
    validation = validate(dataset, train_until)
    baseline = train_model(dataset, train_until, "popularity", None, validation)
    candidate = train_model(dataset, train_until, family, epochs, validation)
    result = promote(candidate["version"], candidate["run_id"], dataset, train_until)
    return {"validation": validation, "baseline": baseline["metrics"], "candidate": candidate, "promotion": result}
