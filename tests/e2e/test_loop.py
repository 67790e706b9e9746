"""The whole loop on small data, every part real: a Prefect server with the retrain trigger,
MLflow on SQLite, GX, BentoML over HTTP and Evidently.

Undrifted traffic must start nothing; a planted shift (new users, moved tastes) must be
detected, emit the drift event, make the Prefect server run the retrain deployment, and end
with a new champion that the service then answers with.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pandas as pd
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from recsys import platform, registry
from recsys.data.synthetic import make_synthetic
from recsys.monitoring.traffic import replay, visits
from recsys.settings import get_settings

CUT, SHIFT = "2024-03-01", "2024-03-13"


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A synthetic shop whose tastes move and whose new users surge at SHIFT."""
    data = make_synthetic(days=120, shift_at=0.6, new_user_share=0.5, seed=3)
    path = tmp_path / "shop.parquet"
    data.interactions.to_parquet(path)
    data.items.to_parquet(tmp_path / "shop.items.parquet")
    return path


def test_drift_triggers_retrain_through_prefect_and_new_champion_is_served(
    prefect_api, settings, shop: Path, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    api, server_settings = prefect_api
    monkeypatch.setenv("RECSYS_PREFECT_PORT", str(server_settings.prefect_port))
    monkeypatch.setenv("RECSYS_SERVE_PORT", str(__import__("tests.conftest").conftest.free_port()))
    monkeypatch.setenv("RECSYS_WINDOW_SIZE", "500")
    get_settings.cache_clear()
    settings = get_settings()
    from flows.demo import wait_for_retrain
    from flows.monitor import monitor
    from flows.pipeline import pipeline

    with temporary_settings({PREFECT_API_URL: api}):
        platform.start(platform.flow_runner(settings), settings)
        try:
            first = pipeline(dataset=str(shop), train_until=CUT)
            assert first["promotion"]["promoted"], first["promotion"]
            platform.start(platform.bentoml_server(settings), settings)
            url = platform.bentoml_server(settings).url
            events = pd.read_parquet(shop)
            calm = visits(events[(events["timestamp"] >= CUT) & (events["timestamp"] < SHIFT)])
            assert replay(url, calm).failed == 0
            quiet = monitor(dataset=str(shop))
            assert not quiet["retrain"], quiet["reasons"]

            shifted = visits(events[events["timestamp"] >= SHIFT])
            assert replay(url, shifted).failed == 0
            since = pd.Timestamp.now(tz="UTC").timestamp()
            watch = monitor(dataset=str(shop))
            assert watch["retrain"], watch["reasons"]
            assert "known_user" in watch["drift"]["drifted_columns"]

            state = wait_for_retrain(since, timeout=300)
            assert state is not None and state[0] == "Completed", state
            assert registry.champion(settings) == "2"
            platform.stop("bentoml", settings)
            platform.start(platform.bentoml_server(settings), settings)
            body = httpx.post(f"{url}/recommend", json={"user_id": "u1", "k": 5}).json()
            assert body["model_version"] == "2"
            assert Path(watch["drift"]["html_path"]).stat().st_size > 10_000
        finally:
            platform.stop("bentoml", settings)
            platform.stop("runner", settings)
