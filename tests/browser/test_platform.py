"""`recsys up`/`status`/`down` on the platform the browser tests share: no duplicates, all up."""

from __future__ import annotations

import httpx
import psutil

from recsys import platform
from recsys.app import stack
from tests.browser.conftest import Platform


def test_up_started_all_five_servers_and_a_second_up_starts_none(platform_up: Platform) -> None:
    assert platform_up.up_output.count("started") == 5, platform_up.up_output
    pids = {spec.name: platform.running_pid(platform_up.settings, spec.name) for spec in stack.specs(platform_up.settings)}
    again = platform_up.cli("up")
    assert again.returncode == 0 and "started" not in again.stdout and again.stdout.count("running") == 5, again.stdout
    assert {name: platform.running_pid(platform_up.settings, name) for name in pids} == pids
    # MLflow's GenAI job consumers are off: eight polling processes (over a core, idle) that recsys never uses
    mlflow_tree = psutil.Process(pids["mlflow"]).children(recursive=True)
    assert not [p for p in mlflow_tree if "huey" in " ".join(p.cmdline())], [p.cmdline() for p in mlflow_tree]


def test_status_lists_every_server_up_and_the_monitor_is_scheduled(platform_up: Platform) -> None:
    shown = platform_up.cli("status")
    assert shown.returncode == 0, shown.stdout
    for spec in stack.specs(platform_up.settings):
        assert spec.url in shown.stdout
    api = platform.prefect_server(platform_up.settings).url + "/api"
    monitor = httpx.get(f"{api}/deployments/name/monitor/monitor").json()
    assert monitor["schedules"] and monitor["schedules"][0]["schedule"]["interval"] == 3600
    train = httpx.get(f"{api}/deployments/name/train/train").json()
    assert train["parameter_openapi_schema"]["properties"]["family"]["enum"][0] == "two_tower"
    assert train["parameters"]["dataset"] == platform_up.settings.dataset
