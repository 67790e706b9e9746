"""Start, find and stop local servers: Prefect, MLflow, Evidently, BentoML (and the app's flow runner).

This is the library part of the platform and names no flow: the flow runner's spec and `up`,
which train and serve through the flows, live in the application layer (recsys.app.stack).

Each server runs as its own process session with its log in the run folder (`settings.run_dir`),
so it outlives the command that started it. Each start is recorded per user, outside any home
(recsys.processes): `stop` ends exactly what was started, and `down_all` stops the servers of
every home, whichever home runs it (`recsys.app.stack.down_all`).
A server of this home that already answers is reused: running `up` twice starts no duplicates;
a port held by another home's server, or by a process recsys did not start, is never adopted
(`PortTaken` names the holder and how to stop it).
Each `ServerSpec` says how its liveness is known: most servers own their health URL, but the
flow runner has no port of its own (its health URL is the Prefect API's), so it counts as up
only while the process we started is alive too.

This module knows nothing of Prefect's or MLflow's Python APIs: it talks HTTP and starts
processes, so `recsys status` and `recsys down` stay fast.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import httpx

from recsys import keys
from recsys.processes import forget, listeners, log_path, recorded, running_pid, server_record, stop, write_record
from recsys.settings import Settings

#: The setting that moves each server with a port of its own (named when its port is taken).
PORT_VARIABLES = {"prefect": "RECSYS_PREFECT_PORT", "mlflow": "RECSYS_MLFLOW_PORT", "evidently": "RECSYS_EVIDENTLY_PORT", "bentoml": "RECSYS_SERVE_PORT"}


class Liveness(Enum):
    """How to tell that a server we know of is up."""

    HTTP = "http"  # its own health URL answers 200 (whoever started it)
    PID_AND_HTTP = "pid+http"  # the URL belongs to another server: our process must live as well


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server, what a person opens, how to know it is up, and the port it holds."""

    name: str
    title: str
    command: list[str]
    health_url: str
    url: str
    liveness: Liveness = Liveness.HTTP
    port: int | None = None  # None: it listens on no port of its own (the flow runner)
    env: dict[str, str] = field(default_factory=dict)
    start_timeout: float = 120.0


def bin_path(name: str) -> str:
    """An executable of this Python environment (prefect, mlflow, bentoml, evidently)."""
    return str(Path(sys.executable).with_name(name))


def server_env(settings: Settings) -> dict[str, str]:
    """Environment that points every process at the same state folder and servers.

    Makes the Prefect home folder too: Prefect creates only its last folder, so a child started
    before anything exists under home (`make demo` on a fresh clone) warned that it failed to.
    """
    home = settings.home.resolve()
    (home / "prefect").mkdir(parents=True, exist_ok=True)
    return {
        "RECSYS_HOME": str(home),
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_API_URL": f"http://{settings.host}:{settings.prefect_port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_URL": f"http://{settings.host}:{settings.prefect_port}",
        "BENTOML_HOME": str(settings.bentoml_home.resolve()),
        "BENTOML_DO_NOT_TRACK": "True",
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "RECSYS_MLFLOW_TRACKING_URI": settings.tracking_uri,
        **({"MLFLOW_S3_ENDPOINT_URL": settings.s3_endpoint_url} if settings.s3_endpoint_url else {}),
    }


def platform_tracking_uri(settings: Settings) -> str:
    """Where processes of the running platform track: the configured URI, else the MLflow server.

    Tracking through the server (rather than its database) means every run shows in its UI
    whatever backend store the server uses.
    """
    return settings.mlflow_tracking_uri or mlflow_server(settings).url


def platform_env(settings: Settings) -> dict[str, str]:
    """`server_env` for processes that work against the running platform (runner, CLI children)."""
    uri = platform_tracking_uri(settings)
    return {**server_env(settings), "MLFLOW_TRACKING_URI": uri, "RECSYS_MLFLOW_TRACKING_URI": uri}


def prefect_server(settings: Settings) -> ServerSpec:
    base = f"http://{settings.host}:{settings.prefect_port}"
    cmd = [bin_path("prefect"), "server", "start", "--host", settings.host, "--port", str(settings.prefect_port)]
    env = {"PREFECT_API_DATABASE_CONNECTION_URL": settings.prefect_database_url} if settings.prefect_database_url else {}
    return ServerSpec("prefect", "Prefect UI", cmd, f"{base}/api/health", base, env=env, port=settings.prefect_port)


def mlflow_server(settings: Settings) -> ServerSpec:
    base = f"http://{settings.host}:{settings.mlflow_port}"
    cmd = [
        bin_path("mlflow"),
        "server",
        "--host",
        settings.host,
        "--port",
        str(settings.mlflow_port),
        "--backend-store-uri",
        settings.backend_store_uri,
        "--artifacts-destination",
        settings.artifacts_destination,
        "--workers",
        "1",
    ]
    # MLflow 3 starts about eight huey job consumers beside its server by default, for GenAI jobs
    # recsys never runs: each imports MLflow (seconds of CPU) and then polls.
    no_jobs = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return ServerSpec("mlflow", "MLflow UI", cmd, f"{base}/health", base, port=settings.mlflow_port, env=no_jobs)


def evidently_ui(settings: Settings) -> ServerSpec:
    base = f"http://{settings.host}:{settings.evidently_port}"
    cmd = [
        bin_path("evidently"),
        "ui",
        "--workspace",
        str(settings.evidently_workspace.resolve()),
        "--host",
        settings.host,
        "--port",
        str(settings.evidently_port),
    ]
    return ServerSpec("evidently", "Evidently UI", cmd, f"{base}/api/version", base, start_timeout=60, port=settings.evidently_port)


