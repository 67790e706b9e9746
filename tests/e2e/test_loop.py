"""The whole loop on small data, every part real: a Prefect server with the retrain trigger,
MLflow on SQLite, GX, BentoML over HTTP and Evidently.

Undrifted traffic must start nothing; a planted shift (new users, moved tastes) must be
detected after the hysteresis window, emit the drift event, make the Prefect server run the
retrain deployment, and end with a new champion that the service then answers with.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from recsys import platform, registry
from recsys.app import stack
from recsys.data.synthetic import make_synthetic
from recsys.settings import get_settings
from recsys.simulation.timeline import loop_figures
from tests.conftest import free_port

CUT, SHIFT = "2024-03-01", "2024-03-13"


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A synthetic shop whose tastes move and whose new users surge at SHIFT."""
    data = make_synthetic(days=120, shift_at=0.6, new_user_share=0.5, seed=3)
    path = tmp_path / "shop.parquet"
    data.interactions.to_parquet(path)
    data.items.to_parquet(tmp_path / "shop.items.parquet")
    return path


def test_drift_triggers_retrain_through_prefect_and_new_champion_is_served(prefect_api, settings, shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api, server_settings = prefect_api
    monkeypatch.setenv("RECSYS_PREFECT_PORT", str(server_settings.prefect_port))
    monkeypatch.setenv("RECSYS_SERVE_PORT", str(free_port()))
    get_settings.cache_clear()
    settings = get_settings()
    from flows.pipeline import pipeline
    from recsys.app.loop import run_loop

    with temporary_settings({PREFECT_API_URL: api}):
        platform.start(stack.flow_runner(settings), settings)
        try:
            first = pipeline(dataset=str(shop), train_until=CUT)
            assert first["promotion"]["promoted"], first["promotion"]
            rows = run_loop(settings, str(shop), CUT, window=500, max_windows=7)
        finally:
            platform.stop("bentoml", settings)
            platform.stop("runner", settings)

    before_shift = [r for r in rows if r.end < SHIFT]
    assert before_shift and all(r.decision == "hold: threshold" for r in before_shift), rows  # calm: no drift
    retrains = [r for r in rows if r.decision.startswith("retrain")]
    # each triggered run completes; one may keep the champion when its candidate is not better
    assert retrains and all(r.decision.startswith("retrain → Completed") for r in retrains), rows
    first = rows.index(retrains[0])
    assert rows[first - 1].end >= SHIFT and "hysteresis" in rows[first - 1].decision  # waits for a 2nd window
    champion = registry.champion(settings)
    assert champion != "1" and rows[-1].serving_version == champion  # a retrain was promoted and served
    # the replay goes on after a retrain is promoted: at least two windows show how retrained champions do
    assert sum(r.serving_version != "1" for r in rows) >= 2, [(r.window, r.serving_version, r.decision) for r in rows]
    assert all(r.requests == 500 and 0 < r.hit_rate < 1 for r in rows)
    figures = loop_figures(rows, SHIFT)  # the figures `recsys loop` prints, on this small run
    assert figures.retrains_without_shift == 0 and figures.detected_after_windows == 1
    reports = list(settings.reports_dir.glob("drift-*.html"))
    assert len(reports) == len(rows) and min(p.stat().st_size for p in reports) > 10_000
