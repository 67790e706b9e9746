"""A worse challenger on live traffic, every part real: replayed visits through the BentoML service,
the canary flow on the session's Prefect server (run as the loop runs it), MLflow on SQLite.

The popularity baseline is deployed as shadow and canary beside an EASE champion on synthetic
tastes, answering half the users; after a short replay the canary flow must roll it back, the
service must answer from the champion alone, and Prefect and MLflow must both tell the story.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import httpx
import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterStartTime
from prefect.settings import PREFECT_API_URL, temporary_settings

from recsys import challengers, registry
from recsys.data.ingest import Dataset
from recsys.data.split import Split
from recsys.models.base import EmbeddingModel
from recsys.models.ease import EASEModel
from recsys.models.popularity import PopularityModel
from recsys.schemas import TS_COL
from recsys.serving import index
from recsys.settings import Settings
from recsys.simulation.traffic import replay, visits
from tests.conftest import fresh_prefect_events
from tests.integration.served import served_champion

WINDOW = 300  # visits per window: about 150 requests in each arm at share 0.5
WINDOWS = 6  # the replay's 1,800 visits: popularity's online hit rate is about half EASE's, decided in 2-3 windows


def before_replay(interactions: pd.DataFrame) -> pd.Series:
    """The visits the models may learn from: the first 80% of the time (the rest is replayed), as the loop trains to its cut."""
    return interactions[TS_COL] < interactions[TS_COL].quantile(0.8)


def registered(settings: Settings, model: EmbeddingModel) -> str:
    """`model` logged and registered as a new version, without a training run's evaluation and plots (seconds saved)."""
    registry.configure(settings)
    with mlflow.start_run() as run:
        uri = registry.log_model(model)
    return registry.register(uri, settings, run.info.run_id, {})


def publish_with_worse_canary(settings: Settings, data: Dataset, split: Split) -> None:
    """An EASE champion, and the popularity baseline deployed as its shadow and canary (judged online only)."""
    past = data.interactions[before_replay(data.interactions)]
    model = EASEModel().fit(past, data.items).export()
    champion = registered(settings, model)
    registry.make_champion(settings, champion, model, *index.build_checked(model.item_vectors, model.user_vectors))
    worse = registered(settings, PopularityModel().fit(past, data.items).export())
    for role in challengers.ROLES:
        challengers.deploy(settings, worse, role)


async def canary_runs(since: datetime) -> list[str]:
    """The states of the canary flow's runs started since `since` (earlier tests of the session ran some too)."""
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["canary"])),
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since)),
        )
    return [run.state.name for run in runs if run.state]


def rolled_back_events(api: str, since: datetime) -> list[dict]:
    """The recsys.canary.rolled_back events since `since`, once the server has persisted them (it does so in batches)."""
    fresh_prefect_events()
    body = {"filter": {"event": {"name": ["recsys.canary.rolled_back"]}, "occurred": {"since": since.isoformat()}}, "limit": 10}
    deadline, found = time.monotonic() + 20, []
    while not found and time.monotonic() < deadline:
        time.sleep(0.5)
        found = httpx.post(f"{api}/events/filter", json=body, timeout=10).json()["events"]
    return found


def test_a_worse_canary_is_rolled_back_on_replayed_traffic(prefect_api, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.app.loop import judge_canary

    api, _ = prefect_api
    began = datetime.now(UTC)
    monkeypatch.setenv("RECSYS_CANARY_MIN_USERS", "10")  # the flow's rule: small data decides in a window or two
    # The service's arms: half the users, the same ones on every run. Arms are drawn by a hash of
    # the pseudonym, so a log key made per install drew other users each run, and one of ten runs
    # seen held the canary through all six windows (pooled -0.035 [-0.066, -0.004] against a bar of
    # -0.007); with this key it was rolled back after one window in each of four runs (0.071 against 0.164).
    arms = {"RECSYS_CANARY_SHARE": "0.5", "RECSYS_LOG_KEY": "canary-replay-test-log-key-of-at-least-32-bytes"}
    with served_champion(tmp_path / "home", publish_with_worse_canary, extra_env=arms) as served, temporary_settings({PREFECT_API_URL: api}):
        settings = served.settings
        champion, worse = registry.champion(settings), challengers.challenger(settings, "canary").version
        interactions = served.data.interactions
        live = visits(interactions[~before_replay(interactions)])
        steps = []
        for start in range(0, WINDOWS * WINDOW, WINDOW):
            replayed_from = datetime.now(UTC)
            stats = replay(served.url, live.iloc[start : start + WINDOW])
            assert stats.ok == WINDOW and stats.hits > 0
            steps.append(judge_canary(settings, replayed_from, WINDOW))
            if steps[-1].action != "hold":
                break
        assert steps[-1].action == "rollback" and steps[-1].text == "canary: rolled back", steps
        assert steps[-1].champion == champion
        arms = {httpx.post(f"{served.url}/recommend", json={"user_id": u, "k": 5}).json()["arm"] for u in live["user_id"].astype(str)[:40]}
        assert arms == {"champion"}  # the flow's reload took the canary out of service
        assert sorted(asyncio.run(canary_runs(began))) == ["Completed"] * len(steps)
        (event,) = rolled_back_events(api, began)
        assert event["payload"]["version"] == worse
    assert challengers.challenger(settings, "canary") is None and challengers.challenger(settings, "shadow") is None
    assert registry.champion(settings) == champion
    tags = MlflowClient().get_model_version(settings.registered_model, worse).tags
    assert tags[challengers.DECISION] == "rolled_back" and "worse by more than the margin" in tags[challengers.REASON]
    fresh_prefect_events()  # sent while the server is up, not retried against a stopped one at exit
