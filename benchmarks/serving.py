"""Serving benchmark: the same champion through BentoML, through `mlflow models serve`, and a
bare Starlette floor, each driven by wrk at concurrency 1, 16 and 64; beside them BentoML's
own minimum (`benchmarks/bento_min.py`: a BentoML service answering a constant body).

Run with `make bench-serving`. It trains a two-tower champion on Online Retail in a temporary
RECSYS_HOME (blessed and promoted the normal way, so the ANN index is built and checked),
measures the in-process model call, then serves it three ways with one worker each. The three
servers are up together and wrk drives one at a time, interleaved (every server at c=1, then
every server at c=16, ...), so that a load change on a shared machine hits all three alike
rather than whichever happened to run last. Besides requests/s and latency it reads each
server's CPU time per request from /proc (its whole process tree): time the server spent,
not time it waited for a core, so that figure holds even when other work shares the machine.
The floor and BentoML's minimum answer the bytes of a real /recommend response, so all send
as much.
Last, it saturates the BentoML service for 60 s and checks that the request log has a line
for every answered request. The last line is the summary: throughput ratios at concurrency 16,
the HTTP p50 over the in-process call at concurrency 1, errors and lost log lines.
"""

from __future__ import annotations

import argparse
import os
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

from benchmarks import wrk
from recsys import platform
from recsys.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 16, 64)
WORKERS = 1  # per server: BentoML RECSYS_SERVE_WORKERS, mlflow -w, uvicorn --workers


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


def in_process(settings: Settings, user_ids: list[str]) -> float:
    """Median time of one model call (ServingModel.recommend, k=10) in ms, as the service makes it."""
    from bentoml._internal.models import ModelStore

    from recsys.serving.logic import Query
    from recsys.serving.service import load_serving

    store = ModelStore(str(settings.bentoml_home.resolve() / "models"))
    serving = load_serving(store.get(f"{settings.registered_model}:latest"))
    times = []
    for user in user_ids * 4:
        start = time.perf_counter()
        serving.recommend([Query(user, 10)])
        times.append(time.perf_counter() - start)
    p50, p99 = np.percentile(times, [50, 99]) * 1e3
    print(f"in-process model call: p50 {p50:.3f} ms, p99 {p99:.3f} ms over {len(times)} calls")
    return float(p50)


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
    """One running server, the wrk script that drives it, and what was measured on it."""

    name: str
    url: str
    script: Path
    pid: int  # the process we started; its descendants count too
    runs: dict[int, list[wrk.WrkResult]] = field(default_factory=dict)  # by concurrency, one per round
    cpu: dict[int, list[float]] = field(default_factory=dict)  # server CPU us per request, likewise

    def cpu_seconds(self) -> float:
        """User + system CPU of the server's whole process tree (arbiter, workers, shells)."""
        ticks = sum(int(f[11]) + int(f[12]) for f in tree_stats(self.pid))  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def processes(self) -> int:
        return len(tree_stats(self.pid))

    def drive(self, concurrency: int, seconds: int) -> wrk.WrkResult:
        """One wrk run, kept with the server's CPU time per completed request beside it."""
        before = self.cpu_seconds()
        result = wrk.run(self.url, self.script, concurrency, seconds)
        self.runs.setdefault(concurrency, []).append(result)
        self.cpu.setdefault(concurrency, []).append((self.cpu_seconds() - before) * 1e6 / max(result.requests, 1))
        return result

    def result(self, concurrency: int) -> wrk.WrkResult:
        """The rounds at one concurrency: median of each figure, errors and requests summed."""
        runs = self.runs[concurrency]
        med = {f: float(np.median([getattr(r, f) for r in runs])) for f in ("rps", "p50_ms", "p95_ms", "p99_ms")}
        return wrk.WrkResult(concurrency, sum(r.requests for r in runs), errors=sum(r.errors for r in runs), non_2xx=sum(r.non_2xx for r in runs), **med)

    def cpu_us(self, concurrency: int) -> float:
        return float(np.median(self.cpu[concurrency]))


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


