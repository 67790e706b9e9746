"""The pipeline: validate → train (popularity baseline and a candidate family) → bless and promote.

It is also the retrain deployment: a drift event starts it with the new data window.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from flows.promote import promote
from flows.train import train_model
from flows.validate import validate
from recsys.data.ingest import as_store
from recsys.settings import CandidateFamily, get_settings


@task
def dataset_store(dataset: str) -> str:
    """Where every later task reads the data: a dataset store (a named dataset is ingested once)."""
    settings = get_settings()
    snap = as_store(dataset, settings.shared_data_dir, settings.datasets_dir)
    if snap is None:
        return dataset  # a plain file: read (and gated) as it is
    get_run_logger().info("dataset store %s: %d interactions in %d files, digest %s", snap.root, snap.rows, len(snap.files), snap.digest)
    return str(snap.root)


@flow(name="pipeline")
def pipeline(
    dataset: str = "online-retail",
    train_until: str | None = None,
    epochs: int | None = None,
    reason: str = "manual",
    family: CandidateFamily | None = None,
) -> dict:
    """Gate the data, train, and promote the candidate if it is blessed.

    Args:
        dataset: online-retail, ml-100k, ml-latest-small, a dataset store folder, or a .csv/.parquet path
        train_until: only interactions before this time (ISO date); empty for all
        epochs: most training epochs of the neural families (the best on validation is refit); empty for the default
        reason: why this run happens (a drift event fills it in)
        family: the candidate model family, trained, blessed and promoted; empty for RECSYS_CANDIDATE_FAMILY (two_stage)
    """
    family = family or get_settings().candidate_family
    logger = get_run_logger()
    logger.info("pipeline of %s on %s up to %s (reason: %s)", family, dataset, train_until or "the end", reason)
    dataset = dataset_store(dataset)  # tasks then read only the months and columns they need
    validation = validate(dataset, train_until)
    baseline = train_model(dataset, train_until, "popularity", None, validation)
    candidate = train_model(dataset, train_until, family, epochs, validation)
    result = promote(candidate["version"], candidate["run_id"], dataset, train_until)
    return {"validation": validation, "baseline": baseline["metrics"], "candidate": candidate, "promotion": result}
