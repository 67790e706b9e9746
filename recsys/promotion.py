"""Bless a registered candidate against the champion on the same split, then promote it.

The champion is re-evaluated on the candidate's test split (a retrain brings a new split),
so the comparison is like for like. Promotion moves the MLflow alias and imports the
version into the BentoML model store; a refused candidate changes nothing. The serving
ANN index is built and checked here too: a champion whose index misses exact search
(recall@100 < 0.99) would serve worse than it was evaluated, so it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import pandas as pd

from recsys import registry
from recsys.blessing import Blessing, bless
from recsys.data.split import Split
from recsys.evaluation import evaluate
from recsys.models.base import EmbeddingModel
from recsys.models.popularity import PopularityModel
from recsys.serving import index
from recsys.settings import Settings


@dataclass(frozen=True)
class PromotionResult:
    blessing: Blessing
    promoted: bool
    version: str
    previous_champion: str | None
    bento_tag: str | None
    index_recall: float | None = None  # ANN recall@100 against exact search, when checked


def bless_and_promote(settings: Settings, version: str, run_id: str, split: Split, items: pd.DataFrame) -> PromotionResult:
    """Make `version` champion if it is not worse than the current one (or beats popularity)."""
    registry.configure(settings)
    model = registry.load_version(settings, version)

    def score(recommender: EmbeddingModel) -> dict[str, float]:  # one protocol, the same sampled users, for all three
        return evaluate(recommender, split.test, exclude=split.train_val, max_users=settings.eval_max_users, seed=settings.seed)

    candidate = score(model)
    current = registry.champion(settings)
    champion_metrics = None
    if current is not None and current != version:
        champion_metrics = score(registry.load_version(settings, current))
    baseline = None
    if champion_metrics is None:
        baseline = score(PopularityModel().fit(split.train_val, items).export())
    blessing = bless(candidate, champion_metrics, baseline)
    ann, report = index.build_checked(model.item_vectors, model.user_vectors) if blessing.blessed else (None, None)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_dict(blessing.to_dict(), "blessing.json")
        mlflow.set_tag("blessed", str(blessing.blessed).lower())
        if report is not None:
            mlflow.log_metric("ann_recall_at_100", report.recall)
    if not blessing.blessed:
        return PromotionResult(blessing, False, version, current, None)
    if not report.passed:
        return PromotionResult(blessing, False, version, current, None, report.recall)
    tag = registry.export_to_bentoml(settings, version, ann, report)
    registry.set_champion(settings, version)
    return PromotionResult(blessing, True, version, current, tag, report.recall)
