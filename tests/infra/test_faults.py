"""Servers lost mid-flow: the flow fails naming the server, the registry is untouched, and the
next run succeeds once the server is back.

Each test crashes a real server (SIGKILL) at a moment read from the backend databases, not
from timers: the MLflow server once training has logged epochs, the Prefect server while the
pipeline trains its baseline. Retries are Prefect's own (task retries for MLflow, the Prefect
client's request retries for its API, cut to one here so the test is quick).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import pytest
from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

from recsys.platform import ServerUnreachable
from tests.infra.conftest import PipelineRun, Stack, wait_for

pytestmark = pytest.mark.slow


def _registry(stack: Stack) -> tuple[list[tuple], list[tuple]]:
    """Model versions (number, status) and aliases, read straight from MLflow's database."""
    versions = stack.query(stack.mlflow_db, "SELECT version, status FROM model_versions ORDER BY version")
    aliases = stack.query(stack.mlflow_db, "SELECT alias, version FROM registered_model_aliases")
    return versions, aliases


def _running(stack: Stack, family: str, min_loss_steps: int = 0) -> bool:
    """Whether a run of `family` is in progress (and, if asked, has logged that many epochs)."""
    rows = stack.query(
        stack.mlflow_db,
        "SELECT count(m.step) FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'model_family'"
        " LEFT JOIN metrics m ON m.run_uuid = r.run_uuid AND m.key = 'loss'"
        " WHERE r.status = 'RUNNING' AND t.value = %s GROUP BY r.run_uuid",
        (family,),
    )
    return any(steps >= min_loss_steps for (steps,) in rows)


def _kill_when(stack: Stack, server: str, condition: Callable[[], bool]) -> threading.Thread:
    """A thread that crashes `server` as soon as `condition` holds (it fails the test if it never does)."""
    errors: list[BaseException] = []

    def watch() -> None:
        try:
            wait_for(condition, timeout=120, what=f"the moment to kill {server}")
            stack.kill(server)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=watch, daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread


def _flow_run_state(stack: Stack, flow_run_id: str) -> tuple[str, str]:
    """(state type, state message) of a flow run, read from Prefect's database."""
    (row,) = stack.query(
        stack.prefect_db,
        "SELECT s.type, coalesce(s.message, '') FROM flow_run fr JOIN flow_run_state s ON s.id = fr.state_id WHERE fr.id = %s",
        (flow_run_id,),
    )
    return row


def test_mlflow_lost_mid_training_fails_naming_it_and_recovers(production: Stack, first_pipeline: PipelineRun) -> None:
    """Training fails after its task retries, naming MLflow; no version appears; after a restart it trains."""
    from flows.train import train_model

    stack = production
    stack.start("mlflow")  # up, whatever an earlier test did
    before = _registry(stack)
    killer = _kill_when(stack, "mlflow", lambda: _running(stack, "two_tower", min_loss_steps=2))
    with temporary_settings({PREFECT_API_URL: stack.prefect_api}):
        state = train_model(dataset=str(stack.dataset), family="two_tower", return_state=True)
        killer.join()
        assert not killer.errors, killer.errors
        with pytest.raises(ServerUnreachable, match=f"MLflow is not reachable at {stack.mlflow_url}; start it with"):
            state.result()
        assert _registry(stack) == before  # no version, no alias moved
        assert _running(stack, "two_tower")  # the interrupted run: its server died before it could end it
        flow_state, message = _flow_run_state(stack, str(state.state_details.flow_run_id))
        assert flow_state == "FAILED" and "MLflow is not reachable" in message

        seen: list[list[tuple]] = [[]]

        def task_retried() -> bool:
            seen[0] = stack.query(
                stack.prefect_db,
                "SELECT run_count, state_type FROM task_run WHERE flow_run_id = %s",
                (str(state.state_details.flow_run_id),),
            )
            return seen[0] == [(3, "FAILED")]  # the first try and both of fit_and_log's retries

        try:
            wait_for(task_retried, timeout=30, what="the task run's 3 failed attempts reaching Prefect's database")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; task runs (run_count, state): {seen[0]}") from exc

        stack.start("mlflow")
        result = train_model(dataset=str(stack.dataset), family="two_tower")
    versions, aliases = _registry(stack)
    assert versions == [*before[0], (int(result["version"]), "READY")]
    assert aliases == before[1]  # training alone never moves the champion
    (status,) = stack.query(stack.mlflow_db, "SELECT status FROM runs WHERE run_uuid = %s", (result["run_id"],))
    assert status == ("FINISHED",)


def test_prefect_lost_mid_pipeline_fails_and_next_run_succeeds(production: Stack, first_pipeline: PipelineRun) -> None:
    """The pipeline stops before registering anything; the champion stays; a run after restart completes."""
    from flows.pipeline import pipeline

    stack = production
    stack.start("mlflow")
    stack.start("prefect")
    before = _registry(stack)
    killer = _kill_when(stack, "prefect", lambda: _running(stack, "popularity"))
    with temporary_settings({PREFECT_API_URL: stack.prefect_api, PREFECT_CLIENT_MAX_RETRIES: 1}):
        with pytest.raises(httpx.ConnectError) as failure:
            pipeline(dataset=str(stack.dataset))
        killer.join()
        assert not killer.errors, killer.errors
        assert str(failure.value.request.url).startswith(stack.prefect_api)  # the request that found it gone
        assert _registry(stack) == before  # the two-tower was never trained, so never registered

        stack.start("prefect")
        state = pipeline(dataset=str(stack.dataset), return_state=True)
        result = state.result()
    assert _flow_run_state(stack, str(state.state_details.flow_run_id))[0] == "COMPLETED"
    versions, aliases = _registry(stack)
    assert versions == [*before[0], (int(result["candidate"]["version"]), "READY")]
    champion = result["candidate"]["version"] if result["promotion"]["promoted"] else before[1][0][1]
    assert aliases == [("champion", int(champion))]