def log_lines(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each figure is their median")
    parser.add_argument("--saturate", type=int, default=60, help="seconds of the saturation run")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: settings)")
    parser.add_argument("--port", type=int, default=3700, help="BentoML's port; mlflow, the floor and BentoML's minimum take the next three")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="recsys-bench-")) / "home"
    os.environ.update(RECSYS_HOME=str(home), BENTOML_HOME=str(home / "bentoml"), RECSYS_SERVE_PORT=str(args.port), BENTOML_DO_NOT_TRACK="True")
    get_settings.cache_clear()
    settings = get_settings()
    champion(settings, args.epochs)
    from recsys import registry

    model = registry.load_version(settings, registry.champion(settings))
    rng = np.random.default_rng(0)
    users = rng.choice(model.user_ids, 450, replace=False).tolist() + [f"new-{i}" for i in range(50)]
    inproc_ms = in_process(settings, users)
    bodies = [f'{{"user_id": "{u}", "k": 10}}' for u in users]
    mlf_bodies = [f'{{"dataframe_records": [{{"user_id": "{u}", "k": 10}}]}}' for u in users]
    # mlflow starts `uvicorn` through bash: this environment's bin must come first on PATH.
    env = {**os.environ, **platform.server_env(settings), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "RECSYS_SERVE_WORKERS": str(WORKERS)}
    logs = settings.run_dir
    logs.mkdir(parents=True, exist_ok=True)
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
        minimum_pid = stack.enter_context(server("bento-min", minimum_cmd, f"{minimum_url}/readyz", floor_env, logs / "bento-min.log"))
        script = wrk.lua_script(bodies, "/recommend")
        targets = [
            Target("bentoml", bento_url, script, bento_pid),
            Target("mlflow", mlflow_url, wrk.lua_script(mlf_bodies, "/invocations"), mlflow_pid),
            Target("floor", floor_url, script, floor_pid),
            Target("bento-min", minimum_url, script, minimum_pid),
        ]
        print(
            f"setup: {WORKERS} worker per server (processes in each tree: "
            + ", ".join(f"{t.name} {t.processes()}" for t in targets)
            + f"); wrk -t min(c,2) --timeout 5s, {args.rounds} interleaved rounds of {args.seconds} s runs, medians; "
            f"floor body {floor_body.stat().st_size} bytes = a real /recommend answer",
            flush=True,
        )

        before = log_lines(settings.request_log)
        warm = {t.name: wrk.run(t.url, t.script, 16, 2) for t in targets}  # connection pools, lazy imports, caches
        for round_ in range(args.rounds):
            for c in CONCURRENCY:
                for t in targets:
                    result = t.drive(c, args.seconds)
                    print(f"{result.row(t.name)}  cpu {t.cpu[c][-1]:>6.0f} us/req  (round {round_ + 1})", flush=True)
        answered = warm["bentoml"].answered + sum(r.answered for runs in targets[0].runs.values() for r in runs)
        saturation = wrk.run(bento_url, script, 64, args.saturate)
        print(saturation.row("bento60s"), flush=True)
        time.sleep(1)
        logged = log_lines(settings.request_log) - before
    answered += saturation.answered
    lost = max(0, answered - logged)  # requests cut off when a run ends are logged, not counted: logged >= answered
    print(f"request log: {logged} lines for {answered} requests answered 2xx (wrk-counted, warm-up included)")

    res = {t.name: {c: t.result(c) for c in CONCURRENCY} for t in targets}
    b = res["bentoml"]
    errors = sum(r.errors for r in b.values()) + saturation.errors
    print(f"\nmedians over {args.rounds} rounds (errors summed); cpu = server CPU time per request")
    for t in targets:
        for c in CONCURRENCY:
            print(f"{res[t.name][c].row(t.name)}  cpu {t.cpu_us(c):>6.0f} us/req")
    print("\ntarget     c=16 req/s  x bentoml  p99@16 ms  p99@64 ms  cpu us/req@16")
    for t in targets:
        r16, r64 = res[t.name][16], res[t.name][64]
        print(f"{t.name:<9} {r16.rps:>11.0f}  {r16.rps / b[16].rps:>9.2f}  {r16.p99_ms:>9.2f}  {r64.p99_ms:>9.2f}  {t.cpu_us(16):>13.0f}")
    print(f"\nrequest log lines lost: {lost}; http p50 at c=1 {b[1].p50_ms:.2f} ms vs in-process {inproc_ms:.3f} ms")
    print(
        f"bentoml's own minimum: bentoml/bento-min={b[16].rps / res['bento-min'][16].rps:.2f} "
        f"bento-min/floor={res['bento-min'][16].rps / res['floor'][16].rps:.2f} (throughput at c=16)"
    )
    print(
        f"serving: throughput bentoml/mlflow={b[16].rps / res['mlflow'][16].rps:.2f} "
        f"bentoml/floor={b[16].rps / res['floor'][16].rps:.2f} "
        f"p50-overhead-ms={b[1].p50_ms - inproc_ms:.2f} errors={errors} lost-log-lines={lost}"
    )


if __name__ == "__main__":
    sys.exit(main())
