"""Serving benchmark: the same champion through BentoML, through `mlflow models serve`, and a
bare Starlette floor, each driven by wrk at concurrency 1, 16 and 64, one server at a time.

Run with `make bench-serving`. It trains a two-tower champion on Online Retail in a temporary
RECSYS_HOME (blessed and promoted the normal way, so the ANN index is built and checked),
measures the in-process model call, serves it three ways, then saturates the BentoML service
for 60 s and checks that the request log has a line for every answered request. The last
line is the summary: throughput ratios at concurrency 16, the HTTP p50 over the in-process
call at concurrency 1, errors and lost log lines.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

from benchmarks import wrk
from recsys import platform
from recsys.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 16, 64)


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


@contextmanager
def server(name: str, command: list[str], health: str, env: dict[str, str], log: Path) -> Iterator[None]:
    """Start a server in its own process group, wait until `health` answers, stop it after."""
    with log.open("ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not platform.is_healthy(health):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not come up; see {log}")
            time.sleep(0.5)
        yield
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)


def drive(name: str, url: str, script: Path, seconds: int) -> tuple[dict[int, wrk.WrkResult], int]:
    """wrk at each concurrency after a 2 s warm-up; the results and the requests answered in all."""
    warm = wrk.run(url, script, 16, 2)  # connection pools, lazy imports, caches
    results = {}
    for c in CONCURRENCY:
        results[c] = wrk.run(url, script, c, seconds)
        print(results[c].row(name), flush=True)
    return results, warm.answered + sum(r.answered for r in results.values())


def log_lines(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="per wrk run")
    parser.add_argument("--saturate", type=int, default=60, help="seconds of the saturation run")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: settings)")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="recsys-bench-")) / "home"
    port = 3700
    os.environ.update(RECSYS_HOME=str(home), BENTOML_HOME=str(home / "bentoml"), RECSYS_SERVE_PORT=str(port),
                      BENTOML_DO_NOT_TRACK="True")  # fmt: skip
    get_settings.cache_clear()
    settings = get_settings()
    champion(settings, args.epochs)
    from recsys import registry

    model = registry.load_version(settings, registry.champion(settings))
    rng = np.random.default_rng(0)
    users = rng.choice(model.user_ids, 450, replace=False).tolist() + [f"new-{i}" for i in range(50)]
    inproc_ms = in_process(settings, users)
    bodies = [f'{{"user_id": "{u}", "k": 10}}' for u in users]
    # mlflow starts `uvicorn` through bash: this environment's bin must come first on PATH.
    env = {**os.environ, **platform.server_env(settings), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    logs = settings.run_dir
    logs.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{port}"

    spec = platform.bentoml_server(settings)
    with server("bentoml", spec.command, spec.health_url, env, logs / "bentoml.log"):
        before = log_lines(settings.request_log)
        script = wrk.lua_script(bodies, "/recommend")
        bento, answered = drive("bentoml", base, script, args.seconds)
        saturation = wrk.run(base, script, 64, args.saturate)
        print(saturation.row("bento60s"), flush=True)
        time.sleep(1)
        logged = log_lines(settings.request_log) - before
    answered += saturation.answered
    lost = max(0, answered - logged)  # requests cut off when a run ends are logged, not counted: logged >= answered
    print(f"request log: {logged} lines for {answered} requests answered 2xx (wrk-counted, warm-up included)")

    mlflow_cmd = [platform.bin_path("mlflow"), "models", "serve", "-m", f"models:/{settings.registered_model}@champion",
                  "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]  # fmt: skip
    with server("mlflow", mlflow_cmd, f"{base}/ping", env, logs / "mlflow.log"):
        mlf_bodies = [f'{{"dataframe_records": [{{"user_id": "{u}", "k": 10}}]}}' for u in users]
        mlflow, _ = drive("mlflow", base, wrk.lua_script(mlf_bodies, "/invocations"), args.seconds)

    floor_cmd = [platform.bin_path("uvicorn"), "benchmarks.floor_app:app", "--port", str(port), "--workers", "1",
                 "--log-level", "warning"]  # fmt: skip
    with server("floor", floor_cmd, f"{base}/health", env, logs / "floor.log"):
        floor, _ = drive("floor", base, script, args.seconds)

    errors = sum(r.errors for r in bento.values()) + saturation.errors
    print("\ntarget            c=16 req/s  x bentoml  p99@16 ms")
    for name, res in (("bentoml", bento), ("mlflow", mlflow), ("floor", floor)):
        print(f"{name:<16} {res[16].rps:>11.0f}  {res[16].rps / bento[16].rps:>9.2f}  {res[16].p99_ms:>9.2f}")
    print(f"\nrequest log lines lost: {lost}; http p50 at c=1 {bento[1].p50_ms:.2f} ms vs in-process {inproc_ms:.3f} ms")
    print(
        f"serving: throughput bentoml/mlflow={bento[16].rps / mlflow[16].rps:.2f} "
        f"bentoml/floor={bento[16].rps / floor[16].rps:.2f} p50-overhead-ms={bento[1].p50_ms - inproc_ms:.2f} "
        f"errors={errors} lost-log-lines={lost}"
    )


if __name__ == "__main__":
    sys.exit(main())
