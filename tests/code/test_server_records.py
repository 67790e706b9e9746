"""A server record names one process: a pid the system has given to another process is never signalled."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

from recsys import platform, processes
from recsys.settings import Settings
from tests.conftest import free_port


def test_a_reused_pid_is_not_taken_for_the_recorded_server(settings: Settings, tmp_path) -> None:
    settings = settings.model_copy(update={"state_dir": tmp_path / "state"})
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        processes.write_record(settings, "mlflow", bystander, settings.mlflow_port)
        (path,) = settings.servers_dir.glob("*.json")
        record = processes.ServerRecord(**json.loads(path.read_text()))
        assert record.home == str(settings.home.resolve()) and record.port == settings.mlflow_port
        assert processes.running_pid(settings, "mlflow") == bystander.pid and processes.recorded(settings) == [record]
        # The same pid, but a process that started at another time: the pid was given to another.
        path.write_text(json.dumps(dataclasses.asdict(record) | {"started": record.started - 100}))
        assert processes.stop("mlflow", settings) is False and bystander.poll() is None  # not signalled
        assert not path.exists() and processes.recorded(settings) == []  # and the stale record is gone
    finally:
        bystander.kill()
        bystander.wait()


def test_stop_ends_the_recorded_process_and_its_record(settings: Settings, tmp_path) -> None:
    settings = settings.model_copy(update={"state_dir": tmp_path / "state"})
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    processes.write_record(settings, "runner", server, None)
    assert processes.stop("runner", settings) is True
    assert server.poll() is not None and processes.running_pid(settings, "runner") is None and processes.recorded(settings) == []


def test_a_start_replaces_this_homes_server_that_is_not_up_rather_than_lose_it(settings: Settings, tmp_path) -> None:
    settings = settings.model_copy(update={"state_dir": tmp_path / "state"})
    nowhere = f"http://127.0.0.1:{free_port()}/health"  # never answers: the server is not up
    spec = platform.ServerSpec("runner", "a server", [sys.executable, "-c", "import time; time.sleep(60)"], nowhere, nowhere, platform.Liveness.PID_AND_HTTP)
    first = platform.launch(spec, settings)
    second = platform.launch(spec, settings)
    try:
        assert first.wait(timeout=30) is not None and second.poll() is None  # the first was stopped, not orphaned
        assert [record.pid for record in processes.recorded(settings)] == [second.pid]
    finally:
        processes.stop("runner", settings)
        second.wait()
