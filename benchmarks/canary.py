"""Challengers on live traffic: a worse canary rolled back, a better one promoted, and what a shadow costs.

Run with `make canary` (6-9 minutes on 2 cores). In a temporary RECSYS_HOME, with its
own MLflow (SQLite), BentoML store and Prefect server, it trains an iALS champion (the project's
seconds-fast first champion, no Keras) on Online Retail up to the replay's start, serves it, and
replays the autumn of 2011 three times as live traffic (`recsys.simulation.traffic.replay`, purchases
sent back as feedback, as `make loop` does):

(a) a deliberately worse challenger deployed as shadow and canary: the champion's family trained
    on a corrupted copy of the same data, its item ids shuffled (a join that swapped the
    catalogue's keys, say), so its lists look like a model's but miss what people buy;
(b) a better one: EASE trained on three more weeks, deployed the same way, replaying only what
    comes after its cut. Better on this shop, checked on the replay itself: served lists against
    the purchases of the visits after 22 September, 0.322 of visits hit against the champion's
    0.284. Not every later cut is better here: the same family trained later excludes more of
    a customer's own earlier purchases (requests exclude seen items), and repeat orders are
    much of this shop's trade, so EASE to 22 September (0.322) does not beat EASE to
    1 September (0.325), nor does the two-stage model to 22 September (0.296);
(c) informational, not in the summary, replayed between (a) and (b), against the same champion:
    the popularity baseline, worse than the champion by less (its online hit rate a few points
    under the champion's on earlier runs), which the default rule, at 45-80 users in the canary's
    arm a window, often needs more than two windows to tell apart from the margin.

Both are deployed by hand (`recsys.challengers.deploy`), as a blessed candidate is in
`RECSYS_PROMOTION_MODE=online`: this benchmark judges online, not offline (popularity would
never pass the offline gate). After every window the `canary` flow runs in-process (each run
is in the Prefect server's UI) until it promotes or rolls back; the replay goes on to the end.
The rule is the default settings' (share 0.1, 30 users per arm, 2 windows, margin 0.05); the
loop's windows (300 visits) would leave the canary's tenth with 15-30 users, so windows here
are 800 visits (about 650 users, 45-80 of them in the canary's arm).

Last, the shadow's cost: the service's /recommend throughput under wrk (c=16) with a shadow
deployed (the champion's own version, whichever it is by then, so a shadow exactly as dear as the
answer, scoring every request in batches off the answers' path: recsys.serving.arms.ShadowWriter)
over without, alternated in rounds on one running service; the median of the rounds' ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from benchmarks import wrk
from recsys import platform
from recsys.monitoring.canary import ArmCounts, CanaryWindow, windows_since
from recsys.settings import Settings, get_settings

if TYPE_CHECKING:  # the data modules are imported where used, as `train_version` does
    from recsys.data.ingest import Dataset

CHAMPION_FAMILY = "ials"  # unless --champion-family
BETTER_FAMILY = "ease"  # the better challenger's, unless --better-family
REPLAY_FROM = "2011-09-01"  # the champion's cut: the replay starts where its data ends
BETTER_CUT = "2011-09-22"  # the better challenger's cut, three weeks into the replay
REPLAY_UNTIL = "2011-12-01"  # autumn: September to November
WINDOW = 800  # visits per window: enough users for 30 in each arm at a 10% canary share
WORDS = {"promote": "promoted", "hold": "hold", "rollback": "rolled back"}


@dataclass(frozen=True)
class WindowLine:
    """One replayed window: both arms' counts in it, and what the canary flow decided after it."""

    window: int
    end: str
    requests: int
    champion: ArmCounts
    canary: ArmCounts
    decision: str


@dataclass(frozen=True)
class Replay:
    """One experiment's replay: its windows, the decision and when, and who saw the canary."""

    name: str
    lines: list[WindowLine]
    decided: str | None  # promote or rollback; None when it held to the end
    after_windows: int | None  # windows replayed when it decided
    exposed_users: int  # distinct users the canary answered
    users: int  # distinct users in the replay

    @property
    def exposed_share(self) -> float:
        return self.exposed_users / self.users if self.users else 0.0


def home_settings(port: int, prefect_port: int) -> Settings:
    """Settings rooted in a fresh temporary home; the environment points every process (flows, service) there."""
    home = Path(tempfile.mkdtemp(prefix="recsys-canary-")) / "home"
    os.environ.update(
        RECSYS_HOME=str(home),
        BENTOML_HOME=str(home / "bentoml"),
        RECSYS_SERVE_PORT=str(port),
        RECSYS_PREFECT_PORT=str(prefect_port),
        BENTOML_DO_NOT_TRACK="True",
    )
    get_settings.cache_clear()
    settings = get_settings()
    os.environ.update(platform.server_env(settings))  # PREFECT_API_URL, PREFECT_HOME, MLFLOW_TRACKING_URI: before Prefect is imported
    return settings


