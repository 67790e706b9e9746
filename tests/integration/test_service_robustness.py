"""Bad input over real HTTP: every malformed request gets a 4xx that names the problem, a
bounded schemathesis run against the live OpenAPI spec finds no 5xx, and past its bound of
requests in flight the service refuses at once (503, Retry-After) rather than queue.

The champion here is the popularity model (one-dimensional vectors, so the exact index):
it trains in a moment and exercises the other index path.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from recsys import keys, registry
from recsys.data.ingest import Dataset
from recsys.data.split import Split
from recsys.processes import running_pid
from recsys.serving import index
from recsys.settings import Settings
from recsys.training import train
from tests.integration.served import Served, served_champion


def export_popularity(settings: Settings, data: Dataset, split: Split) -> None:
    """Export the popularity model unblessed (it cannot beat itself), checking its exact index."""
    candidate = train(data, split, settings, "popularity")
    model = registry.load_version(settings, candidate.version)
    ann, report = index.build_checked(model.item_vectors, model.user_vectors)
    assert report.kind == "flat" and report.recall == 1.0
    registry.export_to_bentoml(settings, candidate.version, model, ann, report)


BOUND = 2  # requests in flight per worker; the tests besides the overload one send one at a time


@pytest.fixture(scope="module")
def robust(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The popularity champion served with no admin token configured, and at most 2 requests in flight."""
    env = {"RECSYS_SERVE_MAX_CONCURRENCY": str(BOUND)}
    with served_champion(tmp_path_factory.mktemp("robust") / "home", export_popularity, extra_env=env) as running:
        yield running


@pytest.fixture(scope="module")
def url(robust: Served) -> str:
    return robust.url


LONG = "x" * 200
BATCH = [{"user_id": "u1", "k": 1}] * 65
MALFORMED = [
    ("/recommend", {"user_id": "u1", "k": 0}, 400, "greater than or equal to 1"),
    ("/recommend", {"user_id": "u1", "k": 101}, 400, "less than or equal to 100"),
    ("/recommend", {"user_id": "u1", "k": -5}, 400, "greater than or equal to 1"),
    ("/recommend", {"user_id": "u1", "k": "ten"}, 400, "valid integer"),
    ("/recommend", {"user_id": "u1", "k": 1.5}, 400, "fractional part"),
    ("/recommend", {"user_id": "u1", "k": None}, 400, "valid integer"),
    ("/recommend", {"user_id": "u1", "k": [3]}, 400, "valid integer"),
    ("/recommend", {"k": 5}, 400, "Field required"),
    ("/recommend", {"user_id": "", "k": 5}, 400, "at least 1 character"),
    ("/recommend", {"user_id": ["u1"], "k": 5}, 400, "valid string"),
    ("/recommend", {"user_id": True, "k": 5}, 400, "valid string"),
    ("/recommend", {"user_id": 1.5, "k": 5}, 400, "valid string"),
    ("/recommend", {"user_id": {"id": 1}, "k": 5}, 400, "valid string"),
    ("/recommend", {"user_id": "u\u00001", "k": 5}, 400, "control characters"),
    ("/recommend", {"user_id": "u1\n", "k": 5}, 400, "control characters"),
    ("/recommend_batch", {"requests": [{"user_id": False}]}, 400, "valid string"),
    ("/recommend", {"user_id": None}, 400, "valid string"),
    ("/recommend", {"user_id": LONG}, 400, "at most 128 characters"),
    ("/recommend", {"user_id": "u1", "exclude_seen": "maybe"}, 400, "valid boolean"),
    ("/recommend", {"user_id": "u1", "explain": []}, 400, "valid boolean"),
    ("/recommend", {"user_id": "u1", "timestamp": LONG}, 400, "at most 40 characters"),
    ("/recommend", "{not json", 400, "Invalid JSON"),
    ("/recommend", "[]", 400, "Input should be an object"),
    ("/recommend", "null", 400, "Input should be an object"),
    ("/recommend", "", 400, "Field required"),
    ("/recommend", '{"user_id": "u1", "k": 1e400}', 400, "finite number"),
    ("/recommend_batch", {"requests": []}, 400, "at least 1 item"),
    ("/recommend_batch", {"requests": BATCH}, 400, "at most 64 items"),
    ("/recommend_batch", {"requests": [{"user_id": "u1", "k": 0}]}, 400, "greater than or equal to 1"),
    ("/recommend_batch", {"requests": "u1"}, 400, "valid array"),
    ("/recommend_batch", {}, 400, "Field required"),
    ("/recommend_batch", {"requests": [{"user_id": "u1", "kk": 2}]}, 400, "Extra inputs are not permitted"),
    ("/recommend_batch", {"requests": [{"k": 2}]}, 400, "Field required"),
    ("/similar_items", {"item_id": "no-such", "k": 5}, 404, "unknown item_id 'no-such'"),
    ("/similar_items", {"item_id": "", "k": 5}, 400, "at least 1 character"),
    ("/similar_items", {"item_id": "i1", "k": 1000}, 400, "less than or equal to 100"),
    ("/similar_items", {"k": 5}, 400, "Field required"),
    ("/feedback", {"user_id": "u1", "item_id": "i1", "event": "like", "request_id": "r"}, 400, "'purchase', 'rating'"),
    ("/feedback", {"user_id": "u1", "item_id": "i1", "event": "click"}, 400, "Field required"),
    ("/feedback", {"user_id": "u1", "item_id": "i1", "event": "click", "request_id": LONG}, 400, "at most 64"),
    ("/feedback", {"user_id": "u1", "item_id": True, "event": "click", "request_id": "r"}, 400, "valid string"),
    ("/similar_items", {"item_id": "i\u00001", "k": 5}, 400, "control characters"),
]


