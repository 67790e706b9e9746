"""Serving benchmark: the figures of issue 17 item 5, side by side in one run.

Run with `make bench-serving`. It trains a two-tower champion on Online Retail in a temporary
RECSYS_HOME (blessed and promoted the normal way, so the ANN index is built and checked) and
serves it five ways, one worker each, all up together: our BentoML service; the same service
with that champion also deployed as its own shadow (`recsys-shadow`, share 1.0: every request
scored twice), started beside it once the shadow is in the store; `mlflow models serve`;
BentoML's own minimum (`benchmarks/bento_min.py`: a BentoML service answering a constant body);
and a bare Starlette floor (informational). wrk drives one at a time at concurrency 16, in
interleaved rounds (every server, then every server again, ...) so that a load change on a
shared machine hits all alike; each figure is the median over rounds. In each round wrk also
sends /recommend_batch (64 users a request, k=10) to our service. The shadow scores answers in
batches on a thread of its own, off their path (recsys.serving.arms.ShadowWriter); the run says how
many answers it logged without the shadow's list because its queue was full (`--shadow-only`
measures just the shadow's cost: the two services, nothing else).
Beside requests/s it reads each server's CPU time per request from /proc (its whole process
tree): time the server spent, not time it waited for a core, which holds on a busy machine.
The floor and BentoML's minimum answer the bytes of a real /recommend answer.

Then two runs of the clients in `benchmarks/load.py` against our service (load shedding on,
RECSYS_SERVE_MAX_CONCURRENCY at its default): a constant rate of half its measured saturation
throughput (open loop: latency from when each request was due, not a closed loop that waits),
and 64 clients in a closed loop (overload: p99 of the answered requests, refusals counted
apart, not as errors); `mlflow models serve` under the same overload beside it.
Last, the request log is reconciled: every request id the clients were answered with must be
in it, and it must hold as many lines as the two services say they answered (their
`recsys_recommended_users_total`), so a request in flight when a run stops hides nothing.
Before the summary, one line measured in-process, no HTTP: the p50/p99 of the `/recommend` logic
(`ServingModel.recommend`, one known user, k=10) for a two-stage model trained on Online Retail,
both stages run per request (`--two-stage-only` measures just that).
The last line is the summary:
`serving: bentoml/bento-min=<x> bentoml/mlflow=<x> shadow-on/off=<x> batch/single-users=<x>
p99-half-load-ms=<x> p99-overload-ms=<x> errors=<n> lost-log-lines=<n>`; targets: ≥ 0.9, ≥ 2,
≥ 0.8, ≥ 5, ≤ 10 ms, ≤ 100 ms, 0, 0.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from benchmarks import load, wrk
from recsys import platform
from recsys.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[1]
CONCURRENCY = 16  # wrk's throughput runs
OVERLOAD = 64  # closed-loop clients of the overload run
BATCH_USERS = 64  # users a /recommend_batch request (the API's maximum)
BATCH_CONCURRENCY = 4  # /recommend_batch requests in flight: each is 64 users of work
WORKERS = 1  # per server: BentoML RECSYS_SERVE_WORKERS, mlflow -w, uvicorn --workers
ANSWERED = re.compile(r'recsys_recommended_users_total\{endpoint="[a-z_]+"\} ([0-9.e+]+)')


def champion(settings: Settings, epochs: int | None) -> None:
    """Train and promote a two-tower champion on Online Retail (fails loudly if refused)."""
    from recsys.data.ingest import load_dataset
    from recsys.data.split import temporal_user_split
    from recsys.promotion import bless_and_promote
    from recsys.training import train

    data = load_dataset("online-retail")
    split = temporal_user_split(data.interactions)
    params = {"epochs": epochs} if epochs else None
    candidate = train(data, split, settings, "two_tower", params=params)
    result = bless_and_promote(settings, candidate.version, candidate.run_id, split, data.items)
    if not result.promoted:
        raise SystemExit(f"champion not promoted: {result}")
    print(f"champion: version {result.version}, ANN recall@100 {result.index_recall:.4f}, bento {result.bento_tag}")


def tree_stats(root: int) -> list[list[str]]:
    """/proc stat fields (after the command name) of `root` and all its descendants.

    Walked by parent pid rather than by session: BentoML's arbiter starts its workers in
    sessions of their own, and they are what does the work.
    """
    stats: dict[int, list[str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            stats[int(stat.parent.name)] = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended while we looked
            continue
    tree, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        if pid in stats:
            tree.append(stats[pid])
            frontier += [child for child, fields in stats.items() if int(fields[1]) == pid]  # field 4: ppid
    return tree


@dataclass
class Target:
    """One running server, the wrk script and concurrency that drive it, and what was measured on it."""

    name: str
    url: str
    script: Path
    pid: int  # the process we started; its descendants count too
    concurrency: int = CONCURRENCY
    runs: list[wrk.WrkResult] = field(default_factory=list)  # one per round
    cpu: list[float] = field(default_factory=list)  # server CPU us per request, likewise

    def cpu_seconds(self) -> float:
        """User + system CPU of the server's whole process tree (arbiter, workers, shells)."""
        ticks = sum(int(f[11]) + int(f[12]) for f in tree_stats(self.pid))  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def processes(self) -> int:
        return len(tree_stats(self.pid))

    def drive(self, seconds: int) -> wrk.WrkResult:
        """One wrk run, kept with the server's CPU time per completed request beside it."""
        before = self.cpu_seconds()
        result = wrk.run(self.url, self.script, self.concurrency, seconds)
        self.runs.append(result)
        self.cpu.append((self.cpu_seconds() - before) * 1e6 / max(result.requests, 1))
        return result

    def result(self) -> wrk.WrkResult:
        """The rounds: median of each figure, errors and requests summed."""
        med = {f: float(np.median([getattr(r, f) for r in self.runs])) for f in ("rps", "p50_ms", "p95_ms", "p99_ms")}
        errors, refused = sum(r.errors for r in self.runs), sum(r.refused for r in self.runs)
        return wrk.WrkResult(self.concurrency, sum(r.requests for r in self.runs), errors=errors, refused=refused, **med)

    def cpu_us(self) -> float:
        return float(np.median(self.cpu))