def train_version(settings: Settings, family: str, cut: str, corrupt: bool = False) -> str:
    """Train `family` on Online Retail before `cut` (its item ids shuffled if `corrupt`) and register it; return the version."""
    from recsys.data.ingest import load_dataset
    from recsys.data.split import temporal_user_split
    from recsys.training import train

    data = load_dataset("online-retail", settings.shared_data_dir, until=cut)
    if corrupt:
        data = shuffled_items(data)
    result = train(data, temporal_user_split(data.interactions), settings, family)
    what = f"{family} on a corrupted copy (item ids shuffled)" if corrupt else family
    print(f"trained {what} on data before {cut}: version {result.version}, test ndcg@10 {result.metrics['ndcg_at_10']:.4f}", flush=True)
    return str(result.version)


def shuffled_items(data: Dataset, seed: int = 0) -> Dataset:
    """`data` with every interaction's item id replaced by a fixed random other item of the catalogue.

    The model trained on it is sound on its own (it scores well on its own corrupted split),
    so offline it looks like any candidate; on live traffic its lists name the wrong items.
    """
    from recsys.schemas import ITEM_COL

    ids = data.interactions[ITEM_COL].unique()
    mapping = dict(zip(ids, np.random.default_rng(seed).permutation(ids)))
    return replace(data, name=f"{data.name}-items-shuffled", interactions=data.interactions.assign(**{ITEM_COL: data.interactions[ITEM_COL].map(mapping)}))


def make_champion(settings: Settings, version: str) -> None:
    from recsys import registry
    from recsys.serving import index

    model = registry.load_version(settings, version)
    registry.make_champion(settings, version, model, *index.build_checked(model.item_vectors, model.user_vectors))


def deploy_challenger(settings: Settings, version: str) -> str:
    """Deploy `version` as shadow and canary, reload the service; return when its experiment started."""
    from recsys import challengers

    for role in challengers.ROLES:
        challengers.deploy(settings, version, role)
    platform.reload_service(settings)
    return challengers.challenger(settings, "canary").deployed_at


def arms_since(settings: Settings, since: str) -> CanaryWindow:
    """Both arms over every request-log line served since `since` (the server's clock, ISO), as one window."""
    return windows_since(settings.request_log, settings.events_log, since, sys.maxsize)[0]


def run_replay(settings: Settings, name: str, live: pd.DataFrame, version: str) -> Replay:
    """Deploy `version` as the challenger, replay `live` window by window, judging it after each until decided."""
    from flows.canary import canary
    from recsys.schemas import TS_COL, USER_COL
    from recsys.simulation.traffic import replay

    url = platform.bentoml_server(settings).url
    started = deploy_challenger(settings, version)
    print(f"\n({name}) v{version} deployed as shadow+canary; replaying {len(live)} visits from {live[TS_COL].min():%Y-%m-%d}")
    print(f"{'win':>3} {'window end':16} {'reqs':>5}  {'champion users hit@10':>21}  {'canary users hit@10':>19}  decision")
    lines: list[WindowLine] = []
    decided, after = None, None
    for n, start in enumerate(range(0, len(live), WINDOW), 1):
        since = datetime.now(UTC).isoformat()
        stats = replay(url, live.iloc[start : start + WINDOW])
        counts = arms_since(settings, since)
        decision = "(no canary)"
        if decided is None:
            outcome = canary(window=WINDOW)
            action = outcome.decision.action
            d = outcome.decision.difference
            decision = WORDS[action] + (f" (canary - champion {d.rate:+.3f} [{d.low:+.3f}, {d.high:+.3f}])" if d is not None else "")
            if action != "hold":
                decided, after = action, n
        lines.append(WindowLine(n, counts.end[:16], stats.ok, counts.champion, counts.canary, decision))
        print(format_line(lines[-1]), flush=True)
    exposed = arms_since(settings, started).canary.users
    return Replay(name, lines, decided, after, exposed, live[USER_COL].nunique())


def format_line(line: WindowLine) -> str:
    def arm(c: ArmCounts) -> str:
        return f"{c.users:>5} {c.hits / c.requests:>6.3f}" if c.requests else f"{'-':>5} {'-':>6}"

    return f"{line.window:>3} {line.end:16} {line.requests:>5}  {'':>9}{arm(line.champion)}  {'':>7}{arm(line.canary)}  {line.decision}"


