"""The BentoML service over real HTTP: recommendations, fallback, 4xx on bad input, the log."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from tests.conftest import SMALL_TRAINING, free_port

from recsys import platform
from recsys.data.split import temporal_user_split
from recsys.data.synthetic import make_synthetic
from recsys.promotion import bless_and_promote
from recsys.settings import Settings, get_settings
from recsys.training import train


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Settings]]:
    """A champion trained on synthetic data, served by `bentoml serve` on a free port."""
    home = tmp_path_factory.mktemp("service") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECSYS_HOME", str(home))
        mp.setenv("BENTOML_HOME", str(home / "bentoml"))
        mp.setenv("RECSYS_SERVE_PORT", str(free_port()))
        for name, value in SMALL_TRAINING.items():
            mp.setenv(f"RECSYS_{name.upper()}", str(value))
        get_settings.cache_clear()
        settings = get_settings()
        data = make_synthetic()
        split = temporal_user_split(data.interactions)
        candidate = train(data, split, settings, "two_tower")
        assert bless_and_promote(settings, candidate.version, candidate.run_id, split, data.items).promoted
        spec = platform.bentoml_server(settings)
        platform.start(spec, settings)
        try:
            yield spec.url, settings
        finally:
            platform.stop("bentoml", settings)
            get_settings.cache_clear()


def test_known_user_gets_k_ranked_items_with_lineage(served: tuple[str, Settings]) -> None:
    url, _ = served
    body = httpx.post(f"{url}/recommend", json={"user_id": "u1", "k": 7}).json()
    assert len(body["items"]) == 7 and len({i["item_id"] for i in body["items"]}) == 7
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert body["fallback"] is False and body["model_version"] == "1" and len(body["request_id"]) == 32


def test_unknown_user_gets_popularity_fallback(served: tuple[str, Settings]) -> None:
    url, _ = served
    body = httpx.post(f"{url}/recommend", json={"user_id": "never-seen", "k": 3}).json()
    assert body["fallback"] is True and len(body["items"]) == 3


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"user_id": "u1", "k": 0}, "greater than or equal to 1"),
        ({"user_id": "u1", "k": 101}, "less than or equal to 100"),
        ({"user_id": "u1", "k": "ten"}, "valid integer"),
        ({"k": 5}, "Field required"),
        ({"user_id": "", "k": 5}, "at least 1 character"),
        ({"user_id": ["u1"], "k": 5}, "valid string"),
        ("{not json", "Invalid JSON"),
    ],
)
def test_malformed_requests_get_a_4xx_that_names_the_problem(served: tuple[str, Settings], payload, needle: str) -> None:  # noqa: ANN001
    url, _ = served
    content = payload if isinstance(payload, str) else json.dumps(payload)
    response = httpx.post(f"{url}/recommend", content=content, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500
    assert needle in response.text


def test_every_answer_is_in_the_request_log(served: tuple[str, Settings]) -> None:
    url, settings = served
    before = settings.request_log.read_text().count("\n") if settings.request_log.exists() else 0
    ids = [httpx.post(f"{url}/recommend", json={"user_id": f"u{i}", "k": 2}).json()["request_id"] for i in range(5)]
    lines = [json.loads(line) for line in settings.request_log.read_text().splitlines()]
    assert len(lines) == before + 5
    assert [r["request_id"] for r in lines[-5:]] == ids
    assert all(r["model_version"] == "1" and r["history_len"] > 0 for r in lines[-5:])


def test_bentofile_builds_a_bento_with_the_champion(served: tuple[str, Settings]) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    _, settings = served
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "BENTOML_HOME": str(settings.bentoml_home), "BENTOML_DO_NOT_TRACK": "True"}
    bentoml_bin = str(Path(sys.executable).with_name("bentoml"))
    built = subprocess.run([bentoml_bin, "build", "--output", "tag"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    listed = subprocess.run([bentoml_bin, "get", tag, "-o", "json"], env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    info = json.loads(listed.stdout)
    models = [m["tag"] for service in info["services"] for m in service["models"]]
    assert len(models) == 1 and models[0].startswith("recsys:")
    assert any(r["name"] == "recommend" for r in info["schema"]["routes"])
