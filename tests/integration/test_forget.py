"""Forgetting a user end to end: a served iALS champion on two workers, its store, logs and
registry under one RECSYS_HOME; then POST /admin/forget, and nothing of them is left.

The user is renamed to an id no other byte sequence is likely to match, and one that sorts
first, so it is also the MLflow input example of every model logged with them.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import pyarrow.parquet as pq
import pytest

from recsys import keys, registry
from recsys.data import store
from recsys.data.ingest import Dataset, load_dataset
from recsys.data.split import Split, temporal_user_split
from recsys.data.synthetic import make_synthetic
from recsys.models.base import EmbeddingModel
from recsys.promotion import bless_and_promote
from recsys.schemas import USER_COL
from recsys.settings import Settings
from recsys.training import train
from tests.integration.served import Served, served_champion

TOKEN = "test-admin-token-forget"
GONE = "a-forget-me-7c1f"  # sorts before every "u<n>": the input example of models that know them
STORE = "shop"
# iALS small enough to train in about a second and still beat popularity on the synthetic shop.
IALS = {"factors": 16, "iterations": 10, "alpha": 40.0, "regularization": 1.0}


def shop() -> Dataset:
    data = make_synthetic()
    data.interactions[USER_COL] = data.interactions[USER_COL].replace({"u137": GONE})
    return data


def publish(settings: Settings, data: Dataset, split: Split) -> None:
    """The dataset store under RECSYS_HOME, and an iALS champion trained from it."""
    root = settings.datasets_dir / STORE
    store.write_items(root, data.items)
    store.append(root, data.interactions)
    stored = load_dataset(str(root))
    split = temporal_user_split(stored.interactions)
    candidate = train(stored, split, settings, "ials", validation={"result_id": "gx-1", "success": True}, params=IALS)
    assert bless_and_promote(settings, candidate.version, candidate.run_id, split, stored.items).promoted


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("forget") / "home"
    env = {"RECSYS_ADMIN_TOKEN": TOKEN, "RECSYS_SERVE_WORKERS": "2"}
    with served_champion(home, publish, extra_env=env, data=shop()) as running:
        yield running


def recommend(served: Served, user_id: str) -> dict:
    with httpx.Client() as client:  # a new connection each time, so both workers get asked
        response = client.post(f"{served.url}/recommend", json={"user_id": user_id, "k": 5})
    assert response.status_code == 200, response.text
    return response.json()


def readable(path: Path) -> Iterator[bytes]:
    """The file's bytes, and what compression hides in it: Parquet values, zip members (npz, keras)."""
    data = path.read_bytes()
    yield data
    if path.suffix == ".parquet":
        yield pq.read_table(path).to_pandas().to_csv().encode()
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            yield from (archive.read(name) for name in archive.namelist())


def holding(home: Path, needles: list[bytes]) -> list[str]:
    """Files under `home` in which any needle appears."""
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file() and any(n in blob for blob in readable(p) for n in needles))


