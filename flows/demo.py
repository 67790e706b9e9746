"""The demo: the whole loop on Online Retail with local servers (`recsys demo` runs this).

Train on December 2010 to August 2011, serve the champion, replay September to December
2011 as live traffic, watch it drift, and let the drift event retrain through Prefect.
The servers stay up afterwards so the UIs can be opened; `recsys down` stops them.
"""

from __future__ import annotations

import asyncio
import time

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowRunFilter
from prefect.client.schemas.sorting import FlowRunSort

from flows.monitor import monitor
from flows.pipeline import pipeline
from recsys import platform
from recsys.data.ingest import load_dataset
from recsys.monitoring.traffic import replay, visits
from recsys.schemas import TS_COL
from recsys.settings import get_settings

TRAIN_UNTIL = "2011-09-01"
RETRAIN_TIMEOUT_S = 600


async def _latest_retrain(since: float) -> tuple[str, str] | None:
    """(state name, flow-run id) of the newest retrain run created after `since`, if any."""
    async with get_client() as client:
        runs = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["retrain"])),
            flow_run_filter=FlowRunFilter(),
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
        if latest and latest[0] in {"Completed", "Failed", "Crashed", "Cancelled"}:
            return latest
        time.sleep(3)
    return latest


def main() -> None:
    settings = get_settings()
    started = time.monotonic()
    print("starting Prefect and MLflow servers on", settings.host)
    platform.start(platform.prefect_server(settings), settings)
    platform.start(platform.mlflow_server(settings), settings)
    platform.start(platform.flow_runner(settings), settings)

    print(f"pipeline: validate → train → promote on {settings.dataset} up to {TRAIN_UNTIL}")
    first = pipeline(dataset=settings.dataset, train_until=TRAIN_UNTIL)
    print("  two-tower test metrics:", {k: round(v, 4) for k, v in first["candidate"]["metrics"].items() if k.endswith("_10")})
    print("  popularity test metrics:", {k: round(v, 4) for k, v in first["baseline"].items() if k.endswith("_10")})
    print("  blessing:", "; ".join(first["promotion"]["blessing"]["reasons"]))

    platform.stop("bentoml", settings)  # serve the current champion
    platform.start(platform.bentoml_server(settings), settings)
    data = load_dataset(settings.dataset, settings.shared_data_dir)
    live = visits(data.interactions[data.interactions[TS_COL] >= TRAIN_UNTIL])
    print(f"replaying {len(live)} visits of autumn 2011 as live traffic to {platform.bentoml_server(settings).url}")
    stats = replay(platform.bentoml_server(settings).url, live)
    print(f"  {stats.ok} answered, {stats.failed} failed, {stats.fallback} fallbacks, {stats.sent / stats.seconds:.0f} req/s")

    since = time.time()
    watch = monitor(dataset=settings.dataset)
    print(f"monitor: drift share {watch['drift']['drift_share']:.2f}; {'; '.join(watch['reasons'])}")
    if watch["retrain"]:
        print("drift event emitted; waiting for the retrain deployment to run ...")
        state = wait_for_retrain(since)
        print(f"  retrain flow run: {state[0] if state else 'not started'}")
        platform.stop("bentoml", settings)
        platform.start(platform.bentoml_server(settings), settings)

    urls = {
        "Prefect UI": platform.prefect_server(settings).url,
        "MLflow UI": platform.mlflow_server(settings).url,
        "Recommendation service (Swagger UI)": platform.bentoml_server(settings).url,
        "Drift report": str(watch["drift"]["html_path"]),
        "GX data docs": first["validation"]["docs_index"],
    }
    print(f"\ndemo finished in {time.monotonic() - started:.0f}s. Where to look:")
    for name, url in urls.items():
        print(f"  {name:38s} {url}")
    print("stop the servers with `recsys down`.")


if __name__ == "__main__":
    main()
