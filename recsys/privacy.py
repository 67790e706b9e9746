"""Forget a user (GDPR erasure): their data leaves every place this install keeps it, provably.

`forget(settings, user_id)` is the one procedure behind `recsys forget USER_ID` and the
service's `POST /admin/forget`. In order, under one lock (two erasures never interleave):

1. the user's keyed hash joins the tombstones (recsys.tombstones): from here on no load
   (the read-only Online Retail copy included) returns their rows, and every service worker,
   at its next request, answers them with the popularity fallback and logs them without an id;
2. their rows leave every dataset store under `RECSYS_HOME/datasets` (recsys.data.store);
3. their lines leave the request and feedback logs, found by their log pseudonym;
4. the champion's user vectors, less theirs, are registered as a new model version (tagged
   `erasure=<hash>`), checked for ANN recall, exported to BentoML and made champion, with no
   retraining; so is each deployed challenger (shadow, canary: recsys.challengers), deployed
   again in its role with its experiment kept; every model folder already stored (MLflow artifacts and the BentoML store under
   `RECSYS_HOME`) is rewritten without them: vector, seen items, input examples, pickles, and
   the Keras files that hold their row are deleted;
5. the tombstone file is replaced once more, so every worker swaps to the new champion;
6. one line goes to the audit log: when, what was removed where, the model version, under
   the audit key's hash of the id (recsys.keys): never the id, never its log pseudonym, so
   the entry proves the erasure to whoever knows the id, and joins nothing in the logs.

Forgetting is idempotent: a second run for the same id removes whatever came back (a
training run that logged its model while the first erasure ran) and audits zeros otherwise.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import cloudpickle
import mlflow
import yaml
from mlflow import MlflowClient

from recsys import challengers, keys, registry, tombstones
from recsys.data import store
from recsys.models.base import EmbeddingModel
from recsys.models.two_stage import served
from recsys.serving import index
from recsys.serving.logic import drop_lines, pseudonymise
from recsys.settings import Settings

if TYPE_CHECKING:
    import faiss

    from recsys.serving.index import IndexReport

ARRAYS = Path("artifacts") / registry.EXPORT_ARTIFACT / "arrays.npz"  # within an MLflow model folder
EXAMPLES = ("input_example.json", "serving_input_example.json")


@dataclass(frozen=True)
class Erasure:
    """What one erasure removed, where, and the model version it made champion."""

    subject: str  # the audit key's HMAC of the id: how the audit log names the user
    at: str
    store_rows: int  # interactions deleted from the dataset stores
    request_log_lines: int
    event_log_lines: int  # feedback lines of the events log
    model_vectors: int  # model versions that lost their vector: the champion's and deployed challengers' (0 when none had one)
    model_files: int  # stored model files rewritten or deleted (MLflow artifacts, BentoML store)
    model_version: str | None  # the champion registered without them; None when none was needed
    previous_champion: str | None
    challengers: dict[str, str] = field(default_factory=dict)  # role (shadow, canary) -> its version registered without them
    notes: list[str] = field(default_factory=list)  # what was skipped, and why

    def to_dict(self) -> dict:
        return asdict(self)


def forget(settings: Settings, user_id: str) -> Erasure:
    """Erase `user_id` from data, logs and models (module docstring); audit it; return the counts."""
    pseudonym = pseudonymise(user_id, keys.log_key(settings)).encode()
    with _exclusive(settings.privacy_dir / "erasure.lock"):
        subject = tombstones.bury(settings, user_id)
        rows = sum(store.remove_users(root, {user_id}) for root in _stores(settings))
        requests = drop_lines(settings.request_log, pseudonym)
        events = drop_lines(settings.events_log, pseudonym)
        notes: list[str] = []
        version, previous, redeployed = _models_without(settings, user_id, subject, notes)
        vectors = len({version, *redeployed.values()} - {None})
        files = sum(_scrub_model_folder(folder, user_id) for folder in _model_folders(settings))
        if settings.mlflow_artifacts_destination:
            notes.append(f"artifacts under {settings.mlflow_artifacts_destination} are outside RECSYS_HOME and were not rewritten")
        tombstones.add(tombstones.path_of(settings))  # a new file: every worker swaps to the new champion
        erasure = Erasure(subject, datetime.now(UTC).isoformat(), rows, requests, events, vectors, files, version, previous, redeployed, notes)
        _audit(settings.audit_log, erasure)
    return erasure


@contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """Hold an exclusive flock on `lock` (made on first use): erasures run one at a time."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _stores(settings: Settings) -> list[Path]:
    """The dataset stores of this install, and the configured dataset when it is a store."""
    found = [p for p in sorted(settings.datasets_dir.glob("*")) if store.is_store(p)]
    configured = Path(settings.dataset)
    if store.is_store(configured) and configured.resolve() not in {p.resolve() for p in found}:
        found.append(configured)
    return found


