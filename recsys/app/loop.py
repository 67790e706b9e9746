"""The closed loop, window by window: replay live traffic, monitor, retrain on drift, swap.

Used by the demo and by `recsys loop`. Each window of replayed visits is sent to the running
service; the monitor flow then judges the latest window; when it emits the drift event, the
loop waits for the Prefect server's retrain run to end and restarts the service on the new
champion. The timeline records what happened per window.

With `RECSYS_PROMOTION_MODE=online` a blessed retrain does not take over at once: it is deployed
as shadow and canary (recsys.promotion), and from the next window on the canary flow judges it
on the windows it served, then promotes it (the `serving` column moves to it) or rolls it back.
In the default direct mode no canary is ever deployed and the canary step never runs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
from prefect.client.schemas.sorting import FlowRunSort

from flows.canary import canary
from flows.monitor import monitor
from recsys import challengers, platform, registry
from recsys.data.ingest import load_dataset
from recsys.schemas import TS_COL
from recsys.settings import Settings
from recsys.simulation.timeline import WindowRow, format_row
from recsys.simulation.traffic import replay, visits

RETRAIN_TIMEOUT_S = 600
FINAL_STATES = {"Completed", "Failed", "Crashed", "Cancelled"}
CANARY_WORDS = {"promote": "promoted", "hold": "hold", "rollback": "rolled back"}


async def _latest_retrain(since: float) -> tuple[str, str] | None:
    """(state name, flow-run id) of the newest retrain run created after `since`, if any."""
    async with get_client() as client:
        runs = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["retrain"])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=1,
        )
    if not runs or runs[0].created.timestamp() < since:
        return None
    return runs[0].state.name if runs[0].state else "Unknown", str(runs[0].id)


def wait_for_retrain(since: float, timeout: float = RETRAIN_TIMEOUT_S) -> tuple[str, str] | None:
    """Poll the Prefect API until the triggered retrain run ends (or `timeout` passes)."""
    deadline = time.monotonic() + timeout
    latest = None
    while time.monotonic() < deadline:
        latest = asyncio.run(_latest_retrain(since))
        if latest and latest[0] in FINAL_STATES:
            return latest
        time.sleep(2)
    return latest


def serve_champion(settings: Settings) -> str:
    """(Re)start the BentoML service on the current champion; return its version."""
    platform.stop("bentoml", settings)
    platform.start(platform.bentoml_server(settings), settings)
    return registry.champion(settings) or "none"


@dataclass(frozen=True)
class CanaryStep:
    """The canary flow's word on one window: what it did, and the champion the service serves after it."""

    action: str  # promote, hold, rollback
    champion: str

    @property
    def text(self) -> str:
        return f"canary: {CANARY_WORDS[self.action]}"


def judge_canary(settings: Settings, replayed_from: datetime, window: int) -> CanaryStep | None:
    """Run the canary flow (in-process, so the run shows in the Prefect UI) if a canary served this window.

    A canary deployed after `replayed_from` (by a retrain that ended in this window) has served
    none of it yet: it is judged from the next window on. The flow asks the service to reload on a
    promotion or rollback, so the champion it returns is the one serving.
    """
    current = challengers.challenger(settings, "canary")
    if current is None or not current.deployed_at or datetime.fromisoformat(current.deployed_at) >= replayed_from:
        return None
    outcome = canary(window=window)
    if outcome.decision is None:  # withdrawn between the look and the flow
        return None
    return CanaryStep(outcome.decision.action, outcome.champion or "none")


def retrain_text(state: tuple[str, str] | None, previous: str, version: str, deployed: challengers.Challenger | None) -> str:
    """The timeline's word on a triggered retrain: how its run ended and what became of its candidate."""
    text = f"retrain → {state[0] if state else 'not started'}"
    if version != previous:
        return text
    if deployed is not None:  # online mode: blessed, deployed beside the champion for the canary flow to judge
        return f"{text}, v{deployed.version} deployed as shadow+canary"
    return f"{text}, not promoted: champion kept"


def run_loop(settings: Settings, dataset: str, replay_from: str, window: int, max_windows: int | None = None) -> list[WindowRow]:
    """Replay `dataset` from `replay_from` in windows of `window` visits; return the timeline."""
    data = load_dataset(dataset, settings.shared_data_dir)
    live = visits(data.interactions[data.interactions[TS_COL] >= replay_from])
    url = platform.bentoml_server(settings).url
    version = serve_champion(settings)
    rows: list[WindowRow] = []
    for n, start in enumerate(range(0, len(live), window)):
        chunk = live.iloc[start : start + window]
        if max_windows is not None and n >= max_windows or len(chunk) < settings.min_window:
            break
        replayed_from = datetime.now(UTC)
        stats = replay(url, chunk)
        since = time.time()
        watch = monitor(dataset=dataset, window=len(chunk))
        decision = "retrain" if watch.retrain else ("hold: " + ",".join(watch.decision.blocked_by))
        if watch.retrain:
            before = challengers.challenger(settings, "canary")
            state = wait_for_retrain(since)
            previous, version = version, serve_champion(settings)
            after = challengers.challenger(settings, "canary")
            decision = retrain_text(state, previous, version, after if after is not None and after != before else None)
        if (step := judge_canary(settings, replayed_from, window)) is not None:
            decision, version = f"{decision}; {step.text}", step.champion
        rows.append(
            WindowRow(
                n + 1,
                watch.window_end[:16],
                stats.ok,
                watch.hit_rate if watch.hit_rate is not None else stats.hit_rate,
                stats.fallback / max(stats.ok, 1),
                watch.drift.drift_share,
                decision,
                version,
            )
        )
        print(format_row(rows[-1]), flush=True)
    return rows
