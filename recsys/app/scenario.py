"""The drift scenario on real data (`recsys loop` / `make loop` runs this).

Train on the earlier part of a real dataset, serve it, and replay the later part as live
traffic, window by window: calm windows first, then a shift (the data's own, plus one
injected by recsys.simulation.shifts from `shift_at` on), detection, the retrain through the
Prefect server, the hot-swapped champion, and recovery. Prints the timeline, writes a plot,
and ends with the three target figures on one line.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from flows.pipeline import pipeline
from recsys import platform
from recsys.app import stack
from recsys.app.loop import run_loop
from recsys.data import store
from recsys.data.ingest import load_dataset
from recsys.settings import Settings, get_settings
from recsys.simulation.shifts import SHIFTS, inject
from recsys.simulation.timeline import HEADER, loop_figures, plot_timeline


@dataclass(frozen=True)
class Scenario:
    """When to stop training, when the injected shift starts, and the window size."""

    train_until: str
    shift_at: str
    window: int


#: Defaults per dataset: about ten calm windows of replayed traffic before the shift.
SCENARIOS: dict[str, Scenario] = {
    # Sep-Oct 2011 is calm; the shop's own Christmas shift builds from November.
    "online-retail": Scenario(train_until="2011-09-01", shift_at="2011-10-22", window=300),
    # Train on 1996-2014, replay 2015-2018 (many raters are new there: the real shift).
    "ml-latest-small": Scenario(train_until="2015-01-01", shift_at="2016-01-01", window=600),
}


def scenario_dataset(settings: Settings, dataset: str, shift: str, shift_at: str, share: float) -> str:
    """The dataset the loop replays and retrains on: the real one, or a copy with `shift` injected.

    The copy is a dataset store under `settings.datasets_dir`, like every dataset the platform
    keeps, so an erasure (`recsys forget`) finds and rewrites it too.
    """
    if shift == "none":
        return dataset
    data = load_dataset(dataset, settings.shared_data_dir)
    shifted = inject(data.interactions, data.items, shift, shift_at, share, seed=settings.seed)
    folder = settings.datasets_dir / f"{dataset}-{shift}"
    store.write_items(folder, data.items)
    store.append(folder, shifted)  # a repeated run appends nothing: the events are already stored
    return str(folder.resolve())


def main(dataset: str, shift: str, share: float, windows: int | None) -> None:
    settings = get_settings()
    scenario = SCENARIOS[dataset]
    started = time.monotonic()
    print("starting the Prefect server, the MLflow server and the flow runner on", settings.host)
    for spec in (platform.prefect_server(settings), platform.mlflow_server(settings), stack.flow_runner(settings)):
        platform.start(spec, settings)
    name = scenario_dataset(settings, dataset, shift, scenario.shift_at, share)
    print(f"scenario: {dataset}, train until {scenario.train_until}, shift '{shift}' (share {share}) from {scenario.shift_at}")
    first = pipeline(dataset=name, train_until=scenario.train_until, reason="loop scenario")
    if not first["promotion"]["promoted"]:
        raise SystemExit(f"the first model was not promoted: {first['promotion']['blessing']['reasons']}")
    print(f"replaying from {scenario.train_until} in windows of {scenario.window} visits:\n{HEADER}")
    rows = run_loop(settings, name, scenario.train_until, scenario.window, windows)
    figures = loop_figures(rows, scenario.shift_at)
    plot = plot_timeline(rows, scenario.shift_at, settings.reports_dir / f"loop-{dataset}-{shift}.png", settings.drift_threshold)
    print(
        f"\n{figures.undrifted_windows} windows before the shift; hit rate {figures.pre_shift_hit_rate:.3f} before it, "
        f"{figures.post_retrain_hit_rate if figures.post_retrain_hit_rate is not None else float('nan'):.3f} after the retrain"
    )
    print(
        f"plot: {plot}\nfinished in {time.monotonic() - started:.0f}s; its servers (home {settings.home.resolve()}) stay up "
        "for the UIs: stop them with `recsys down`"
    )
    print(figures.line())


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="online-retail", choices=sorted(SCENARIOS))
    parser.add_argument("--shift", default="new_users", choices=["none", *SHIFTS])
    parser.add_argument("--share", type=float, default=0.6)
    parser.add_argument("--windows", type=int, default=None, help="stop after this many windows")
    return parser.parse_args()


if __name__ == "__main__":
    args = _args()
    main(args.dataset, args.shift, args.share, args.windows)
