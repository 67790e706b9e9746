"""Bless a registered candidate against the champion on the same split, then promote it.

The champion is re-evaluated on the candidate's test split (a retrain brings a new split),
so the comparison is like for like. Promotion moves the MLflow alias and imports the
version into the BentoML model store; a refused candidate changes nothing. The serving
ANN index is built and checked here too: a champion whose index misses exact search
(recall@100 < 0.99) would serve worse than it was evaluated, so it is refused. Both models'
costs go to the blessing too (training CPU seconds from their runs, ranking CPU µs per user
measured here, side by side), for the optional cost rule (`RECSYS_COST_AWARE_BLESSING`). Each
model's blessing metric gets its 95% bootstrap interval (the candidate's the same as its training
run logged), and the comparison is logged as a chart (recsys.blessing_chart) with its data.

With `RECSYS_PROMOTION_MODE=online` a blessed candidate does not take over at once: while there
is a champion it is deployed as its shadow and canary (recsys.challengers), and the canary flow
promotes or rolls it back on live traffic. The first champion has nobody to be judged against,
so it is promoted directly in either mode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import mlflow
import pandas as pd

from recsys import blessing_chart, challengers, registry
from recsys.blessing import BLESSING_METRIC, Blessing, CostRule, bless
from recsys.data.split import Split
from recsys.evaluation import BOOTSTRAP, evaluate
from recsys.models.base import EmbeddingModel
from recsys.models.popularity import PopularityModel
from recsys.models.two_stage import served
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
    deployed_as: list[str] = field(default_factory=list)  # online mode: the challenger roles it took instead


def bless_and_promote(settings: Settings, version: str, run_id: str, split: Split, items: pd.DataFrame) -> PromotionResult:
    """Make `version` champion if it is not worse than the current one (or beats popularity)."""
    registry.configure(settings)
    export = registry.download_export(settings, version)  # once: evaluated here, and searched if blessed
    model = EmbeddingModel.load(export)

    def score(recommender: EmbeddingModel) -> dict[str, float]:  # one protocol, the same sampled users, for all three
        start = time.process_time()  # the one metric's bootstrap is a small, equal share of every model's time
        metrics = evaluate(
            recommender,
            split.test,
            exclude=split.train_val,
            max_users=settings.eval_max_users,
            seed=settings.seed,
            bootstrap=BOOTSTRAP,
            intervals=(BLESSING_METRIC,),
        )
        return metrics | {"serve_cpu_us_per_user": (time.process_time() - start) / max(metrics["n_users"], 1) * 1e6}

    candidate = score(model) | _train_cost(run_id)
    families = {"candidate": model.meta["family"], "baseline": PopularityModel.family}
    current = registry.champion(settings)
    champion_metrics = None
    if current is not None and current != version:
        held = registry.load_version(settings, current)
        champion_metrics = score(held) | _train_cost(registry.version_run_id(settings, current))
        families["champion"] = held.meta["family"]
    baseline = None
    if champion_metrics is None:
        baseline = score(PopularityModel().fit(split.train_val, items).export())
    rule = CostRule(settings.blessing_max_cost_factor, settings.blessing_min_gain) if settings.cost_aware_blessing else None
    blessing = bless(candidate, champion_metrics, baseline, cost_rule=rule)
    searched = served.searched_beside(export) if blessing.blessed else None  # the vectors the service searches
    ann, report = index.build_checked(searched.item_vectors, searched.user_vectors) if searched is not None else (None, None)
    chart = blessing_chart.chart_of(blessing, families)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_dict(blessing.to_dict(), "blessing.json")
        mlflow.log_dict(chart.to_dict(), f"blessing/{blessing.metric}.json")
        mlflow.log_figure(blessing_chart.plot(chart), f"blessing/{blessing.metric}.png")
        mlflow.set_tags({"blessed": str(blessing.blessed).lower(), "blessing_rule": blessing.rule})
        if report is not None:
            mlflow.log_metric("ann_recall_at_100", report.recall)
    if not blessing.blessed:
        return PromotionResult(blessing, False, version, current, None)
    if not report.passed:
        return PromotionResult(blessing, False, version, current, None, report.recall)
    if settings.promotion_mode == "online" and current is not None:
        deployed = [challengers.deploy(settings, version, role, model, ann, report) for role in challengers.ROLES]
        return PromotionResult(blessing, False, version, current, deployed[-1].bento_tag, report.recall, [d.role for d in deployed])
    tag = registry.make_champion(settings, version, model, ann, report)
    return PromotionResult(blessing, True, version, current, tag, report.recall)


def _train_cost(run_id: str | None) -> dict[str, float]:
    """The training CPU seconds its run logged (recsys.training), if it logged them."""
    if not run_id:
        return {}
    value = mlflow.get_run(run_id).data.metrics.get("train_cpu_s")
    return {"train_cpu_s": value} if value is not None else {}