def _models_without(settings: Settings, user_id: str, subject: str, notes: list[str]) -> tuple[str | None, str | None, dict[str, str]]:
    """Re-register the champion and every deployed challenger less `user_id`, and deploy them again.

    Returns (new champion version, previous champion, {challenger role: new version}). A shadow
    and a canary of the same version share one new version; a challenger keeps its experiment
    (start, arm salt: recsys.challengers), so the same users stay in its arm.
    """
    registry.configure(settings)
    previous = registry.champion(settings)
    if previous is None:
        notes.append("no champion yet: no model version registered")
    made: dict[str, _Scrubbed | None] = {}

    def scrubbed(version: str, role: str) -> _Scrubbed | None:
        if version not in made:
            made[version] = _version_without(settings, version, user_id, subject)
            if made[version] is None:
                notes.append(f"{role} version {version} has no vector for them: no model version registered")
        return made[version]

    champion = scrubbed(previous, "champion") if previous is not None else None
    if champion is not None:
        registry.make_champion(settings, champion.version, champion.model, champion.ann, champion.report)
        if champion.report is None:
            notes.append(f"ANN recall below {index.MIN_RECALL}: version {champion.version} is served by exact search")
    redeployed: dict[str, str] = {}
    for role in challengers.ROLES:
        current = challengers.challenger(settings, role)
        if current is not None and (new := scrubbed(current.version, role)) is not None:
            challengers.deploy(settings, new.version, role, new.model, new.ann, new.report, continues=True)
            redeployed[role] = new.version
    return champion.version if champion else None, previous, redeployed


@dataclass(frozen=True)
class _Scrubbed:
    """A registered version less one user, with its checked ANN index (None: served by exact search)."""

    version: str
    model: EmbeddingModel
    ann: faiss.Index | None
    report: IndexReport | None


def _version_without(settings: Settings, version: str, user_id: str, subject: str) -> _Scrubbed | None:
    """Register `version` less `user_id` as a new version, its tags copied and its lineage added; None if it has no vector for them."""
    export = registry.download_export(settings, version)
    model = EmbeddingModel.load(export)
    if user_id not in model.user_index:
        return None
    scrubbed = model.without_users({user_id})
    stage_two = served.beside(export)  # a two-stage model serves from it: it goes along, less them
    stage_two = stage_two.without_users({user_id}) if stage_two is not None else None
    lineage = {"erasure": subject, "derived_from_version": version}
    with mlflow.start_run(run_name=f"erasure-{subject[:12]}") as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags({"model_family": "erasure", **lineage})
        extra = {served.ARTIFACT: stage_two.save(Path(tmp) / served.ARTIFACT)} if stage_two is not None else {}
        uri = registry.log_model(scrubbed, extra)
    tags = MlflowClient().get_model_version(settings.registered_model, version).tags
    new = registry.register(uri, settings, run.info.run_id, {**{k: v for k, v in tags.items() if k != "run_id"}, **lineage})
    searched = stage_two.model if stage_two is not None else scrubbed
    ann, report = index.build_checked(searched.item_vectors, searched.user_vectors)  # items unchanged: it passes as before
    if not report.passed:
        ann, report = None, None  # served by exact search rather than not at all
    return _Scrubbed(new, scrubbed, ann, report)


