"""The demo: the whole loop on Online Retail with local servers (`recsys demo` runs this).

Train on December 2010 to August 2011, serve the champion, replay September to December
2011 as live traffic window by window, watch it drift, and let the drift event retrain
through Prefect. The shop's own autumn drifts too slowly for the guardrails within these
four months (measured: drift share at most 0.14 over ten windows, no retrain), so the replay
plants what `make loop` plants: from 22 October, 60% of visits come from a surge of new
customers (recsys.simulation.shifts). The monitor then sees it, the retrain runs, and the
windows after it show the new champion at work. All five servers stay up afterwards so the
UIs can be opened; `recsys down` stops them.
"""

from __future__ import annotations

import time

from flows.pipeline import pipeline
from recsys import platform
from recsys.app import stack
from recsys.app.loop import run_loop
from recsys.app.scenario import SCENARIOS, scenario_dataset
from recsys.settings import get_settings
from recsys.simulation.timeline import HEADER, loop_figures

TRAIN_UNTIL = "2011-09-01"
DEMO_WINDOW = 700
SHIFT, SHIFT_SHARE = "new_users", 0.6  # planted from SCENARIOS["online-retail"].shift_at, as `make loop` does


def main() -> None:
    settings = get_settings()
    started = time.monotonic()
    print("starting the Prefect server, the MLflow server, the Evidently UI and the flow runner on", settings.host)
    platform.start(platform.prefect_server(settings), settings)
    platform.start(platform.mlflow_server(settings), settings)
    settings.evidently_workspace.mkdir(parents=True, exist_ok=True)
    platform.start(platform.evidently_ui(settings), settings)  # the drift dashboard fills window by window
    platform.start(stack.flow_runner(settings), settings)

    shift_at = SCENARIOS["online-retail"].shift_at
    dataset = scenario_dataset(settings, settings.dataset, SHIFT, shift_at, SHIFT_SHARE)  # the same data before shift_at
    print(f"pipeline: validate → train → promote on {settings.dataset} up to {TRAIN_UNTIL}")
    first = pipeline(dataset=dataset, train_until=TRAIN_UNTIL)
    print(f"  {settings.candidate_family} test metrics:", {k: round(v, 4) for k, v in first["candidate"]["metrics"].items() if k.endswith("_10")})
    print("  popularity test metrics:", {k: round(v, 4) for k, v in first["baseline"].items() if k.endswith("_10")})
    print("  blessing:", "; ".join(first["promotion"]["blessing"]["reasons"]))

    print(
        f"\nreplaying autumn 2011 as live traffic, {DEMO_WINDOW} visits a window, monitoring each window "
        f"(from {shift_at}, {SHIFT_SHARE:.0%} of visits from a planted surge of new customers):"
    )
    print(HEADER)
    rows = run_loop(settings, dataset, TRAIN_UNTIL, DEMO_WINDOW)
    retrains = sum("retrain" in r.decision for r in rows)
    figures = loop_figures(rows, shift_at)
    if figures.post_retrain_hit_rate is not None:
        print(f"hit rate {figures.pre_shift_hit_rate:.3f} before the shift, {figures.post_retrain_hit_rate:.3f} in the windows after the retrain")

    urls = {
        "Prefect UI": platform.prefect_server(settings).url,
        "MLflow UI": platform.mlflow_server(settings).url,
        "Recommendation service (Swagger UI)": platform.bentoml_server(settings).url,
        "Drift reports": str(settings.reports_dir.resolve()),
        "Evidently UI (drift dashboard)": platform.evidently_ui(settings).url,
        "GX data docs": first["validation"]["docs_index"],
    }
    print(f"\ndemo finished in {time.monotonic() - started:.0f}s with {retrains} retrain(s). Where to look:")
    for name, url in urls.items():
        print(f"  {name:38s} {url}")
    print("stop the servers with `.venv/bin/recsys down`.")


if __name__ == "__main__":
    main()
