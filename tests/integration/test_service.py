"""The BentoML service over real HTTP: endpoints, lineage, logs, refusal of a bad index and a
hot swap under load with no failed request."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from recsys import keys, registry
from recsys.data.ingest import Dataset
from recsys.data.split import Split
from recsys.promotion import bless_and_promote
from recsys.serving import index
from recsys.settings import Settings
from recsys.training import train
from tests.integration.served import Served, served_champion

TOKEN = "test-admin-token"


def promote_two_tower(settings: Settings, data: Dataset, split: Split) -> None:
    """Train, bless and promote the way production does, so the HNSW index is built and checked."""
    candidate = train(data, split, settings, "two_tower", validation={"result_id": "gx-7", "success": True})
    assert bless_and_promote(settings, candidate.version, candidate.run_id, split, data.items).promoted


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A promoted two-tower champion served by `bentoml serve`, admin reload enabled."""
    home = tmp_path_factory.mktemp("service") / "home"
    with served_champion(home, promote_two_tower, extra_env={"RECSYS_ADMIN_TOKEN": TOKEN}) as running:
        yield running


def post(served: Served, path: str, body: dict) -> dict:
    response = httpx.post(f"{served.url}{path}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_known_user_gets_k_ranked_unseen_items_with_lineage(served: Served) -> None:
    body = post(served, "/recommend", {"user_id": "u1", "k": 7})
    assert len(body["items"]) == 7 and len({i["item_id"] for i in body["items"]}) == 7
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert body["fallback"] is False and body["model_version"] == "1" and len(body["request_id"]) == 32
    model = registry.load_version(served.settings, "1")
    seen = set(model.item_ids[model.seen(model.user_index["u1"])].tolist())
    assert not seen & {i["item_id"] for i in body["items"]}
    titles = served.data.items.set_index("item_id")["title"]  # a person reads the title beside each id
    assert all(i["title"] == titles[i["item_id"]] for i in body["items"])
    with_seen = post(served, "/recommend", {"user_id": "u1", "k": 100, "exclude_seen": False})
    assert seen & {i["item_id"] for i in with_seen["items"]}


def test_explain_names_a_seen_item_per_recommendation(served: Served) -> None:
    body = post(served, "/recommend", {"user_id": "u2", "k": 4, "explain": True})
    model = registry.load_version(served.settings, "1")
    seen = set(model.item_ids[model.seen(model.user_index["u2"])].tolist())
    assert all(i["because"] in seen for i in body["items"])
    titles = served.data.items.set_index("item_id")["title"]
    assert all(i["because_title"] == titles[i["because"]] and i["title"] == titles[i["item_id"]] for i in body["items"])


def test_unknown_user_gets_popularity_fallback(served: Served) -> None:
    body = post(served, "/recommend", {"user_id": "never-seen", "k": 3})
    assert body["fallback"] is True and len(body["items"]) == 3 and all(i["title"] for i in body["items"])


def test_batch_answers_in_order_and_concurrent_batches_all_complete(served: Served) -> None:
    reply = httpx.post(
        f"{served.url}/recommend_batch", json={"requests": [{"user_id": "u1", "k": 2}, {"user_id": "nobody", "k": 3}, {"user_id": "u3", "k": 4}]}
    )
    assert reply.headers["content-type"] == "application/json"  # the contract RecommendBatchOutput (a speed-up) must keep
    body = reply.json()
    assert [len(r["items"]) for r in body] == [2, 3, 4] and [r["fallback"] for r in body] == [False, True, False]
    assert len({r["request_id"] for r in body}) == 3
    results: list[int] = []

    def call(n: int) -> None:
        reqs = [{"user_id": f"u{n * 5 + j}", "k": 5} for j in range(5)]
        results.append(len(httpx.post(f"{served.url}/recommend_batch", json={"requests": reqs}, timeout=30).json()))

    threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [5] * 8


def test_similar_items_and_unknown_item_404(served: Served) -> None:
    body = post(served, "/similar_items", {"item_id": "i1", "k": 5})
    assert len(body["items"]) == 5 and "i1" not in {i["item_id"] for i in body["items"]}
    missing = httpx.post(f"{served.url}/similar_items", json={"item_id": "no-such", "k": 5})
    assert missing.status_code == 404 and "unknown item_id 'no-such'" in missing.text


def test_model_lineage_health_metrics_and_docs(served: Served) -> None:
    info = httpx.get(f"{served.url}/model").json()
    mv = registry.MlflowClient().get_model_version(served.settings.registered_model, "1")
    assert info["version"] == "1" and info["run_id"] == mv.run_id and info["gx_result_id"] == "gx-7"
    assert info["data_digest"] and info["promoted_at"] and info["index_kind"] == "flat"  # a small catalogue: exact search (index.EXACT_MAX_SCAN)
    assert info["index_recall_at_100"] >= 0.99 and info["bento_tag"].startswith("recsys:")
    assert info["retriever_runs"] == {}  # a two-tower model has no retrievers (a two-stage one: tests/integration/test_two_stage_lineage.py)
    for path in ("/livez", "/readyz", "/"):
        assert httpx.get(f"{served.url}{path}").status_code == 200
    answer = httpx.post(f"{served.url}/recommend", json={"user_id": "u1", "k": 1})
    # BentoML's tracing middleware is skipped by default (a third of a request's CPU): no span
    # id header, yet Prometheus still counts the request.
    assert answer.status_code == 200 and "x-bentoml-request-id" not in answer.headers
    metrics = httpx.get(f"{served.url}/metrics").text
    counted = re.search(r'request_total\{endpoint="/recommend",http_response_code="200"[^}]*\} (\d+)', metrics)
    assert counted and int(counted.group(1)) >= 1

    def cost() -> tuple[float, float]:  # what answering cost: handler CPU seconds and users served, /recommend
        text = httpx.get(f"{served.url}/metrics").text
        found = [re.search(rf'recsys_{name}_total\{{endpoint="recommend"\}} ([0-9.e+-]+)', text) for name in ("cpu_seconds", "recommended_users")]
        assert all(found), text[-2000:]
        return float(found[0].group(1)), float(found[1].group(1))

    cpu, users = cost()
    for i in range(20):
        assert httpx.post(f"{served.url}/recommend", json={"user_id": f"u{i}", "k": 10}).status_code == 200
    cpu_after, users_after = cost()
    assert users_after == users + 20 and cpu_after > cpu  # the counters grow with requests
    spec = httpx.get(f"{served.url}/docs.json").json()
    assert {"/recommend", "/recommend_batch", "/similar_items", "/feedback"} <= set(spec["paths"])
    batch_answer = spec["paths"]["/recommend_batch"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert batch_answer["type"] == "array" and batch_answer["items"]["$ref"].endswith("RecommendResponse"), batch_answer
    # Swagger UI's examples are ids the served model knows (recorded at promotion), not "string"
    model = registry.load_version(served.settings, info["version"])
    assert info["example_user_id"] in model.user_index and info["example_item_id"] in model.item_index
    assert f'"{info["example_user_id"]}"' in json.dumps(spec) and f'"{info["example_item_id"]}"' in json.dumps(spec)
    tried = post(served, "/recommend", {"user_id": info["example_user_id"], "k": 3})
    assert tried["fallback"] is False


def test_answers_and_feedback_are_logged_with_pseudonymised_users(served: Served) -> None:
    log, events = served.settings.request_log, served.settings.request_log.with_name("events.jsonl")
    before = log.read_text().count("\n")
    ids = [post(served, "/recommend", {"user_id": f"u{i}", "k": 2})["request_id"] for i in range(5)]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == before + 5 and [r["request_id"] for r in lines[-5:]] == ids
    assert all(r["model_version"] == "1" and r["history_len"] > 0 and r["cpu_us"] > 0 for r in lines[-5:])
    key_file = keys.secrets_dir(served.settings) / keys.LOG_KEY  # generated by the service on first use, owner-only
    assert key_file.stat().st_mode & 0o777 == 0o600 and len(key_file.read_bytes().strip()) >= keys.MIN_KEY_BYTES
    expected = hmac.new(key_file.read_text().strip().encode(), b"u4", hashlib.sha256).hexdigest()
    assert lines[-1]["user_id"] == expected and "u4" not in log.read_text().splitlines()[-1]
    fb = post(served, "/feedback", {"user_id": "u4", "item_id": "i9", "event": "click", "request_id": ids[-1]})
    event = json.loads(events.read_text().splitlines()[-1])
    assert event["kind"] == "feedback" and event["request_id"] == fb["request_id"]
    assert event["answer_request_id"] == ids[-1] and event["user_id"] == expected


def test_reload_needs_the_admin_token(served: Served) -> None:
    assert httpx.post(f"{served.url}/admin/reload").status_code == 401
    wrong = httpx.post(f"{served.url}/admin/reload", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "admin token" in wrong.text


def test_bad_index_is_refused_then_new_champion_hot_swaps_under_load(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = served.settings
    candidate = train(served.data, served.split, settings, "two_tower")
    monkeypatch.setattr(index, "MIN_RECALL", 1.01)  # no index can pass: promotion must refuse
    refused = bless_and_promote(settings, candidate.version, candidate.run_id, served.split, served.data.items)
    assert not refused.promoted and refused.blessing.blessed and refused.index_recall is not None
    assert registry.champion(settings) == "1"
    monkeypatch.undo()
    assert bless_and_promote(settings, candidate.version, candidate.run_id, served.split, served.data.items).promoted

    log_before = settings.request_log.read_text().count("\n")
    # Each client thread keeps its own lists (no shared counter), and the test waits on what the
    # clients have seen, not on fixed sleeps: every client answered before the swap and after it.
    stop = threading.Event()
    versions: list[list[str]] = [[] for _ in range(6)]
    failures: list[list[int | str]] = [[] for _ in range(6)]

    def load(n: int) -> None:
        with httpx.Client(base_url=served.url, timeout=10) as client:
            while not stop.is_set():
                try:
                    r = client.post("/recommend", json={"user_id": f"u{n}", "k": 10})
                except httpx.HTTPError as error:  # a dropped connection is a failure too, not a dead thread
                    failures[n].append(repr(error))
                    continue
                if r.status_code == 200:
                    versions[n].append(r.json()["model_version"])
                else:
                    failures[n].append(r.status_code)

    def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting until {what}"
            time.sleep(0.05)

    threads = [threading.Thread(target=load, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    wait_until(lambda: all(len(v) >= 3 for v in versions), "every client has answers from version 1")
    swap = httpx.post(f"{served.url}/admin/reload", headers={"authorization": f"Bearer {TOKEN}"}, timeout=30)
    wait_until(lambda: all(v.count("2") >= 3 for v in versions), "every client has answers from version 2")
    stop.set()
    for t in threads:
        t.join()
    assert swap.status_code == 200 and swap.json() == {**swap.json(), "previous": "1", "serving": "2"}
    assert not any(failures), failures
    for seen in versions:  # each client saw 1 then 2, never back: the swap is atomic
        assert seen[0] == "1" and seen[-1] == "2" and seen == sorted(seen)
    assert settings.request_log.read_text().count("\n") - log_before == sum(len(v) for v in versions)
    assert httpx.get(f"{served.url}/model").json()["version"] == "2"


def test_bentofile_builds_a_bento_with_the_champion(served: Served) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "BENTOML_HOME": str(served.settings.bentoml_home), "BENTOML_DO_NOT_TRACK": "True"}
    bentoml_bin = str(Path(sys.executable).with_name("bentoml"))
    built = subprocess.run([bentoml_bin, "build", "--output", "tag"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    listed = subprocess.run([bentoml_bin, "get", tag, "-o", "json"], env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    info = json.loads(listed.stdout)
    models = [m["tag"] for service in info["services"] for m in service["models"]]
    assert len(models) == 1 and models[0].startswith("recsys:")
    routes = {r["name"] for r in info["schema"]["routes"]}
    assert {"recommend", "recommend_batch", "similar_items", "feedback"} <= routes
