"""What a family tells about a fitted model beyond the shared metrics, as data: its parts and its findings.

A model made of models (the two-stage model's retrievers) names its parts, each with its
family, settings and export; a model that can explain itself (the ranker's feature importance)
gives files and metrics. The training step logs a Report to MLflow (the parts as nested runs):
the models stay free of MLflow, and a new family that has parts needs no new logging code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recsys.models.base import EmbeddingModel

RUNS_SUFFIX = "_runs"  # the tag `<role>_runs` (run, version) names the runs of a model's parts of that role


@dataclass(frozen=True)
class Part:
    """A fitted part of a model worth its own run, scored alone by the protocol the whole is scored by."""

    name: str  # unique within the model, e.g. "ease" or "trend"
    role: str  # what it does in the model, e.g. "retriever": the child run's `role` tag
    family: str
    params: dict
    model: EmbeddingModel


@dataclass(frozen=True)
class Report:
    """A family's parts (child runs), files (run artifacts: path → text) and metrics for its training run."""

    parts: tuple[Part, ...] = ()
    files: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
