"""MLflow logging, registration and aliases; export of the champion (and challengers) to the BentoML store.

A registered model version is an MLflow pyfunc whose artifact `export/` holds the model's
EmbeddingModel (npz + json); a two-stage model's also holds `two_stage/`, what the service ranks it
from (recsys.models.two_stage.served). Promotion is an alias change (`champion`), never a retrain.
Challengers (shadow, canary) are deployed and withdrawn by recsys.challengers on top of these.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from recsys import platform
from recsys.models.base import EmbeddingModel
from recsys.models.report import RUNS_SUFFIX
from recsys.models.two_stage import served
from recsys.settings import Settings

if TYPE_CHECKING:
    import faiss
    from bentoml._internal.models import ModelStore

    from recsys.serving.index import IndexReport

EXPORT_ARTIFACT = "export"


class RecsysPyfunc(mlflow.pyfunc.PythonModel):
    """Top-k recommendations from an EmbeddingModel, for `mlflow models serve` and batch use.

    A two-stage model is ranked per request from its stage-two artifact, as the service ranks
    it (`StageTwo`), rather than read from its export's score table, frozen at training time.
    """

    LOADED = ("model", "stage_two")

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        stage_two = context.artifacts.get(served.ARTIFACT)
        self.stage_two = served.StageTwo.load(Path(stage_two)) if stage_two else None
        self.model = self.stage_two.model if self.stage_two is not None else EmbeddingModel.load(Path(context.artifacts[EXPORT_ARTIFACT]))

    def __getstate__(self) -> dict:
        """Pickle without what was loaded: MLflow pickles this object after trying the input
        example on it, and the arrays (user ids among them) belong in the artifacts alone, where an
        erasure finds them (recsys.privacy)."""
        return {name: value for name, value in self.__dict__.items() if name not in self.LOADED}

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from recsys.serving.logic import recommend_one

        rows = [recommend_one(self.model, str(r.user_id), int(getattr(r, "k", 10)), stage_two=self.stage_two) for r in model_input.itertuples()]
        return pd.DataFrame(
            {
                "user_id": model_input["user_id"].astype(str),
                "items": [[i for i, _ in r.items] for r in rows],
                "scores": [[s for _, s in r.items] for r in rows],
                "fallback": [r.fallback for r in rows],
            }
        )


# Model development, not GenAI: the MLflow UI then opens the experiment on its training runs
# instead of the GenAI overview and its pop-ups.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def configure(settings: Settings) -> MlflowClient:
    """Point MLflow at the configured tracking server or database; return a client.

    A tracking server that does not answer fails here, naming it, before any run starts.
    """
    settings.home.mkdir(parents=True, exist_ok=True)
    server = settings.tracking_uri.startswith(("http://", "https://"))
    if server:
        platform.require_healthy("MLflow", settings.tracking_uri, f"{settings.tracking_uri.rstrip('/')}/health")
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    experiment = mlflow.get_experiment_by_name(settings.experiment)
    if experiment is None:
        # A server picks the artifact store itself (--artifacts-destination); a database needs it named.
        location = None if server else settings.artifacts_destination
        mlflow.create_experiment(settings.experiment, artifact_location=location, tags=EXPERIMENT_KIND)
    elif any(experiment.tags.get(k) != v for k, v in EXPERIMENT_KIND.items()):  # made before the tag existed
        for key, value in EXPERIMENT_KIND.items():
            MlflowClient().set_experiment_tag(experiment.experiment_id, key, value)
    mlflow.set_experiment(settings.experiment)
    return MlflowClient()


def log_model(model: EmbeddingModel, extra_files: dict[str, Path] | None = None) -> str:
    """Log `model` as a pyfunc in the active run; return its model URI."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = model.save(Path(tmp) / EXPORT_ARTIFACT)
        artifacts = {EXPORT_ARTIFACT: str(folder), **{k: str(v) for k, v in (extra_files or {}).items()}}
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=RecsysPyfunc(),
            artifacts=artifacts,
            input_example=pd.DataFrame({"user_id": [str(model.user_ids[0])], "k": [10]}),
            pip_requirements=[],
        )
    return info.model_uri


def register(model_uri: str, settings: Settings, run_id: str, tags: dict[str, str]) -> str:
    """Register the logged model as a new version of the registered model; return the version.

    The version and all its tags are created in one request, so a server lost mid-way never
    leaves a version without its run_id.
    """
    version = mlflow.register_model(model_uri, settings.registered_model, tags={**tags, "run_id": run_id})
    return str(version.version)


def champion(settings: Settings) -> str | None:
    """The version number holding the champion alias, or None before the first promotion."""
    try:
        mv = MlflowClient().get_model_version_by_alias(settings.registered_model, settings.champion_alias)
    except MlflowException:
        return None
    return str(mv.version)


def version_run_id(settings: Settings, version: str) -> str | None:
    """The training run that produced a registered version (None if it was registered without one)."""
    return MlflowClient().get_model_version(settings.registered_model, version).run_id or None


def load_version(settings: Settings, version: str) -> EmbeddingModel:
    """Download a registered version's EmbeddingModel (arrays only: no pickle is loaded)."""
    return EmbeddingModel.load(download_export(settings, version))


