"""Scale benchmark: multi-worker training speed and the data path at up to 10M interactions.

1. Training steps/s of the sequence two-tower (the multi-worker family) on 1 worker and on a
   2-worker MultiWorkerMirrored cluster on loopback, through `python -m recsys.worker`: the
   program Kubernetes runs on GPU pods. Same global batch, so the same steps per epoch.
2. The data path at 1M, 3M and 10M synthetic interactions, each size in its own child process
   so peak memory (ru_maxrss) is that size's alone: GX validation time (recsys.validation, both
   suites), feature preparation time and tf.data throughput of the model's real input pipeline
   (its first 1000 batches of 1024; up to PIPELINE_MAX_ROWS), and peak RSS after each stage.
Run: `make bench-scale` (`python -m benchmarks.scale [--sizes 1000000,3000000]`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.schemas import CATEGORY_COL, EVENT_COL, INTERACTION_COLUMNS, ITEM_COL, PRICE_COL, TITLE_COL, TS_COL, USER_COL, WEIGHT_COL

SIZES = (1_000_000, 3_000_000, 10_000_000)
TRAIN_USERS = 3000  # recsys.data.synthetic shop for the steps/s runs: about 90k interactions
TRAIN_PARAMS = {"epochs": 3, "batch_size": 1024, "embedding_dim": 64, "max_len": 20}
PIPELINE = {"batch_size": 1024, "max_len": 20}
PIPELINE_BATCHES = 1000  # throughput over the first 1M examples: the shuffle-buffer fill included
CHILD_TIMEOUT_S = 1200
# The pipeline shuffles over the whole dataset (buffer = every example): about 1.5 GiB per 1M
# examples measured at 1M, so 10M would need ~15 GiB on a 23 GiB machine shared with others.
PIPELINE_MAX_ROWS = 3_000_000


def large_synthetic(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`n` canonical interactions, vectorised (recsys.data.synthetic loops per event: too slow here).

    Users about n/30 (30 events each, like the small shop), items n/500, Zipf popularity,
    second-resolution times over two years; duplicates of (user, item, time) dropped.
    """
    rng = np.random.default_rng(seed)
    n_users, n_items = max(n // 30, 10), max(n // 500, 50)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    items = rng.choice(n_items, n, p=popularity / popularity.sum())
    users = rng.integers(0, n_users, n)
    start = np.datetime64("2023-01-01T00:00:00", "ns")
    seconds = rng.integers(0, 2 * 365 * 86400, n).astype("timedelta64[s]").astype("timedelta64[ns]")
    user_names, item_names = np.char.add("u", np.arange(n_users).astype(str)), np.char.add("i", np.arange(n_items).astype(str))
    interactions = pd.DataFrame(
        {
            USER_COL: pd.Series(user_names[users], dtype=object),
            ITEM_COL: pd.Series(item_names[items], dtype=object),
            TS_COL: start + seconds,
            EVENT_COL: "purchase",
            WEIGHT_COL: rng.integers(1, 6, n).astype("float64"),
        }
    )
    interactions = interactions.drop_duplicates([USER_COL, ITEM_COL, TS_COL])[INTERACTION_COLUMNS].sort_values(TS_COL)
    categories = rng.integers(0, 50, n_items)
    catalogue = pd.DataFrame(
        {
            ITEM_COL: item_names.astype(object),
            TITLE_COL: [f"item {i} of category {c}" for i, c in enumerate(categories)],
            CATEGORY_COL: [f"c{c}" for c in categories],
            PRICE_COL: np.round(rng.lognormal(1.0, 0.6, n_items), 2),
        }
    )
    return interactions.reset_index(drop=True), catalogue


def _peak_mib() -> float:
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def data_path(n: int) -> dict[str, float]:
    """In a child process: generate, validate, prepare features and run one pipeline epoch."""
    from recsys.models.seq_two_tower import SeqTwoTowerModel
    from recsys.validation import validate_dataset

    row: dict[str, float] = {"interactions": float(n)}
    start = time.perf_counter()
    interactions, items = large_synthetic(n)
    row.update(rows=float(len(interactions)), generate_s=time.perf_counter() - start, peak_data_mib=_peak_mib())
    with tempfile.TemporaryDirectory() as docs:
        start = time.perf_counter()
        result = validate_dataset(interactions, items, Path(docs), max_timestamp="2026-01-01")
        row.update(validate_s=time.perf_counter() - start, valid=float(result.success), peak_validate_mib=_peak_mib())
    model = SeqTwoTowerModel(**PIPELINE)
    start = time.perf_counter()
    model._prepare(interactions, items)  # the features fit() builds: vocabularies, history windows
    row.update(features_s=time.perf_counter() - start, peak_features_mib=_peak_mib())
    del interactions
    if n > PIPELINE_MAX_ROWS:  # its full-size shuffle buffer would not fit beside the other engineers' jobs
        return {**row, "pipeline_s": math.nan, "examples_per_s": math.nan, "peak_pipeline_mib": row["peak_features_mib"]}
    start = time.perf_counter()
    examples = sum(int(batch["item"].shape[0]) for batch in model.dataset().take(PIPELINE_BATCHES))
    seconds = time.perf_counter() - start
    row.update(pipeline_s=seconds, examples_per_s=examples / seconds, peak_pipeline_mib=_peak_mib())
    return row


def _child(n: int) -> dict[str, float] | str:
    """Run `data_path(n)` in a fresh interpreter; its JSON row, or why it did not finish."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.scale", "--child", str(n)],
            capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"did not finish in {CHILD_TIMEOUT_S}s"
    if done.returncode != 0:
        return f"failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def training_speed(workers: int, home: Path) -> dict:
    """Steps/s of the seq two-tower on a cluster of `workers` processes on loopback (no MLflow)."""
    from recsys.models.strategy import cluster_config
    from tests.conftest import free_port

    addresses = [f"127.0.0.1:{free_port()}" for _ in range(workers)]
    processes = []
    for index in range(workers):
        env = {**os.environ, "RECSYS_HOME": str(home / f"w{workers}-{index}"), "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
        env.pop("TF_CONFIG", None)
        if workers > 1:
            env["TF_CONFIG"] = cluster_config(addresses, index)
        command = [sys.executable, "-m", "recsys.worker", "--dataset", f"synthetic:{TRAIN_USERS}", "--params", json.dumps(TRAIN_PARAMS), "--no-log"]
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    reports = []
    for process in processes:
        out, err = process.communicate(timeout=CHILD_TIMEOUT_S)
        if process.returncode != 0:
            raise RuntimeError(f"worker failed: {err[-2000:]}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    chief = reports[0]
    warm = sorted(chief["epoch_seconds"][1:])
    steps_per_s = chief["steps_per_epoch"] / warm[len(warm) // 2]
    return {"workers": workers, "steps_per_epoch": chief["steps_per_epoch"], "steps_per_s": steps_per_s,
            "examples_per_s": steps_per_s * TRAIN_PARAMS["batch_size"], "fit_s": chief["fit_seconds"],
            "ndcg_at_10": chief["metrics"]["ndcg_at_10"], "loss": chief["loss"][-1]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="interactions per data-path run")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(data_path(args.child)), flush=True)
        return
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    print("\n== training: seq two-tower, synthetic shop "
          f"({TRAIN_USERS} users), {json.dumps(TRAIN_PARAMS)}; steady-state epochs (export included) ==")  # fmt: skip
    print(f"{'workers':>7} {'steps/ep':>8} {'steps/s':>8} {'examples/s':>11} {'fit s':>7} {'ndcg@10':>8} {'loss':>6}", flush=True)
    speeds = []
    with tempfile.TemporaryDirectory() as home:
        for workers in (1, 2):
            s = training_speed(workers, Path(home))
            speeds.append(s)
            print(f"{s['workers']:>7} {s['steps_per_epoch']:>8} {s['steps_per_s']:>8.2f} {s['examples_per_s']:>11.0f} "
                  f"{s['fit_s']:>7.1f} {s['ndcg_at_10']:>8.4f} {s['loss']:>6.3f}", flush=True)  # fmt: skip
    print(f"\n== data path: one child process per size; pipeline = seq two-tower tf.data, {json.dumps(PIPELINE)} ==")
    print(f"{'interactions':>12} {'gen s':>6} {'GX s':>7} {'GX rows/s':>10} {'feat s':>7} {'tf.data ex/s':>12} "
          f"{'peak data':>10} {'peak GX':>8} {'peak all':>9}", flush=True)  # fmt: skip
    rows = {}
    for n in (int(x) for x in args.sizes.split(",")):
        row = _child(n)
        rows[n] = row
        if isinstance(row, str):
            print(f"{n:>12,} {row}", flush=True)
            continue
        rate = "skipped" if math.isnan(row["examples_per_s"]) else f"{row['examples_per_s']:.0f}"
        print(f"{n:>12,} {row['generate_s']:>6.1f} {row['validate_s']:>7.1f} {row['rows'] / row['validate_s']:>10.0f} "
              f"{row['features_s']:>7.1f} {rate:>12} {row['peak_data_mib']:>8.0f}Mi "
              f"{row['peak_validate_mib']:>6.0f}Mi {row['peak_pipeline_mib']:>7.0f}Mi", flush=True)  # fmt: skip
    done = {n: r for n, r in rows.items() if not isinstance(r, str)}
    largest = max((n for n, r in done.items() if not math.isnan(r["examples_per_s"])), default=None)
    summary = f"summary: steps/s 1 worker {speeds[0]['steps_per_s']:.2f}, 2 workers {speeds[1]['steps_per_s']:.2f} " \
              f"(x{speeds[1]['steps_per_s'] / speeds[0]['steps_per_s']:.2f})"  # fmt: skip
    if largest:
        r = done[largest]
        summary += (f"; at {largest:,} interactions: GX {r['validate_s']:.0f}s, tf.data {r['examples_per_s']:,.0f} ex/s, "
                    f"peak {r['peak_pipeline_mib'] / 1024:.1f} GiB")  # fmt: skip
    if done and max(done) != largest:
        r = done[max(done)]
        summary += f"; at {max(done):,}: GX {r['validate_s']:.0f}s, features {r['features_s']:.0f}s, peak {r['peak_features_mib'] / 1024:.1f} GiB"
    print("\n" + summary)


if __name__ == "__main__":
    main()