@contextmanager
def server(name: str, command: list[str], health: str, env: dict[str, str], log: Path) -> Iterator[int]:
    """Start a server in its own process group, wait until `health` answers, stop it after."""
    with log.open("ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)
    try:
        if not platform.poll(lambda: platform.is_healthy(health), 180, proc):
            raise RuntimeError(f"{name} did not come up; see {log}")
        yield proc.pid
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)


def log_ids(path: Path) -> list[str]:
    """The request ids of every line of the request log (a regex: the lines are the service's own JSON)."""
    return re.findall(r'"request_id":"([0-9a-f]{32})"', path.read_text()) if path.exists() else []


def answered_by_server(url: str) -> int:
    """Users the service says it answered (and logged: the counter moves once the log line is written, or queued
    for the shadow, whose lines are all written when the service stops, before the log is read)."""
    return round(sum(float(n) for n in ANSWERED.findall(httpx.get(f"{url}/metrics").text)))


def deploy_shadow(settings: Settings) -> None:
    """The champion's own version deployed as its shadow: every request is then ranked twice."""
    from recsys import challengers, registry

    version = registry.champion(settings)
    deployed = challengers.deploy(settings, version, "shadow")
    print(f"shadow: version {version} deployed as {deployed.bento_tag} (share {settings.shadow_share})")


def start_shadow_on(stack: ExitStack, settings: Settings, env: dict[str, str], port: int) -> tuple[str, int]:
    """Deploy the shadow and start a second service that loads it, in a store of its own; its URL and pid.

    A service started before the deployment loaded no shadow and never reloads: it stays "off".
    """
    deploy_shadow(settings)
    store = settings.home / "bentoml-shadow"  # the store with the shadow in it, copied after the deployment
    shutil.copytree(settings.bentoml_home / "models", store / "models")
    spec = platform.bentoml_server(settings.model_copy(update={"serve_port": port}))
    pid = stack.enter_context(server("shadow-on", spec.command, spec.health_url, {**env, "BENTOML_HOME": str(store)}, settings.run_dir / "bentoml-shadow.log"))
    return spec.url, pid