def load_searched(settings: Settings, version: str) -> EmbeddingModel:
    """The vectors the service searches for a registered version, which its ANN index is built on.

    The export's, except for a two-stage model, whose export is a score table over identity
    item vectors: the service searches its iALS export (recsys.models.two_stage.served).
    """
    return served.searched_beside(download_export(settings, version))


def download_export(settings: Settings, version: str) -> Path:
    """Download a registered version; return its `export` folder (what a family logs beside it sits next to it)."""
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{settings.registered_model}/{version}"))
    return local / "artifacts" / EXPORT_ARTIFACT


def set_champion(settings: Settings, version: str) -> None:
    MlflowClient().set_registered_model_alias(settings.registered_model, settings.champion_alias, version)


def make_champion(settings: Settings, version: str, model: EmbeddingModel, ann: faiss.Index | None, report: IndexReport | None) -> str:
    """The one promotion path (blessing, erasure, a promoted canary): export to the store, then move the alias.

    In that order, so the alias never names a version the store lacks. Returns the BentoML tag.
    """
    tag = export_to_bentoml(settings, version, model, ann, report)
    set_champion(settings, version)
    return tag


def bento_name(settings: Settings, alias: str | None = None) -> str:
    """The BentoML store's name for the champion (None) or a challenger's alias (`Settings.challenger_model`)."""
    return settings.registered_model if alias is None else settings.challenger_model(alias).split(":")[0]


def export_to_bentoml(
    settings: Settings,
    version: str,
    model: EmbeddingModel,
    ann: faiss.Index | None = None,
    report: IndexReport | None = None,
    alias: str | None = None,
    extra: dict[str, str] | None = None,
) -> str:
    """Copy a registered version into the BentoML model store; return the BentoML tag.

    `model` is that version as the caller already loaded it: it names the example ids that the
    service's Swagger UI offers, without reading the arrays again. A challenger (`alias`, with
    its `extra` metadata) goes under its own name (`bento_name`), where the service looks for it.

    The store is `model_store(settings)`. The layout matches `bentoml.mlflow.import_model`:
    the MLflow model folder under `mlflow_model/`; the checked ANN index, when given, sits
    beside it (faiss format) so the service loads it from the store and nowhere else.
    """
    import bentoml

    mv = MlflowClient().get_model_version(settings.registered_model, version)
    metadata = {
        "version": version,
        "run_id": mv.run_id or "",
        "data_digest": mv.tags.get("data_digest", ""),
        "gx_result_id": mv.tags.get("gx_result_id", ""),
        "promoted_at": datetime.now(UTC).isoformat(),
        "family": mv.tags.get("model_family", ""),
    }
    metadata.update(part_runs(mv.tags))
    if report is not None:
        metadata.update(index_kind=report.kind, index_recall_at_100=report.recall, index_ef_search=report.ef_search)
    metadata.update(_example_ids(model))
    metadata.update(extra or {})
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(f"models:/{settings.registered_model}/{version}", dst_path=tmp)
        with bentoml.models.create(
            bento_name(settings, alias),
            labels={"version": version, "stage": alias or "champion"},
            metadata=metadata,
            _model_store=model_store(settings),
        ) as stored:
            shutil.copytree(local, stored.path_of("mlflow_model"))
            if ann is not None:
                from recsys.serving import index

                index.write(ann, Path(stored.path))
    return str(stored.tag)


def part_runs(tags: dict[str, str]) -> dict[str, dict[str, str]]:
    """The runs of a version's parts, by role (`retriever_runs`: {retriever: run id}), from its tags (recsys.reporting)."""
    return {key: json.loads(value) for key, value in tags.items() if key.endswith(RUNS_SUFFIX)}


def model_store(settings: Settings) -> ModelStore:
    """The BentoML model store under settings.bentoml_home (made on first use).

    Named explicitly rather than through BENTOML_HOME, which BentoML reads once per process.
    """
    from bentoml._internal.models import ModelStore

    store_dir = settings.bentoml_home.resolve() / "models"
    store_dir.mkdir(parents=True, exist_ok=True)
    return ModelStore(str(store_dir))


def _example_ids(model: EmbeddingModel) -> dict[str, str]:
    """Ids the service's Swagger UI offers as examples: its most active user and most popular item."""
    if not len(model.user_ids) or not len(model.item_ids):
        return {}
    active = int(np.argmax(np.diff(model.seen_indptr)))
    return {"example_user_id": str(model.user_ids[active]), "example_item_id": str(model.item_ids[model.popular_order[0]])}


def log_monitoring_run(settings: Settings, html_path: Path, metrics: dict[str, float], tags: dict[str, str]) -> str:
    """Record one monitoring window as an MLflow run with its Evidently report; return its id."""
    configure(settings)
    with mlflow.start_run(run_name=f"monitor-{datetime.now(UTC):%Y%m%d-%H%M%S}") as run:
        mlflow.set_tags({"model_family": "monitoring", **tags})
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(html_path), "evidently")
    return run.info.run_id
