"""Shared fixtures: a private state folder per test session and small synthetic data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling
from xdist.workermanage import Producer

from recsys.data.ingest import Dataset
from recsys.data.split import Split, temporal_user_split
from recsys.data.synthetic import make_synthetic
from recsys.schemas import RequestRecord
from recsys.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RECSYS_SHARED_DATA_DIR", REPO.parent / "shared" / "data"))
# Small-data training settings: enough epochs to learn the synthetic tastes in about a second.
SMALL_TRAINING = {"epochs": 20, "batch_size": 256, "embedding_dim": 16}


@pytest.fixture(scope="session")
def synthetic() -> Dataset:
    return make_synthetic()


@pytest.fixture(scope="session")
def synthetic_split(synthetic: Dataset) -> Split:
    return temporal_user_split(synthetic.interactions)


@pytest.fixture(scope="session", autouse=True)
def private_server_records(tmp_path_factory: pytest.TempPathFactory):
    """Record this session's servers apart from the user's, so no `recsys down` here stops another run's servers."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECSYS_STATE_DIR", str(tmp_path_factory.mktemp("state")))
        get_settings.cache_clear()
        yield
    get_settings.cache_clear()


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings whose state (MLflow db, BentoML store, logs) lives in this test's tmp folder."""
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "home" / "bentoml"))
    for name, value in SMALL_TRAINING.items():
        monkeypatch.setenv(f"RECSYS_{name.upper()}", str(value))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_prefect_events() -> None:
    """Flush and stop Prefect's events workers, so the next events go to the current API.

    The client's events worker is one per process and keeps the API URL it was created
    with; task-run states reach the server as events, so a test that switches to another
    Prefect server (a deployment never does) must start a new worker.
    """
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=30, at_exit=False)


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory):
    """A real `prefect server start` (SQLite) on a free loopback port, for the whole session."""
    from recsys import platform

    home = tmp_path_factory.mktemp("prefect") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECSYS_HOME", str(home))
        mp.setenv("RECSYS_PREFECT_PORT", str(free_port()))
        get_settings.cache_clear()
        settings = get_settings()
        spec = platform.prefect_server(settings)
        platform.start(spec, settings)
    get_settings.cache_clear()
    try:
        yield f"{spec.url}/api", settings
    finally:
        platform.stop("prefect", settings)


@pytest.fixture(autouse=True)
def prefect_events_reach_this_tests_server(request: pytest.FixtureRequest) -> None:
    """A test on the session's Prefect server starts with a fresh events worker.

    An xdist worker may have run tests against another Prefect server before (the infra stack's):
    its events worker would still send there, and the drift event that should start a retrain
    would reach the wrong server.
    """
    if "prefect_api" in request.fixturenames:
        fresh_prefect_events()


# Files that share a session fixture run in one xdist worker, so it starts once: the browser tests
# share one `recsys up`, the infra tests one PostgreSQL + S3 stack. Every other file is its own unit.
SHARED_FIXTURE_GROUPS = {
    "tests/browser/": "browser",
    "tests/infra/test_backends.py": "infra-stack",
    "tests/infra/test_faults.py": "infra-stack",
}
# Seconds each heavy unit took on 2 cores (`pytest --durations`); the longest go to the two workers
# first (with --no-loadscope-reorder the queue keeps collection order), so neither is left with a
# long one at the end while the other idles.
MEASURED_S = {"tests/e2e/test_loop.py": 215, "browser": 200, "infra-stack": 190, "tests/infra/test_multiworker.py": 125}


def unit_of_work(nodeid: str) -> str:
    """The unit a test is scheduled in under `pytest -n 2`: its file, or its shared-fixture group."""
    path = nodeid.split("::", 1)[0]
    return next((group for prefix, group in SHARED_FIXTURE_GROUPS.items() if path.startswith(prefix)), path)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest units first (a stable sort keeps the rest in file order)."""
    items.sort(key=lambda item: -MEASURED_S.get(unit_of_work(item.nodeid), 0))


class SharedFixtureScheduling(LoadScopeScheduling):
    """Schedule whole units of work (`unit_of_work`) on a worker.

    xdist's own `--dist loadgroup` marks do not take under pytest 9 (xdist 3.8 renames the item's
    `_nodeid`, which pytest 9 no longer reads), so the grouping is done here, where xdist asks for it.
    """

    def _split_scope(self, nodeid: str) -> str:
        return unit_of_work(nodeid)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> SharedFixtureScheduling:
    return SharedFixtureScheduling(config, log)


def log_record(request_id: str, user_id: str | None) -> RequestRecord:
    """A request-log line for tests where only its ids matter."""
    return RequestRecord(
        request_id=request_id,
        served_at="2026-12-03T00:00:00+00:00",
        user_id=user_id,
        k=1,
        items=["i0"],
        scores=[1.0],
        fallback=False,
        model_version="1",
        history_len=0,
        rec_popularity=0.5,
    )
