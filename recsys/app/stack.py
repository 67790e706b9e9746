"""The platform of the app: the library's servers plus the flow runner, and `up`/`down` over all five.

The library's `recsys.platform` starts, checks and stops servers and names no flow. What
makes them a recsys platform names the flows: the runner serves `flows.serve`'s deployments,
and `up` trains a first champion through `recsys.app.first_champion` (the pipeline flow).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from recsys.platform import (
    Liveness,
    ServerSpec,
    bentoml_server,
    champion_version,
    claim_ports,
    evidently_ui,
    launch,
    mlflow_server,
    platform_env,
    prefect_server,
    wait_ready,
)
from recsys.processes import log_path, recorded, stop
from recsys.settings import Settings

#: The deployment whose registration shows that the flow runner has served its flows.
RUNNER_PROBE_DEPLOYMENT = "pipeline/retrain"


def flow_runner(settings: Settings) -> ServerSpec:
    """The process that serves the flows as deployments (and so runs triggered retrains).

    It has no port: it is up while our process lives and its deployments are registered.
    """
    api = f"http://{settings.host}:{settings.prefect_port}/api"
    probe = f"{api}/deployments/name/{RUNNER_PROBE_DEPLOYMENT}"
    return ServerSpec(
        "runner",
        "Flow runner (deployments)",
        [sys.executable, "-m", "flows.serve"],
        probe,
        f"http://{settings.host}:{settings.prefect_port}/deployments",
        Liveness.PID_AND_HTTP,
        start_timeout=90,
    )


def specs(settings: Settings) -> list[ServerSpec]:
    """Every server of the platform, in start order (`down` stops them in reverse)."""
    return [prefect_server(settings), mlflow_server(settings), evidently_ui(settings), flow_runner(settings), bentoml_server(settings)]


@dataclass
class UpReport:
    """What `up` did: per server "started" or "running", the champion served, and how long it took."""

    servers: dict[str, str] = field(default_factory=dict)
    champion: str | None = None
    trained_first: bool = False
    seconds: float = 0.0


Step = Callable[[str, str], None]


def _launch_all(batch: list[ServerSpec], settings: Settings, step: Step, extra_env: dict[str, str]) -> dict[str, subprocess.Popen | None]:
    """Launch every server of `batch` without waiting (None for one already up)."""
    procs = {}
    for spec in batch:
        step(spec.name, "starting")
        procs[spec.name] = launch(spec, settings, extra_env)
    return procs


def _wait_all(batch: list[ServerSpec], procs: dict[str, subprocess.Popen | None], settings: Settings, report: UpReport, step: Step) -> None:
    """Wait for each launched server of `batch` to pass its check, and record what it did."""
    for spec in batch:
        proc = procs[spec.name]
        if proc is not None:
            wait_ready(spec, settings, proc)
        report.servers[spec.name] = "started" if proc is not None else "running"
        step(spec.name, report.servers[spec.name])


def launch_first_champion(settings: Settings) -> subprocess.Popen:
    """Start `recsys.app.first_champion` beside the servers; its output goes to its log file.

    It trains (gate, train, bless, promote on `settings.dataset` with
    `settings.first_champion_family`) only if the registry has no champion once MLflow
    answers. It runs against the platform (tracked by the MLflow server, recorded by the
    Prefect server), so it shows in both UIs like any later run. The default family is the
    two-stage model, the best on Online Retail (about two minutes there on 2 cores; iALS takes
    seconds); a later run from the Prefect UI replaces it once it ranks better.
    """
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **platform_env(settings)}
    with log_path(settings, "first-champion").open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "recsys.app.first_champion"], stdout=log, stderr=subprocess.STDOUT, env=env)


def finish_first_champion(settings: Settings, proc: subprocess.Popen) -> None:
    """Wait for the first-champion child; raise, pointing at its log, if it failed."""
    if (code := proc.wait()) != 0:
        raise RuntimeError(f"the first pipeline run failed (exit {code}); see {log_path(settings, 'first-champion')}")


def surely_no_champion(settings: Settings) -> bool:
    """True when the registry cannot hold a champion yet: the embedded MLflow database is absent."""
    return settings.mlflow_backend_store_uri is None and not settings.mlflow_db.exists()


def up(settings: Settings, step: Step = lambda name, state: None, train_first: bool = True) -> UpReport:
    """Bring the whole platform up; reuse what already runs.

    Prefect and MLflow start side by side; the Evidently UI and the flow runner as soon as
    they answer (on 2 cores, starting all at once only slows the first two). If `train_first`
    and the registry has no champion, the first-champion child trains one meanwhile; on a
    fresh home it starts beside Prefect and MLflow (its imports take as long as their start).
    The BentoML service starts last, for the champion; without one it is left out.
    """
    started = time.monotonic()
    report = UpReport()
    claim_ports(specs(settings), settings)  # before any start: a taken port leaves nothing half up
    settings.evidently_workspace.mkdir(parents=True, exist_ok=True)
    prefect, mlflow, evidently, runner = prefect_server(settings), mlflow_server(settings), evidently_ui(settings), flow_runner(settings)
    procs = _launch_all([prefect, mlflow], settings, step, {})
    trainer = launch_first_champion(settings) if train_first and surely_no_champion(settings) else None
    try:
        _wait_all([prefect, mlflow], procs, settings, report, step)
        procs |= _launch_all([evidently], settings, step, {}) | _launch_all([runner], settings, step, platform_env(settings))
        report.champion = champion_version(settings)
        if trainer is None and train_first and report.champion is None:
            trainer = launch_first_champion(settings)
        if trainer is not None:
            report.trained_first = report.champion is None
            step("pipeline", f"training a first champion ({settings.first_champion_family})")
            finish_first_champion(settings, trainer)
            step("pipeline", "done")
            report.champion = champion_version(settings)
    finally:
        if trainer is not None and trainer.poll() is None:  # a server failed to start: stop waiting for it
            trainer.kill()
            trainer.wait()
    _wait_all([evidently, runner], procs, settings, report, step)
    if report.champion is not None:
        bentoml = bentoml_server(settings)
        _wait_all([bentoml], _launch_all([bentoml], settings, step, {}), settings, report, step)
    else:
        step("bentoml", "skipped: no champion yet")
    report.seconds = time.monotonic() - started
    return report


def down(settings: Settings) -> list[str]:
    """Stop every server this tool started in `settings.home` (and only those), last started first."""
    return [spec.name for spec in reversed(specs(settings)) if stop(spec.name, settings)]


def down_all(settings: Settings) -> dict[Path, list[str]]:
    """Stop every recorded server, home by home; per home, the servers stopped.

    Whatever started them (`up`, the demo, the loop under `<home>/loop`, a test), whatever home
    this command runs under, and even if their home has since been deleted.
    """
    everywhere = sorted({Path(record.home) for record in recorded(settings)})
    return {home: down(settings.model_copy(update={"home": home})) for home in everywhere}