@pytest.mark.parametrize(("path", "payload", "status", "needle"), MALFORMED)
def test_malformed_request_gets_a_4xx_that_names_the_problem(url: str, path: str, payload, status: int, needle: str) -> None:
    content = payload if isinstance(payload, str) else json.dumps(payload)
    response = httpx.post(f"{url}{path}", content=content, headers={"content-type": "application/json"})
    assert response.status_code == status and needle in response.text, response.text


def test_oversized_wrong_type_and_wrong_method_requests_get_4xx(url: str) -> None:
    big = json.dumps({"user_id": "u1", "pad": "x" * 70_000})
    declared = httpx.post(f"{url}/recommend", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and "too large" in declared.text and "65536" in declared.text
    chunked = httpx.post(f"{url}/recommend", content=iter([big.encode()[:40_000], big.encode()[40_000:]]), headers={"content-type": "application/json"})
    assert chunked.status_code == 413 and "too large" in chunked.text
    form = httpx.post(f"{url}/recommend", content=b"user_id=u1", headers={"content-type": "multipart/form-data"})
    assert form.status_code == 415 and "multipart/form-data" in form.text
    assert httpx.get(f"{url}/recommend").status_code == 405
    assert httpx.post(f"{url}/no-such-route", json={}).status_code == 404
    assert httpx.post(f"{url}/admin/reload").status_code == 401  # no token given (none is configured: one was generated)


def test_fallback_still_answers_with_the_exact_index(url: str) -> None:
    body = httpx.post(f"{url}/recommend", json={"user_id": "nobody", "k": 4}).json()
    assert body["fallback"] is True and len(body["items"]) == 4
    assert httpx.get(f"{url}/model").json()["index_kind"] == "flat"


def test_schemathesis_finds_no_server_error(url: str, tmp_path: Path) -> None:
    st = str(Path(sys.executable).with_name("schemathesis"))
    cmd = [st, "run", f"{url}/docs.json", "--checks", "not_a_server_error", "--max-examples", "8", "--seed", "7", "--request-timeout", "10"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)  # its example db goes there
    assert run.returncode == 0, run.stdout[-4000:]
    assert "passed" in run.stdout


def test_integer_ids_are_taken_as_their_text(url: str) -> None:
    """Online Retail and MovieLens ids are numbers: clients may send them as JSON integers."""
    as_int = httpx.post(f"{url}/recommend", json={"user_id": 12347, "k": 3})
    as_text = httpx.post(f"{url}/recommend", json={"user_id": "12347", "k": 3})
    assert as_int.status_code == as_text.status_code == 200, as_int.text
    assert as_int.json()["user_id"] == "12347" and as_int.json()["items"] == as_text.json()["items"]
    batch = httpx.post(f"{url}/recommend_batch", json={"requests": [{"user_id": 7, "k": 2}]})
    assert batch.status_code == 200 and batch.json()[0]["user_id"] == "7"
    feedback = httpx.post(f"{url}/feedback", json={"user_id": 12347, "item_id": 85123, "event": "click", "request_id": "r"})
    assert feedback.status_code == 200, feedback.text


def test_generated_admin_token_is_private_and_opens_the_admin_routes(robust: Served) -> None:
    """No token was configured: the service made one for this install (mode 0600), and only it works."""
    token_file = keys.secrets_dir(robust.settings) / keys.ADMIN_TOKEN
    assert token_file.stat().st_mode & 0o777 == 0o600 and token_file.parent.stat().st_mode & 0o777 == 0o700
    token = token_file.read_text().strip()
    assert len(token) >= 32
    ok = httpx.post(f"{robust.url}/admin/reload", headers={"authorization": f"Bearer {token}"}, timeout=30)
    assert ok.status_code == 200 and ok.json()["serving"] == ok.json()["previous"], ok.text
    assert httpx.post(f"{robust.url}/admin/reload", headers={"authorization": "Bearer recsys-local-dev-key"}).status_code == 401


Answer = tuple[int, dict[bytes, bytes], bytes]  # status, headers (lower-case names), body


@contextmanager
def arriving_together(settings: Settings, port: int, connections: int) -> Iterator[None]:
    """Once the service's worker holds `connections` connections on `port`, it is stopped (SIGSTOP)
    while the block runs, then let go.

    Requests sent meanwhile wait in the kernel, and the worker finds them all readable at once
    when it resumes: a burst that arrives together however fast the service answers. Sent to a
    running worker, a fast one can answer each before the next arrives and never have two in
    flight (seen in a clean-clone run). Waiting for the connections first matters: stopped before
    it had taken them, the worker answered all 128 singles below with never two in flight.
    """
    server = psutil.Process(running_pid(settings, "bentoml"))
    workers = server.children(recursive=True)  # in sessions of their own

    def held() -> int:
        return sum(1 for w in workers for c in w.net_connections("tcp") if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED)

    deadline = time.monotonic() + 30
    while held() < connections:
        assert time.monotonic() < deadline, f"the worker took {held()} of {connections} connections in 30 s"
        time.sleep(0.05)
    for worker in workers:
        worker.suspend()
    try:
        yield
    finally:
        for worker in workers:
            worker.resume()


def raw_burst(url: str, path: str, bodies: list[dict], settings: Settings) -> list[Answer]:
    """Each request written whole in one send on a connection of its own, all before any answer is read.

    As wrk does, and unlike httpx, which writes headers and body apart: a handler still waiting for
    its body yields, and that would let even a plain count of requests in flight see them queue.
    The service (its `settings`) finds them all at once (`arriving_together`).
    """
    parts = urlsplit(url)
    sockets = [socket.create_connection((parts.hostname, parts.port)) for _ in bodies]
    with arriving_together(settings, parts.port, len(sockets)):
        for sock, body in zip(sockets, bodies):
            data = json.dumps(body).encode()
            head = f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
            sock.sendall(head.encode() + data)
    answers = []
    for sock in sockets:
        with sock, sock.makefile("rb") as reply:
            status = int(reply.readline().split()[1])
            headers = dict(line.strip().split(b": ", 1) for line in iter(reply.readline, b"\r\n"))
            headers = {name.lower(): value for name, value in headers.items()}
            answers.append((status, headers, reply.read(int(headers[b"content-length"]))))
    return answers


def test_past_its_bound_the_service_refuses_at_once_and_logs_only_answers(robust: Served) -> None:
    """32 batches at once, then 128 single requests (each burst arriving together), against a bound
    of 2: of each some are refused with 503 and Retry-After, the rest answered, none fails
    otherwise, and the request log holds exactly the answered ones. The singles' handler never
    yields, so a plain count of requests in flight (BentoML's own limit) would never see them queue."""
    log = robust.settings.request_log
    before = log.read_text().count("\n") if log.exists() else 0
    batch = {"requests": [{"user_id": f"u{i}", "k": 100, "explain": True} for i in range(64)]}
    batches = raw_burst(robust.url, "/recommend_batch", [batch] * 32, robust.settings)
    singles = raw_burst(robust.url, "/recommend", [{"user_id": f"u{i % 100}", "k": 100, "explain": True} for i in range(128)], robust.settings)
    answers = []
    for kind in (batches, singles):
        refused = [(h, b) for status, h, b in kind if status == 503]
        answered = [json.loads(b) for status, _, b in kind if status == 200]
        assert refused and answered and len(refused) + len(answered) == len(kind), sorted(status for status, _, _ in kind)
        assert all(h.get(b"retry-after") == b"1" and b"overloaded" in b for h, b in refused)
        answers += [a for answer in answered for a in (answer if isinstance(answer, list) else [answer])]
    logged = [json.loads(line)["request_id"] for line in log.read_text().splitlines()[before:]]
    assert len(logged) == len(answers) and set(logged) == {a["request_id"] for a in answers}
    assert httpx.get(f"{robust.url}/readyz").status_code == 200 and httpx.get(f"{robust.url}/metrics").status_code == 200  # probes pass