def test_forget_erases_the_user_everywhere_and_the_service_falls_back(served: Served, tmp_path: Path) -> None:
    settings, url = served.settings, served.url
    pseudonym = hmac.new(keys.log_key(settings), GONE.encode(), hashlib.sha256).hexdigest()
    needles = [GONE.encode(), GONE.encode("utf-32-le"), pseudonym.encode()]
    rows = int((served.data.interactions[USER_COL] == GONE).sum())

    before = recommend(served, GONE)
    assert before["fallback"] is False and before["model_version"] == "1"
    feedback = {"user_id": GONE, "item_id": before["items"][0]["item_id"], "event": "click", "request_id": before["request_id"]}
    assert httpx.post(f"{url}/feedback", json=feedback).status_code == 200
    assert recommend(served, "u1")["fallback"] is False
    held = holding(settings.home, needles)
    assert any(f.startswith("datasets/") for f in held) and any(f.startswith("mlartifacts/") for f in held)
    assert any(f.startswith("bentoml/") for f in held) and {"logs/requests.jsonl", "logs/events.jsonl"} <= set(held)

    # (e) the admin route wants the token
    assert httpx.post(f"{url}/admin/forget", json={"user_id": GONE}).status_code == 401
    wrong = httpx.post(f"{url}/admin/forget", json={"user_id": GONE}, headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    bad = httpx.post(f"{url}/admin/forget", json={"user": GONE}, headers={"authorization": f"Bearer {TOKEN}"})
    assert bad.status_code == 400

    answer = httpx.post(f"{url}/admin/forget", json={"user_id": GONE}, headers={"authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 202, answer.text
    subject = answer.json()["subject"]
    # (b) every worker answers them with the fallback at once, while the erasure goes on
    assert all(recommend(served, GONE)["fallback"] for _ in range(12))
    others = [recommend(served, f"u{i}") for i in range(12)]
    assert not any(o["fallback"] for o in others)

    # (d) the audit entry, when the erasure is done: the audit key's hash (not the log key's), counts, the version
    deadline = time.monotonic() + 90
    while not settings.audit_log.is_file() and time.monotonic() < deadline:
        time.sleep(0.5)
    audit = [json.loads(line) for line in settings.audit_log.read_text().splitlines()]
    assert len(audit) == 1 and audit[0]["subject"] == subject == hmac.new(keys.audit_key(settings), GONE.encode(), hashlib.sha256).hexdigest()
    assert subject != pseudonym and pd.Timestamp(audit[0]["at"]) and audit[0]["notes"] == []
    assert (audit[0]["previous_champion"], audit[0]["model_version"]) == ("1", "2")
    removed = audit[0]["removed"]
    assert removed["store_rows"] == rows and removed["request_log_lines"] == 1 and removed["event_log_lines"] == 1
    assert removed["model_vectors"] == 1 and removed["model_files"] >= 4
    assert settings.audit_log.stat().st_mode & 0o777 == 0o600

    # every worker swaps to version 2 (loading it after its first request that saw the new file)
    deadline, versions = time.monotonic() + 30, {"1"}
    while versions != {"2"} and time.monotonic() < deadline:
        later = [recommend(served, f"u{i}") for i in range(12)]
        versions = {o["model_version"] for o in later}
        assert not any(o["fallback"] for o in later)  # users other than them stay personalised throughout
    assert versions == {"2"}
    assert registry.champion(settings) == "2" and GONE not in registry.load_version(settings, "2").user_index
    tags = registry.MlflowClient().get_model_version(settings.registered_model, "2").tags
    assert tags["erasure"] == subject and tags["derived_from_version"] == "1" and tags["gx_result_id"] == "gx-1"

    # (c) the next retrain learns without them: the store lost them, a read-only copy is filtered at load
    stored = load_dataset(str(settings.datasets_dir / STORE))
    assert len(stored.interactions) == len(served.data.interactions) - rows and GONE not in set(stored.interactions[USER_COL])
    outside = tmp_path / "export.parquet"  # a source the erasure cannot edit, outside RECSYS_HOME
    served.data.interactions.to_parquet(outside)
    assert GONE not in set(load_dataset(str(outside), tmp_path).interactions[USER_COL])
    retrain = train(stored, temporal_user_split(stored.interactions), settings, "popularity", register=False)
    retrained = EmbeddingModel.load(Path(mlflow.artifacts.download_artifacts(retrain.model_uri, dst_path=str(tmp_path))) / "artifacts" / "export")
    assert len(retrained.user_ids) > 250 and GONE not in retrained.user_index

    # their feedback after the erasure: accepted, logged without an id
    assert httpx.post(f"{url}/feedback", json=feedback).status_code == 200
    events = [json.loads(line) for line in settings.events_log.read_text().splitlines()]
    assert events[-1]["answer_request_id"] == before["request_id"] and events[-1]["user_id"] is None

    # (a) neither their id nor their log pseudonym is left anywhere under RECSYS_HOME, in any encoding
    assert holding(settings.home, needles) == []
    # the audit hash alone: in the audit log, the tombstones and the new version's `erasure` tag
    assert holding(settings.home, [subject.encode()]) == ["audit/erasures.jsonl", "mlflow.db", "privacy/tombstones"]
    users = [json.loads(line)["user_id"] for line in settings.request_log.read_text().splitlines()]
    assert users.count(None) == 12  # their requests after the erasure: answered, logged without an id
    assert len(users) - 12 >= 1 + 12 + 12 + 12  # everybody else's lines stay, before and after the rewrite