def shadow_overhead(settings: Settings, shadow: str, bodies: list[str], rounds: int, seconds: int) -> float:
    """Median over rounds of /recommend throughput with `shadow` deployed over without, on one service (wrk, c=16)."""
    from recsys import challengers, registry
    from recsys.serving import index

    url = platform.bentoml_server(settings).url
    script = wrk.lua_script(bodies, "/recommend")
    model = registry.load_version(settings, shadow)
    ann, report = index.build_checked(model.item_vectors, model.user_vectors)  # once: each round only re-exports it
    ratios = []
    for r in range(rounds):
        rps = {}
        for on in (False, True) if r % 2 == 0 else (True, False):  # alternated, so a drift in the machine's load hits both
            if on:
                challengers.deploy(settings, shadow, "shadow", model, ann, report)
            else:
                challengers.withdraw(settings, "shadow", "shadow-overhead benchmark: measured without it")
            platform.reload_service(settings)
            wrk.run(url, script, 16, 1)  # warm-up after the swap
            result = wrk.run(url, script, 16, seconds)
            rps[on] = result.rps
            print(f"{result.row('shadow ' + ('on' if on else 'off'))}  (round {r + 1})", flush=True)
        ratios.append(rps[True] / rps[False])
    return float(np.median(ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3720, help="the service's port")
    parser.add_argument("--prefect-port", type=int, default=4220, help="the benchmark's own Prefect server")
    parser.add_argument("--rounds", type=int, default=3, help="shadow on/off rounds; the overhead is their median")
    parser.add_argument("--champion-family", default=CHAMPION_FAMILY, help="a fast family: ials, ease or item_knn")
    parser.add_argument("--better-family", default=BETTER_FAMILY, help="the better challenger's")
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run")
    args = parser.parse_args()
    began = time.monotonic()
    settings = home_settings(args.port, args.prefect_port)

    from recsys import registry
    from recsys.data.ingest import load_dataset
    from recsys.schemas import TS_COL, USER_COL
    from recsys.simulation.traffic import visits

    platform.start(platform.prefect_server(settings), settings)
    try:
        champion = train_version(settings, args.champion_family, REPLAY_FROM)
        make_champion(settings, champion)
        worse = train_version(settings, args.champion_family, REPLAY_FROM, corrupt=True)
        mild = train_version(settings, "popularity", REPLAY_FROM)
        better = train_version(settings, args.better_family, BETTER_CUT)
        platform.start(platform.bentoml_server(settings), settings)
        interactions = load_dataset("online-retail", settings.shared_data_dir).interactions
        autumn = interactions[(interactions[TS_COL] >= REPLAY_FROM) & (interactions[TS_COL] < REPLAY_UNTIL)]
        print(f"champion v{champion} ({args.champion_family}, data before {REPLAY_FROM}); windows of {WINDOW} visits; rule: {rule_text(settings)}")
        a = run_replay(settings, "a: worse", visits(autumn), worse)
        c = run_replay(settings, "c: popularity, mildly worse", visits(autumn), mild)
        b = run_replay(settings, "b: better", visits(autumn[autumn[TS_COL] >= BETTER_CUT]), better)
        now_champion = registry.champion(settings)
        print(f"\nchampion after both: v{now_champion}")
        users = visits(autumn)[USER_COL].astype(str).drop_duplicates().sample(500, random_state=0)
        bodies = [f'{{"user_id": "{u}", "k": 10}}' for u in users]
        shadow = now_champion  # its own version as its shadow, as in bench-serving: a shadow as dear as the answer
        print(f"shadow overhead: v{shadow} as shadow (share {settings.shadow_share}), {args.rounds} rounds of {args.seconds} s, wrk c=16")
        overhead = shadow_overhead(settings, shadow, bodies, args.rounds, args.seconds)
        errors = arms_since(settings, "1970-01-01T00:00:00+00:00").canary.errors
    finally:
        platform.stop("bentoml", settings)
        platform.stop("prefect", settings)
    print(f"\nfinished in {time.monotonic() - began:.0f} s; home {settings.home}")
    for r in (a, c, b):
        when = f"{WORDS[r.decided]} after {r.after_windows} window(s)" if r.decided else f"held over all {len(r.lines)} windows"
        print(f"({r.name}): {when}; the canary answered {r.exposed_users} of {r.users} users")
    rolled = a.after_windows if a.decided == "rollback" else "never"
    print(
        f"canary: worse-rolled-back-after-windows={rolled} worse-exposed-share={a.exposed_share:.3f} "
        f"better-promoted={'yes' if b.decided == 'promote' else 'no'} shadow-overhead={overhead:.2f} canary-errors={errors}"
    )


def rule_text(settings: Settings) -> str:
    return (
        f"canary share {settings.canary_share}, {settings.canary_min_users} users per arm, {settings.canary_windows} windows, margin {settings.canary_margin}"
    )


if __name__ == "__main__":
    sys.exit(main())
