"""Prefect flows: thin orchestration over the recsys library (one call per task)."""