def drive_rounds(targets: list[Target], rounds: int, seconds: int) -> dict[str, wrk.WrkResult]:
    """A warm-up run of each target, then `rounds` interleaved rounds of all of them; each one's medians."""
    for t in targets:  # connection pools, lazy imports, caches
        wrk.run(t.url, t.script, t.concurrency, 2)
    for round_ in range(rounds):
        for t in targets:
            result = t.drive(seconds)
            print(f"{result.row(t.name)}  cpu {t.cpu[-1]:>6.0f} us/req  (round {round_ + 1})", flush=True)
    return {t.name: t.result() for t in targets}


def shadow_dropped(url: str) -> str:
    """How many answers the shadow-on service says it answered, and of those how many it logged without the shadow's list."""
    metrics = httpx.get(f"{url}/metrics").text
    dropped = re.findall(r"^recsys_shadow_dropped_total ([0-9.e+]+)", metrics, re.MULTILINE)
    return f"{round(float(dropped[0])) if dropped else 0} of {answered_by_server(url)} answers logged without the shadow's list (its queue full)"


def two_stage_latency(settings: Settings, users: int = 1000) -> str:
    """In-process p50/p99 of one known user's /recommend logic at k=10, for a two-stage model on Online Retail.

    The model is fit with the family's defaults and its serving folder saved and read back, as the
    service reads it; users are drawn uniformly, so history lengths vary as in the data.
    """
    from recsys.data.ingest import load_dataset
    from recsys.data.split import temporal_user_split
    from recsys.models.families import by_name
    from recsys.models.two_stage.served import StageTwo
    from recsys.serving import index
    from recsys.serving.logic import Query, ServingModel

    data = load_dataset("online-retail")
    model, _ = by_name("two_stage").build(settings)
    start = time.perf_counter()
    model.fit(temporal_user_split(data.interactions).train_val, data.items)
    fit_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        stage = StageTwo.load(StageTwo.of(model).save(Path(tmp) / "two_stage"))
    served = ServingModel(stage.model, index.exact_index(stage.model.item_vectors), {"version": "bench"}, stage)
    rows = np.random.default_rng(0).choice(len(stage.model.user_ids), users, replace=False)
    queries = [Query(str(stage.model.user_ids[r]), 10) for r in rows]
    for q in queries[:50]:  # first touches of the arrays
        served.recommend([q])
    ms = []
    for q in queries:
        start = time.perf_counter()
        served.recommend([q])
        ms.append((time.perf_counter() - start) * 1e3)
    history = np.diff(stage.model.seen_indptr)[rows]
    return (
        f"two_stage in-process /recommend k=10 (one known user, both stages per request; Online Retail, fit {fit_s:.0f} s): "
        f"p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms over {users} users "
        f"(history median {np.median(history):.0f}, max {history.max()} items; {stage.n} candidates per retriever, {stage.model.n_items} items)"
    )


