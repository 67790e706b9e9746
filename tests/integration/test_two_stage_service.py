"""A two-stage champion over real HTTP: trained, blessed and promoted the way production does it,
then served with both stages per request; its lists are the registered export's, and forgetting
a user rewrites what it ranks from."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from recsys import registry
from recsys.data.ingest import Dataset
from recsys.data.split import Split
from recsys.models.two_stage import served as two_stage
from recsys.privacy import forget
from recsys.promotion import bless_and_promote
from recsys.settings import Settings
from recsys.training import train
from tests.integration.served import Served, served_champion
from tests.integration.test_forget import GONE, holding, shop

PARAMS = {"candidates": 12, "retrievers": {"ease": {"l2": 100.0}, "item_knn": {"neighbours": 30}, "ials": {"factors": 8, "iterations": 5}}}


def promote_two_stage(settings: Settings, data: Dataset, split: Split) -> None:
    candidate = train(data, split, settings, "two_stage", params=PARAMS)
    result = bless_and_promote(settings, candidate.version, candidate.run_id, split, data.items)
    assert result.promoted, result


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_champion(tmp_path_factory.mktemp("two-stage") / "home", promote_two_stage, data=shop()) as running:
        yield running


def test_a_two_stage_champion_serves_the_exports_lists_explained_and_says_its_family(served: Served) -> None:
    info = httpx.get(f"{served.url}/model").json()
    assert info["family"] == "two_stage" and info["index_kind"] == "flat" and info["index_recall_at_100"] == 1.0
    export = registry.load_version(served.settings, "1")
    users = export.user_ids[:6].tolist()
    top, _ = export.recommend(np.array([export.user_index[u] for u in users]), k=10)
    body = httpx.post(f"{served.url}/recommend_batch", json={"requests": [{"user_id": u, "k": 10, "explain": True} for u in users]}).json()
    assert [[i["item_id"] for i in r["items"]] for r in body] == export.item_ids[top].tolist()
    single = httpx.post(f"{served.url}/recommend", json={"user_id": users[0], "k": 10}).json()
    assert [i["item_id"] for i in single["items"]] == [i["item_id"] for i in body[0]["items"]] and not single["fallback"]
    titles = served.data.items.set_index("item_id")["title"]
    for user, r in zip(users, body):
        seen = set(export.item_ids[export.seen(export.user_index[user])].tolist())
        assert all(i["because"] in seen and i["because_title"] == titles[i["because"]] for i in r["items"])
    assert httpx.post(f"{served.url}/recommend", json={"user_id": "never-seen", "k": 3}).json()["fallback"] is True
    similar = httpx.post(f"{served.url}/similar_items", json={"item_id": str(export.item_ids[0]), "k": 5}).json()
    assert len(similar["items"]) == 5


def listed(served: Served, user_id: str) -> tuple[str, bool, list[str]]:
    body = httpx.post(f"{served.url}/recommend", json={"user_id": user_id, "k": 10}).json()
    return body["model_version"], body["fallback"], [i["item_id"] for i in body["items"]]


def test_forgetting_a_user_rewrites_what_the_two_stage_champion_ranks_from(served: Served) -> None:
    settings, others = served.settings, ("u1", "u2", "u3")
    before = {u: listed(served, u)[2] for u in others}
    assert listed(served, GONE)[1] is False
    erasure = forget(settings, GONE)
    assert (erasure.previous_champion, erasure.model_version) == ("1", "2")
    stage = two_stage.beside(registry.download_export(settings, "2"))
    assert stage is not None and all(GONE not in m.user_index for m in stage.snapshot.models.values())
    assert holding(settings.home, [GONE.encode(), GONE.encode("utf-32-le")]) == []
    deadline = time.monotonic() + 30  # the service swaps to version 2 after a request sees the new tombstones
    while listed(served, "u1")[0] != "2" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert listed(served, GONE)[1] is True
    assert {u: listed(served, u) for u in others} == {u: ("2", False, before[u]) for u in others}  # everyone else as before
