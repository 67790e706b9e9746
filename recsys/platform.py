"""Start, find and stop the local servers (Prefect, MLflow, BentoML, the flow runner).

Each server runs as its own process session with its log and pid file in the run folder,
so it outlives the command that started it and `stop` ends exactly what was started.
Starting a server whose health check already answers reuses it: running twice starts no
duplicates.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from recsys.settings import Settings


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server and how to know it is up."""

    name: str
    command: list[str]
    health_url: str
    url: str
    env: dict[str, str] = field(default_factory=dict)
    start_timeout: float = 120.0


def bin_path(name: str) -> str:
    """An executable of this Python environment (prefect, mlflow, bentoml)."""
    return str(Path(sys.executable).with_name(name))


def server_env(settings: Settings) -> dict[str, str]:
    """Environment that points every process at the same state folder and servers."""
    home = settings.home.resolve()
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
    }


def prefect_server(settings: Settings) -> ServerSpec:
    base = f"http://{settings.host}:{settings.prefect_port}"
    cmd = [bin_path("prefect"), "server", "start", "--host", settings.host, "--port", str(settings.prefect_port)]
    return ServerSpec("prefect", cmd, f"{base}/api/health", base)


def mlflow_server(settings: Settings) -> ServerSpec:
    base = f"http://{settings.host}:{settings.mlflow_port}"
    db = (settings.home / "mlflow.db").resolve()
    cmd = [
        bin_path("mlflow"), "server", "--host", settings.host, "--port", str(settings.mlflow_port),
        "--backend-store-uri", f"sqlite:///{db}",
        "--artifacts-destination", str(settings.artifacts_dir.resolve()),
        "--workers", "1",
    ]  # fmt: skip
    return ServerSpec("mlflow", cmd, f"{base}/health", base)


def bentoml_server(settings: Settings) -> ServerSpec:
    base = f"http://{settings.host}:{settings.serve_port}"
    cmd = [
        bin_path("bentoml"), "serve", "recsys.serving.service:RecsysService",
        "--host", settings.host, "--port", str(settings.serve_port),
    ]  # fmt: skip
    return ServerSpec("bentoml", cmd, f"{base}/readyz", base, start_timeout=90)


def flow_runner(settings: Settings) -> ServerSpec:
    """The process that serves the flows as deployments (and so runs triggered retrains)."""
    api = f"http://{settings.host}:{settings.prefect_port}/api"
    return ServerSpec("runner", [sys.executable, "-m", "flows.serve"], f"{api}/health", api, start_timeout=60)


def is_healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _pid_file(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.pid"


def running_pid(settings: Settings, name: str) -> int | None:
    """The pid of a server this tool started and that is still alive, else None."""
    path = _pid_file(settings, name)
    if not path.exists():
        return None
    pid = int(path.read_text().strip() or 0)
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError, ValueError):
        path.unlink(missing_ok=True)
        return None
    return pid


def start(spec: ServerSpec, settings: Settings, extra_env: dict[str, str] | None = None) -> bool:
    """Start `spec` unless it is already up; wait for its health check. True if newly started."""
    if spec.name != "runner" and is_healthy(spec.health_url):
        return False
    if spec.name == "runner" and running_pid(settings, spec.name):
        return False
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    log = (settings.run_dir / f"{spec.name}.log").open("ab")
    env = {**os.environ, **server_env(settings), **spec.env, **(extra_env or {})}
    proc = subprocess.Popen(spec.command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    _pid_file(settings, spec.name).write_text(str(proc.pid))
    deadline = time.monotonic() + spec.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{spec.name} exited with code {proc.returncode}; see {settings.run_dir / (spec.name + '.log')}")
        if is_healthy(spec.health_url):
            return True
        time.sleep(0.5)
    stop(spec.name, settings)
    raise TimeoutError(f"{spec.name} did not answer {spec.health_url} within {spec.start_timeout:.0f}s")


def _reap(pid: int) -> None:
    """Collect an exited child of this process, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop(name: str, settings: Settings, timeout: float = 20.0) -> bool:
    """Stop a server started by `start` (its whole process group). True if one was running."""
    pid = running_pid(settings, name)
    if pid is None:
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(pid)
            os.kill(pid, 0)
            time.sleep(0.2)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _pid_file(settings, name).unlink(missing_ok=True)
    return True