def bentoml_server(settings: Settings) -> ServerSpec:
    base = f"http://{settings.host}:{settings.serve_port}"
    cmd = [
        bin_path("bentoml"),
        "serve",
        "recsys.serving.service:RecsysService",
        "--host",
        settings.host,
        "--port",
        str(settings.serve_port),
    ]
    return ServerSpec("bentoml", "Recommendation service (Swagger UI)", cmd, f"{base}/readyz", base, start_timeout=90, port=settings.serve_port)


def is_healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def poll(ready: Callable[[], bool], timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """Check `ready` every half second: True once it holds; False at `timeout` or once `proc` exits."""
    deadline = time.monotonic() + timeout
    while proc is None or proc.poll() is None:
        if ready():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return False


def is_up(spec: ServerSpec, settings: Settings) -> bool:
    """Whether `spec` answers, by the liveness rule it declares."""
    if spec.liveness is Liveness.PID_AND_HTTP and running_pid(settings, spec.name) is None:
        return False
    return is_healthy(spec.health_url)


class ServerUnreachable(ConnectionError):
    """A server that a flow needs does not answer; the message names it and how to start it."""


def require_healthy(name: str, url: str, health_url: str) -> None:
    """Raise ServerUnreachable unless `health_url` answers: fail fast, naming the server."""
    if not is_healthy(health_url):
        raise ServerUnreachable(f"{name} is not reachable at {url}; start it with `recsys up`")


class PortTaken(RuntimeError):
    """A port a server needs is held by another home's server or by a process recsys did not start."""


def _port_in_use(host: str, port: int) -> bool:
    """Whether something accepts connections on `host:port`."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def port_conflict(spec: ServerSpec, settings: Settings) -> str | None:
    """Why `spec` cannot have its port in this home: held by another home's server or a foreign process.

    None when the port is free or held by this home's own `spec` server (which `up` reuses).
    """
    if spec.port is None or not _port_in_use(settings.host, spec.port):
        return None
    own = server_record(settings, spec.name)
    if own is not None and own.port == spec.port:
        return None
    what = f"{spec.title} port {settings.host}:{spec.port}"
    for held in recorded(settings):
        if held.port == spec.port:
            return f"{what} is held by the {held.name} server of the recsys home {held.home}; stop it with `recsys down --home {held.home}`"
    return f"{what} is held by a process recsys did not start{listeners(spec.port)}; stop it, or choose another port with {PORT_VARIABLES[spec.name]}"


def claim_ports(server_specs: list[ServerSpec], settings: Settings) -> None:
    """Raise PortTaken, naming every holder, unless each port of `server_specs` is free or this home's own."""
    conflicts = [conflict for spec in server_specs if (conflict := port_conflict(spec, settings))]
    if conflicts:
        raise PortTaken("\n".join(conflicts))


def launch(spec: ServerSpec, settings: Settings, extra_env: dict[str, str] | None = None) -> subprocess.Popen | None:
    """Start `spec` in the background unless this home's is up already (then None); do not wait.

    Raises PortTaken rather than adopt a server of another home (or a foreign process) on its port.
    """
    claim_ports([spec], settings)
    if is_up(spec, settings):
        return None
    stop(spec.name, settings)  # this home's own that is not up (on another port, hung): replaced, not left unrecorded
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **server_env(settings), **spec.env, **(extra_env or {})}
    with log_path(settings, spec.name).open("ab") as log:
        proc = subprocess.Popen(spec.command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    write_record(settings, spec.name, proc, spec.port)
    return proc


def wait_ready(spec: ServerSpec, settings: Settings, proc: subprocess.Popen) -> None:
    """Wait until `spec` passes its liveness check; stop it and raise if it exits or times out."""
    if poll(lambda: is_up(spec, settings), spec.start_timeout, proc):
        return
    if proc.poll() is not None:
        forget(settings, spec.name)
        raise RuntimeError(f"{spec.name} exited with code {proc.returncode}; see {log_path(settings, spec.name)}")
    stop(spec.name, settings)
    raise TimeoutError(f"{spec.name} did not answer {spec.health_url} within {spec.start_timeout:.0f}s; see {log_path(settings, spec.name)}")


def start(spec: ServerSpec, settings: Settings, extra_env: dict[str, str] | None = None) -> bool:
    """Start `spec` unless it is already up; wait for its health check. True if newly started."""
    proc = launch(spec, settings, extra_env)
    if proc is None:
        return False
    wait_ready(spec, settings, proc)
    return True


def champion_version(settings: Settings) -> str | None:
    """The champion's version from the MLflow server's REST API (None if there is none yet)."""
    url = f"{mlflow_server(settings).url}/api/2.0/mlflow/registered-models/alias"
    response = httpx.get(url, params={"name": settings.registered_model, "alias": settings.champion_alias}, timeout=10)
    if response.status_code in (400, 404) and "not found" in response.text.lower() or "RESOURCE_DOES_NOT_EXIST" in response.text:
        return None  # MLflow 3 answers a missing alias (or model) with 400 "... not found"
    response.raise_for_status()
    return str(response.json()["model_version"]["version"])


def reload_service(settings: Settings) -> str:
    """Ask the running service to load the store's newest champion and challengers now; say what it answered.

    A challenger deployed, promoted or withdrawn takes effect at the service's next reload. A
    service that is not running loads the store when it starts, so its absence is reported, not
    raised. One call reaches one worker (`RECSYS_SERVE_WORKERS` > 1: the others keep their set).
    """
    url = f"{bentoml_server(settings).url}/admin/reload"
    try:
        response = httpx.post(url, headers={"authorization": f"Bearer {keys.admin_token(settings)}"}, timeout=60)
    except httpx.HTTPError:
        return f"no service answered at {url}: it loads the store's models when it starts"
    return f"{url}: {response.status_code} {response.text}"
