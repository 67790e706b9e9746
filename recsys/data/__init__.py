"""Datasets: publishers' layouts → canonical tables, splits, and a synthetic generator."""

from recsys.data.ingest import Dataset, load_dataset

__all__ = ["Dataset", "load_dataset"]
