"""A pid file names one process: a pid the system has given to another process is never signalled."""

from __future__ import annotations

import json
import subprocess
import sys

import psutil

from recsys import homes, processes
from recsys.settings import Settings


def test_a_reused_pid_is_not_taken_for_the_recorded_server(settings: Settings) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = psutil.Process(bystander.pid).create_time()
        settings.run_dir.mkdir(parents=True)
        pid_file = settings.run_dir / "mlflow.pid"
        pid_file.write_text(json.dumps({"pid": bystander.pid, "started": started - 100, "port": settings.mlflow_port}))
        assert processes.running_pid(settings, "mlflow") is None and not pid_file.exists()
        pid_file.write_text(json.dumps({"pid": bystander.pid, "started": started - 100, "port": settings.mlflow_port}))
        assert processes.stop("mlflow", settings) is False and bystander.poll() is None  # still running
        pid_file.write_text(json.dumps({"pid": bystander.pid, "started": started, "port": settings.mlflow_port}))
        assert processes.running_pid(settings, "mlflow") == bystander.pid
    finally:
        bystander.kill()
        bystander.wait()
    assert processes.running_pid(settings, "mlflow") is None


def test_homes_are_recorded_once_each_and_forgotten(settings: Settings, tmp_path) -> None:
    settings = settings.model_copy(update={"state_dir": tmp_path / "state"})
    other = settings.model_copy(update={"home": tmp_path / "other"})
    for each in (settings, other, settings):
        homes.record(each)
    assert homes.recorded(settings) == sorted([settings.home.resolve(), other.home.resolve()])
    homes.forget(settings, other.home)
    assert homes.recorded(settings) == [settings.home.resolve()]
