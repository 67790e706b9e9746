"""What any home's `up` started, `recsys down` stops from any home; `up` never adopts another home's server.

Home A runs a real MLflow server on a free port (as the loop's `.recsys/loop` does on :5000);
the real CLI then runs as a child process under home B, with a record of servers private to the test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from recsys import platform
from recsys.settings import Settings
from tests.conftest import free_port

RECSYS = str(Path(sys.executable).with_name("recsys"))


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _cli(home: Path, state: Path, *args: str, **ports: int) -> subprocess.CompletedProcess[str]:
    """`recsys <args>` under `home` with the test's record of servers, every port free unless given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECSYS_", "PREFECT_", "MLFLOW_", "BENTOML_"))}
    env |= {"RECSYS_HOME": str(home), "RECSYS_STATE_DIR": str(state), "COLUMNS": "300"}
    env |= {f"RECSYS_{name.upper()}_PORT": str(ports.get(name) or free_port()) for name in ("prefect", "mlflow", "serve", "evidently")}
    return subprocess.run([RECSYS, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def home_a(tmp_path: Path) -> Settings:
    """Home A with its MLflow server up (stopped at the end, should the test not stop it)."""
    settings = Settings(home=tmp_path / "a", mlflow_port=free_port(), state_dir=tmp_path / "state")
    platform.start(platform.mlflow_server(settings), settings)
    yield settings
    platform.stop("mlflow", settings)


@pytest.mark.slow
def test_up_under_another_home_names_the_holder_and_down_from_any_home_stops_it(home_a: Settings, tmp_path: Path) -> None:
    home_b, state, port = tmp_path / "b", home_a.state_dir, home_a.mlflow_port
    pid = platform.running_pid(home_a, "mlflow")
    holder = str(home_a.home.resolve())

    refused = _cli(home_b, state, "up", "--no-train-first", mlflow=port)
    text = " ".join((refused.stdout + refused.stderr).split())
    assert refused.returncode == 1, text
    assert f"held by the mlflow server of the recsys home {holder}" in text and f"`recsys down --home {holder}`" in text, text
    assert not (home_b / "run").exists(), "up started servers before refusing"  # nothing half up
    shown = _cli(home_b, state, "status", mlflow=port)
    assert f"recsys home {holder}" in " ".join(shown.stdout.split()), shown.stdout
    looped = _cli(home_b, state, "loop", mlflow=port)
    assert looped.returncode == 1 and holder in " ".join(looped.stderr.split()), looped.stderr

    elsewhere = _cli(home_b, state, "down", "--home", str(tmp_path / "c"))
    assert elsewhere.returncode == 0 and elsewhere.stdout.strip() == "nothing to stop", elsewhere.stdout
    assert platform.running_pid(home_a, "mlflow") == pid

    shutil.rmtree(home_a.home)  # a deleted home does not hide its servers from `down`
    stopped = _cli(home_b, state, "down")
    assert stopped.returncode == 0 and f"stopped mlflow of {holder}" in " ".join(stopped.stdout.split()), stopped.stdout
    assert platform.running_pid(home_a, "mlflow") is None
    assert os.waitpid(pid, os.WNOHANG)[0] == pid and _port_free(port)  # it exited (the test process, its parent, reaps it)
    assert _cli(home_b, state, "down").stdout.strip() == "nothing to stop"


def test_a_port_held_by_a_process_recsys_did_not_start_is_named_not_adopted(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        refused = _cli(tmp_path / "b", tmp_path / "state", "up", "--no-train-first", mlflow=port)
    text = " ".join((refused.stdout + refused.stderr).split())
    assert refused.returncode == 1, text
    assert f"MLflow UI port 127.0.0.1:{port} is held by a process recsys did not start (pid {os.getpid()}:" in text, text
    assert "RECSYS_MLFLOW_PORT" in text and not (tmp_path / "b" / "run").exists()