def _model_folders(settings: Settings) -> list[Path]:
    """Every MLflow model folder stored under RECSYS_HOME: MLflow's local artifacts and BentoML's copies."""
    roots = [settings.artifacts_dir, settings.bentoml_home / "models"]
    return sorted(mlmodel.parent for root in roots if root.is_dir() for mlmodel in root.rglob("MLmodel"))


def _scrub_model_folder(folder: Path, user_id: str) -> int:
    """Rewrite one stored model without `user_id`; return the files rewritten or deleted.

    The arrays lose the user's vector and seen items, and a two-stage model's serving folder
    (recsys.models.two_stage.served) every per-user row; the input examples name another user;
    a pickle of the pyfunc that kept the loaded model (recsys.registry before this fix) is
    replaced by a bare one; Keras files beside the arrays hold the user's row under an index
    only the old vocabulary explains and nothing serves from them, so they are deleted.
    """
    arrays = folder / ARRAYS
    if not arrays.is_file():
        return 0
    model = EmbeddingModel.load(arrays.parent)
    changed = 0
    if user_id in model.user_index:
        scrubbed = model.without_users({user_id})
        building = scrubbed.save(arrays.parent / ".erasing")
        os.replace(building / arrays.name, arrays)
        shutil.rmtree(building)
        changed += 1
        for extra in sorted((folder / "artifacts").iterdir()):
            if extra.name == served.ARTIFACT:  # a two-stage model serves from it: rewritten, not deleted
                building = served.StageTwo.load(extra).without_users({user_id}).save(extra.with_name(".erasing"))
                shutil.rmtree(extra)
                os.replace(building, extra)
                changed += 1
            elif extra.name != registry.EXPORT_ARTIFACT:
                shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
                changed += 1
        model = scrubbed
    other = str(model.user_ids[0]) if len(model.user_ids) else "unknown-user"
    for name in EXAMPLES:
        path = folder / name
        if path.is_file() and json.dumps(user_id) in (text := path.read_text()):
            _replace(path, text.replace(json.dumps(user_id), json.dumps(other)).encode())
            changed += 1
    pickle, bare = folder / "python_model.pkl", cloudpickle.dumps(registry.RecsysPyfunc())
    if pickle.is_file() and (data := pickle.read_bytes()) != bare and _mentions(data, user_id):
        _replace(pickle, bare)
        changed += 1
    info = folder.parent / "model.yaml"  # a BentoML model's metadata names an example user
    if folder.name == "mlflow_model" and info.is_file():
        meta = yaml.safe_load(info.read_text())
        if meta.get("metadata", {}).get("example_user_id") == user_id:
            meta["metadata"]["example_user_id"] = other
            _replace(info, yaml.safe_dump(meta, sort_keys=False).encode())
            changed += 1
    return changed


def _mentions(data: bytes, user_id: str) -> bool:
    """Whether `data` holds the id as UTF-8 (pickled str) or UTF-32 (numpy's str arrays)."""
    return any(user_id.encode(encoding) in data for encoding in ("utf-8", "utf-32-le"))


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.erasing")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _audit(log: Path, erasure: Erasure) -> None:
    """Append the erasure as one JSON line (one O_APPEND write), readable by the owner only."""
    log.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "at": erasure.at,
        "subject": erasure.subject,
        "removed": {k: getattr(erasure, k) for k in ("store_rows", "request_log_lines", "event_log_lines", "model_vectors", "model_files")},
        "model_version": erasure.model_version,
        "previous_champion": erasure.previous_champion,
        "challengers": erasure.challengers,
        "notes": erasure.notes,
    }
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)