def shadow_only(settings: Settings, env: dict[str, str], bodies: list[str], args: argparse.Namespace) -> None:
    """Only the shadow's cost: our service without a shadow and one with it, side by side, in interleaved rounds."""
    with ExitStack() as stack:
        spec = platform.bentoml_server(settings)
        bento_pid = stack.enter_context(server("bentoml", spec.command, spec.health_url, env, settings.run_dir / "bentoml.log"))
        shadow_url, shadow_pid = start_shadow_on(stack, settings, env, args.port + 4)
        script = wrk.lua_script(bodies, "/recommend")
        targets = [Target("bentoml", spec.url, script, bento_pid), Target("shadow-on", shadow_url, script, shadow_pid)]
        print(f"setup: {WORKERS} worker per service, wrk c={CONCURRENCY}, {args.rounds} interleaved rounds of {args.seconds} s runs, medians", flush=True)
        res = drive_rounds(targets, args.rounds, args.seconds)
        print(f"shadow-on: {shadow_dropped(shadow_url)}")
    for t in targets:
        print(f"{res[t.name].row(t.name)}  cpu {t.cpu_us():>6.0f} us/req")
    errors = sum(r.errors for r in res.values())
    print(f"serving: shadow-on/off={ratio(res['shadow-on'].rps, res['bentoml'].rps):.2f} errors={errors}")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each figure is their median")
    parser.add_argument("--load-seconds", type=int, default=20, help="of the half-load and the overload runs")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: settings)")
    parser.add_argument("--two-stage-only", action="store_true", help="measure only the two-stage model's in-process latency")
    parser.add_argument("--shadow-only", action="store_true", help="measure only /recommend with a shadow on and off (shadow-on/off)")
    parser.add_argument("--port", type=int, default=3700, help="BentoML's port; mlflow, the floor, BentoML's minimum, the shadow-on service take the next four")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="recsys-bench-")) / "home"
    os.environ.update(RECSYS_HOME=str(home), BENTOML_HOME=str(home / "bentoml"), RECSYS_SERVE_PORT=str(args.port), BENTOML_DO_NOT_TRACK="True")
    get_settings.cache_clear()
    settings = get_settings()
    if args.two_stage_only:
        print(two_stage_latency(settings))
        return
    champion(settings, args.epochs)
    from recsys import registry

    model = registry.load_version(settings, registry.champion(settings))
    rng = np.random.default_rng(0)
    users = rng.choice(model.user_ids, 450, replace=False).tolist() + [f"new-{i}" for i in range(50)]
    bodies = [f'{{"user_id": "{u}", "k": 10}}' for u in users]
    mlf_bodies = [f'{{"dataframe_records": [{{"user_id": "{u}", "k": 10}}]}}' for u in users]
    batches = [
        '{"requests": [' + ", ".join(f'{{"user_id": "{u}", "k": 10}}' for u in users[i : i + BATCH_USERS]) + "]}"
        for i in range(0, len(users) - BATCH_USERS + 1, BATCH_USERS)
    ]
    # mlflow starts `uvicorn` through bash: this environment's bin must come first on PATH.
    env = {**os.environ, **platform.server_env(settings), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "RECSYS_SERVE_WORKERS": str(WORKERS)}
    logs = settings.run_dir
    logs.mkdir(parents=True, exist_ok=True)
    if args.shadow_only:
        shadow_only(settings, env, bodies, args)
        return
    bento_url, mlflow_url, floor_url, minimum_url = (f"http://127.0.0.1:{args.port + i}" for i in range(4))
    floor_body = logs / "floor-body.json"

    with ExitStack() as stack:
        spec = platform.bentoml_server(settings)
        bento_pid = stack.enter_context(server("bentoml", spec.command, spec.health_url, env, logs / "bentoml.log"))
        # The floor answers the bytes of a real answer: every server sends as much per request.
        floor_body.write_bytes(httpx.post(f"{bento_url}/recommend", json={"user_id": users[0], "k": 10}).content)
        mlflow_cmd = [
            platform.bin_path("mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{settings.registered_model}@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(args.port + 1),
            "-w",
            str(WORKERS),
        ]
        floor_cmd = [
            platform.bin_path("uvicorn"),
            "benchmarks.floor_app:app",
            "--port",
            str(args.port + 2),
            "--workers",
            str(WORKERS),
            "--log-level",
            "warning",
        ]
        mlflow_pid = stack.enter_context(server("mlflow", mlflow_cmd, f"{mlflow_url}/ping", env, logs / "mlflow.log"))
        floor_env = {**env, "RECSYS_FLOOR_BODY": str(floor_body)}
        floor_pid = stack.enter_context(server("floor", floor_cmd, f"{floor_url}/health", floor_env, logs / "floor.log"))
        minimum_cmd = [platform.bin_path("bentoml"), "serve", "benchmarks.bento_min:Minimal", "--host", "127.0.0.1", "--port", str(args.port + 3)]
        # Each `bentoml serve` empties BENTOML_HOME/prometheus_multiproc_dir as it starts and reads
        # every file there for /metrics: each BentoML server gets a home of its own, or their
        # counts of answered requests would be wiped and mixed.
        minimum_env = {**floor_env, "BENTOML_HOME": str(home / "bentoml-min")}
        minimum_pid = stack.enter_context(server("bento-min", minimum_cmd, f"{minimum_url}/readyz", minimum_env, logs / "bento-min.log"))
        shadow_url, shadow_pid = start_shadow_on(stack, settings, env, args.port + 4)
        script = wrk.lua_script(bodies, "/recommend")
        targets = [
            Target("bentoml", bento_url, script, bento_pid),
            Target("shadow-on", shadow_url, script, shadow_pid),
            Target("batch64", bento_url, wrk.lua_script(batches, "/recommend_batch"), bento_pid, BATCH_CONCURRENCY),
            Target("mlflow", mlflow_url, wrk.lua_script(mlf_bodies, "/invocations"), mlflow_pid),
            Target("bento-min", minimum_url, script, minimum_pid),
            Target("floor", floor_url, script, floor_pid),
        ]
        print(
            f"setup: {WORKERS} worker per server (processes in each tree: "
            + ", ".join(f"{t.name} {t.processes()}" for t in targets)
            + f"); wrk -t2 --timeout 5s at c={CONCURRENCY} (batch64: c={BATCH_CONCURRENCY}, {BATCH_USERS} users a request), "
            f"{args.rounds} interleaved rounds of {args.seconds} s runs, medians; floor body {floor_body.stat().st_size} bytes = a real /recommend answer",
            flush=True,
        )
        res = drive_rounds(targets, args.rounds, args.seconds)
        dropped = shadow_dropped(shadow_url)
        half = res["bentoml"].rps / 2
        saturation = f"{res['bentoml'].rps:.0f} req/s at c={CONCURRENCY}"
        print(f"\nopen loop at half of bentoml's saturation throughput ({saturation}); overload: {OVERLOAD} clients, closed loop", flush=True)
        steady = load.open_loop(bento_url, "/recommend", bodies, half, args.load_seconds)
        print(steady.row("bentoml"), flush=True)
        overload = load.closed_loop(bento_url, "/recommend", bodies, OVERLOAD, args.load_seconds)
        print(overload.row("bentoml"), flush=True)
        mlflow_overload = load.closed_loop(mlflow_url, "/invocations", mlf_bodies, OVERLOAD, args.load_seconds, collect_ids=False)
        print(mlflow_overload.row("mlflow"), flush=True)
        time.sleep(1)  # answers already sent are logged; let the last lines land before counting
        said = answered_by_server(bento_url) + answered_by_server(shadow_url)
    print(f"shadow-on: {dropped}")
    logged = log_ids(settings.request_log)
    missing = (steady.request_ids | overload.request_ids) - set(logged)
    lost = max(len(missing), said - len(logged))
    print(
        f"request log: {len(logged)} lines; the services say they answered {said} users; "
        f"{len(missing)} of the {len(steady.request_ids | overload.request_ids)} request ids the clients were answered with are not in it"
    )

    print(f"\nmedians over {args.rounds} rounds (errors summed); cpu = server CPU time per request")
    for t in targets:
        print(f"{res[t.name].row(t.name)}  cpu {t.cpu_us():>6.0f} us/req")
    b = res["bentoml"]
    batch_users = res["batch64"].rps * BATCH_USERS
    print(f"informational: bentoml/floor={ratio(b.rps, res['floor'].rps):.2f} bento-min/floor={ratio(res['bento-min'].rps, res['floor'].rps):.2f}")
    print(
        f"users/s: /recommend {b.rps:.0f}, /recommend_batch {batch_users:.0f}; half load: offered {half:.0f} req/s, achieved {steady.completed_rps:.0f}; "
        f"overload p99 bentoml {overload.p(99):.1f} ms ({overload.refused} refused, {overload.refused_without_retry_after} without Retry-After) "
        f"vs mlflow {mlflow_overload.p(99):.1f} ms ({mlflow_overload.refused} refused)"
    )
    print(two_stage_latency(settings), flush=True)
    ours = ("bentoml", "shadow-on", "batch64")
    errors = sum(res[n].errors for n in ours) + steady.failed + overload.failed + steady.refused  # refusals only count at overload
    print(
        f"serving: bentoml/bento-min={ratio(b.rps, res['bento-min'].rps):.2f} bentoml/mlflow={ratio(b.rps, res['mlflow'].rps):.2f} "
        f"shadow-on/off={ratio(res['shadow-on'].rps, b.rps):.2f} batch/single-users={ratio(batch_users, b.rps):.2f} "
        f"p99-half-load-ms={steady.p(99):.2f} p99-overload-ms={overload.p(99):.2f} errors={errors} lost-log-lines={lost}"
    )


if __name__ == "__main__":
    sys.exit(main())
