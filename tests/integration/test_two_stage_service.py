"""A two-stage champion over real HTTP: trained, blessed and promoted the way production does it,
then served with both stages per request; its lists are the registered export's."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from recsys import registry
from recsys.data.ingest import Dataset
from recsys.data.split import Split
from recsys.promotion import bless_and_promote
from recsys.settings import Settings
from recsys.training import train
from tests.integration.served import Served, served_champion

PARAMS = {"candidates": 12, "retrievers": {"ease": {"l2": 100.0}, "item_knn": {"neighbours": 30}, "ials": {"factors": 8, "iterations": 5}}}


def promote_two_stage(settings: Settings, data: Dataset, split: Split) -> None:
    candidate = train(data, split, settings, "two_stage", params=PARAMS)
    result = bless_and_promote(settings, candidate.version, candidate.run_id, split, data.items)
    assert result.promoted, result


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_champion(tmp_path_factory.mktemp("two-stage") / "home", promote_two_stage) as running:
        yield running


def test_a_two_stage_champion_serves_the_exports_lists_explained_and_says_its_family(served: Served) -> None:
    info = httpx.get(f"{served.url}/model").json()
    assert info["family"] == "two_stage" and info["index_kind"] == "hnsw" and info["index_recall_at_100"] >= 0.99
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
