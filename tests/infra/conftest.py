"""The production stack on loopback: MLflow and Prefect servers on PostgreSQL, artifacts in S3.

PostgreSQL is the machine's real server (127.0.0.1:5432, trust auth); each session creates
its own databases and drops them at the end. The S3-compatible store is moto's server mode
on a free port. The servers are started once a session through `recsys.platform`, with the
production configuration selected by settings only (RECSYS_* values, no code change).
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import boto3
import psycopg2
import pytest
from moto.server import ThreadedMotoServer

from recsys import platform
from recsys.data.ingest import Dataset
from recsys.settings import Settings, get_settings
from tests.conftest import SMALL_TRAINING, free_port, fresh_prefect_events

PG = "host=127.0.0.1 port=5432 user=postgres"
PG_URL = "postgres@127.0.0.1:5432"
BUCKET = "recsys-artifacts"
# moto accepts any credentials; the servers and clients read them from the standard AWS_* names.
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass(frozen=True)
class Stack:
    """Where the production-configured servers of this session live."""

    env: dict[str, str]  # RECSYS_* and AWS_* values that select this stack
    settings: Settings
    mlflow_db: str  # libpq DSN of the MLflow database
    prefect_db: str  # libpq DSN of the Prefect database
    s3_endpoint: str
    dataset: Path  # the synthetic interactions as parquet (its items beside it)

    @property
    def prefect_api(self) -> str:
        return f"{platform.prefect_server(self.settings).url}/api"

    @property
    def mlflow_url(self) -> str:
        return platform.mlflow_server(self.settings).url

    def s3(self):
        return boto3.client("s3", endpoint_url=self.s3_endpoint, **_boto_credentials())

    def query(self, dsn: str, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows of `sql` run straight on a backend database (not through the servers)."""
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall()
        conn.close()
        return rows

    def start(self, name: str) -> None:
        """Start (or restart) the `mlflow` or `prefect` server of this stack; wait until healthy."""
        spec = platform.mlflow_server(self.settings) if name == "mlflow" else platform.prefect_server(self.settings)
        # On a shared 2-core machine MLflow's start (migrations on PostgreSQL) can pass 2 minutes.
        platform.start(replace(spec, start_timeout=300), self.settings, AWS_ENV)

    def kill(self, name: str) -> None:
        """Crash a server: SIGKILL its whole process group, no graceful shutdown."""
        pid = platform.running_pid(self.settings, name)
        assert pid is not None, f"{name} is not running"
        os.killpg(pid, signal.SIGKILL)
        platform.stop(name, self.settings)  # reaps the process and removes its record


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS_ENV["AWS_DEFAULT_REGION"],
    }


@pytest.fixture(scope="session")
def databases() -> Iterator[tuple[str, str]]:
    """Two fresh PostgreSQL databases (MLflow, Prefect), dropped at the end of the session."""
    names = [f"recsys_test_{secrets.token_hex(4)}_{part}" for part in ("mlflow", "prefect")]
    admin = psycopg2.connect(f"{PG} dbname=test")
    admin.autocommit = True
    with admin.cursor() as cur:
        for name in names:
            cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield names[0], names[1]
    finally:
        with admin.cursor() as cur:
            for name in names:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3-compatible server on a free loopback port, with the artifacts bucket."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, **_boto_credentials()).create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture(scope="session")
def stack(databases: tuple[str, str], s3_endpoint: str, synthetic: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """MLflow (PostgreSQL + S3) and Prefect (PostgreSQL) servers, started in parallel."""
    root = tmp_path_factory.mktemp("infra")
    mlflow_db, prefect_db = databases
    mlflow_port = free_port()
    env = {
        "RECSYS_HOME": str(root / "home"),
        "RECSYS_PREFECT_PORT": str(free_port()),
        "RECSYS_MLFLOW_PORT": str(mlflow_port),
        "RECSYS_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        "RECSYS_MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg2://{PG_URL}/{mlflow_db}",
        "RECSYS_MLFLOW_ARTIFACTS_DESTINATION": f"s3://{BUCKET}/mlflow",
        "RECSYS_S3_ENDPOINT_URL": s3_endpoint,
        "RECSYS_PREFECT_DATABASE_URL": f"postgresql+asyncpg://{PG_URL}/{prefect_db}",
        "BENTOML_HOME": str(root / "home" / "bentoml"),
        **{f"RECSYS_{name.upper()}": str(value) for name, value in SMALL_TRAINING.items()},
        "RECSYS_CANDIDATE_FAMILY": "two_tower",  # these tests read a neural family's per-epoch rows and kill servers mid-epoch
        **AWS_ENV,
        # Fail in seconds, not minutes, when a server is down (the default backs off for ~2 min).
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    }
    settings = Settings(**{k.removeprefix("RECSYS_").lower(): v for k, v in env.items() if k.startswith("RECSYS_")})
    dataset = root / "synthetic.parquet"
    synthetic.interactions.to_parquet(dataset)
    synthetic.items.to_parquet(root / "synthetic.items.parquet")
    result = Stack(env, settings, f"{PG} dbname={mlflow_db}", f"{PG} dbname={prefect_db}", s3_endpoint, dataset)
    errors: list[BaseException] = []

    def start(name: str) -> None:
        try:
            result.start(name)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(name,)) for name in ("mlflow", "prefect")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        if errors:
            raise errors[0]
        yield result
    finally:
        platform.stop("mlflow", settings)
        platform.stop("prefect", settings)


@pytest.fixture
def production(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """This test's process selects the stack by environment only, as a deployment would."""
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    fresh_prefect_events()
    yield stack
    fresh_prefect_events()
    get_settings.cache_clear()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` every 0.1 s; fail naming `what` if it does not hold within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f}s")


@dataclass(frozen=True)
class PipelineRun:
    """One pipeline run on the stack: its Prefect flow run id and what the flow returned."""

    flow_run_id: str
    result: dict


@pytest.fixture(scope="session")
def first_pipeline(stack: Stack) -> PipelineRun:
    """validate → train → register → promote on the stack once; later tests read what it left."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.pipeline import pipeline

    with pytest.MonkeyPatch.context() as mp, temporary_settings({PREFECT_API_URL: stack.prefect_api}):
        for name, value in stack.env.items():
            mp.setenv(name, value)
        get_settings.cache_clear()
        state = pipeline(dataset=str(stack.dataset), return_state=True)
        result = state.result()
    get_settings.cache_clear()
    return PipelineRun(str(state.state_details.flow_run_id), result)
