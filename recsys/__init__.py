"""recsys: an MLOps-managed recommender library (no Prefect in here; flows/ orchestrate it)."""

__version__ = "0.1.0"
