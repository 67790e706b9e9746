"""The `recsys` CLI: every command documents itself, and a missing server is named, not a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from recsys.app.cli import app
from recsys.settings import Settings, get_settings
from tests.conftest import free_port

COMMANDS = ["demo", "up", "down", "status", "synth", "train", "promote", "challenge", "withdraw", "serve", "monitor", "simulate", "forget"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output and len(result.output) > 200


@pytest.mark.parametrize(("command", "server"), [("train", "MLflow"), ("monitor", "Prefect"), ("simulate", "The recommendation service")])
def test_a_server_that_is_not_running_is_named_with_the_fix(command: str, server: str, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PREFECT", "MLFLOW", "SERVE"):
        monkeypatch.setenv(f"RECSYS_{name}_PORT", str(free_port()))
    get_settings.cache_clear()
    result = CliRunner().invoke(app, [command])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert f"{server} is not reachable at http://127.0.0.1:" in text and "start it with `recsys up`" in text


def test_status_says_down_and_fails_when_nothing_runs(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PREFECT", "MLFLOW", "SERVE", "EVIDENTLY"):
        monkeypatch.setenv(f"RECSYS_{name}_PORT", str(free_port()))
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["status"])
    cells = [line.split("│") for line in result.output.splitlines() if line.startswith("│")]
    state = {row[1].strip(): row[2].strip() for row in cells if len(row) > 2 and row[1].strip()}
    assert result.exit_code == 1 and all(state[s] == "down" for s in ("prefect", "mlflow", "evidently", "runner", "bentoml")), state
    assert all(f"{name}:" in result.output for name in ("log-key", "admin-token", "audit-key"))  # where this install's secrets are


def test_synth_writes_a_store_that_is_a_dataset_name(tmp_path) -> None:
    from recsys.data.ingest import load_dataset

    target = tmp_path / "shop"
    result = CliRunner().invoke(app, ["synth", str(target), "--rows", "5000", "--months", "3"])
    assert result.exit_code == 0, result.output
    assert "interactions in 3 monthly files" in " ".join(result.output.split())
    assert 4_500 < len(load_dataset(str(target)).interactions) <= 5_000
    again = CliRunner().invoke(app, ["synth", str(target), "--rows", "10"])
    assert again.exit_code == 1 and "exists and is not empty" in " ".join(again.output.split())


def test_replaying_traffic_loads_neither_keras_nor_tensorflow() -> None:
    """`recsys simulate` draws a bar and sends HTTP: what it imports must not pull in TensorFlow (seconds at start)."""
    import subprocess
    import sys

    simulate_imports = "import recsys.app.cli, recsys.data.ingest, recsys.simulation.traffic, recsys.progress, recsys.schemas"
    code = f"import sys; {simulate_imports}; print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_a_child_on_a_fresh_home_starts_prefect_without_a_warning(tmp_path) -> None:
    """`make demo` on a fresh clone: the platform's environment names a Prefect home Prefect can use."""
    import os
    import subprocess
    import sys

    from recsys import platform

    env = {**os.environ, **platform.server_env(Settings(home=tmp_path / "fresh" / "home"))}
    done = subprocess.run([sys.executable, "-W", "always", "-c", "import prefect.context"], env=env, capture_output=True, text=True, check=True)
    assert "Prefect home" not in done.stderr and (tmp_path / "fresh" / "home" / "prefect").is_dir()
