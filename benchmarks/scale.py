"""Scale benchmark: the data path at 1M, 5M and 20M synthetic interactions, Spark GX, 1 vs 2 workers.

Data path, each size in its own child process so peak memory (VmHWM, recsys.cost.peak_rss_gib) is that size's alone:
generate a realistic shop into a dataset store (recsys.data.synthetic_store: power-law
popularity, sessions, repeat purchases, new items over time), validate its new files with GX on
pandas in batches of 5M rows (recsys.validation_store; GX's import excluded), split it per user in time, build the sequence model's
vocabularies and per-user sequences, measure the input pipeline against the same batches cached
(training steps/s; the ratio), train 200 steps, export and evaluate on a fixed sample of test
users, build the checked faiss index, and read the peak RSS after each stage. Pipeline figures
are taken after the shuffle buffer has filled, three times interleaved, median and spread.
The Spark GX check validates the bundled Online Retail and a corrupt copy on a local Spark and
compares with the pandas engine. The index check builds the promotion's HNSW over 1M random
items in its own process (memory bound). The worker figure interleaves 1-, 2-, 1-, 2-worker runs.
Run: `make bench-scale` (`python -m benchmarks.scale [--sizes 1000000,5000000,20000000]
[--index-items 1000000] [--no-workers]`).
The last line is the summary the scale issue names.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from recsys.cost import peak_rss_gib

SIZES = (1_000_000, 5_000_000, 20_000_000)
PIPELINE = {"batch_size": 1024, "max_len": 20, "bag_len": 50, "embedding_dim": 32}
WARM_BATCHES, TIMED_BATCHES, RATIO_STEPS, REPEATS = 20, 200, 40, 3
TRAIN_STEPS = 200
EVAL_USERS = 10_000
INDEX_ITEMS = 1_000_000  # the catalogue size for the index memory check
TRAIN_USERS = 3000  # recsys.data.synthetic shop for the steps/s runs: about 90k interactions
TRAIN_PARAMS = {"epochs": 3, "batch_size": 1024, "embedding_dim": 64, "max_len": 20}
CHILD_TIMEOUT_S = 3600
STAGES = ("generate", "validate", "split", "features", "pipeline", "train", "evaluate", "index")


class Stages:
    """Seconds and peak RSS after each named stage of one data-path run."""

    def __init__(self) -> None:
        self.row: dict[str, float] = {}

    def __call__(self, name: str, start: float) -> None:
        self.row[f"{name}_s"] = time.perf_counter() - start
        self.row[f"{name}_peak_gib"] = peak_rss_gib()


def data_path(n: int, folder: Path) -> dict[str, float]:
    """In a child process: every stage of the data path at `n` interactions."""
    from recsys.data.split import temporal_user_split
    from recsys.data.synthetic_store import write_synthetic_store
    from recsys.evaluation import evaluate
    from recsys.models.seq_two_tower import SeqTwoTowerModel
    from recsys.schemas import ITEM_COL, TS_COL, USER_COL
    from recsys.serving.index import build_checked
    from recsys.validation_store import validate_store

    stage = Stages()
    start = time.perf_counter()
    snap = write_synthetic_store(folder / "shop", n)
    stage("generate", start)
    stage.row.update(rows=float(snap.rows))

    import great_expectations  # noqa: F401 - its import (seconds, once per process) is not validation throughput

    start = time.perf_counter()
    checked = validate_store(snap, folder / "docs", max_rows=100_000_000, max_timestamp="2030-01-01")
    stage("validate", start)
    stage.row.update(valid=float(checked.success), gx_rows_per_s=checked.rows_checked / stage.row["validate_s"])

    start = time.perf_counter()
    split = temporal_user_split(snap.read(columns=[USER_COL, ITEM_COL, TS_COL]))
    items = snap.items()
    stage("split", start)

    start = time.perf_counter()
    model = SeqTwoTowerModel(**PIPELINE)
    model.prepare(split.train, items)
    stage("features", start)
    stage.row.update(examples=float(model.n_examples))

    start = time.perf_counter()
    rates, ratios = [], []
    for _ in range(REPEATS):  # examples/s of the pipeline alone, then training steps/s: pipeline vs cached
        batches = iter(model.dataset())
        for _ in range(WARM_BATCHES):  # past the shuffle buffer's fill
            next(batches)
        timed = time.perf_counter()
        examples = sum(int(next(batches)["item"].shape[0]) for _ in range(TIMED_BATCHES))
        rates.append(examples / (time.perf_counter() - timed))
        ratios.append(model.pipeline_ratio(RATIO_STEPS, rounds=1)["ratio"])
    stage("pipeline", start)
    stage.row.update(
        examples_per_s=statistics.median(rates),
        examples_per_s_spread=max(rates) - min(rates),
        pipeline_ratio=statistics.median(ratios),
        pipeline_ratio_spread=max(ratios) - min(ratios),
    )

    start = time.perf_counter()
    model.keras_model.fit(model.dataset().take(TRAIN_STEPS), epochs=1, verbose=0)
    stage("train", start)

    start = time.perf_counter()
    exported = model.export_now()
    metrics = evaluate(exported, split.test, ks=(10,), bootstrap=200, max_users=EVAL_USERS)
    stage("evaluate", start)
    stage.row.update(
        ndcg_at_10=metrics["ndcg_at_10"],
        ndcg_lo=metrics["ndcg_at_10_lo"],
        ndcg_hi=metrics["ndcg_at_10_hi"],
        eval_users=metrics["n_users"],
        test_users=metrics["n_test_users"],
        items=float(exported.n_items),
    )

    start = time.perf_counter()
    _, report = build_checked(exported.item_vectors, exported.user_vectors)
    stage("index", start)
    stage.row.update(index_recall=report.recall)
    return {**stage.row, "interactions": float(n), "total_s": sum(stage.row[f"{s}_s"] for s in STAGES)}


def index_build(n_items: int, dim: int = 64) -> dict[str, float]:
    """In a child process: the promotion's checked faiss index over `n_items` unit vectors."""
    from recsys.serving.index import build_checked

    rng = np.random.default_rng(0)
    items = rng.normal(size=(n_items, dim)).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    users = rng.normal(size=(2000, dim)).astype(np.float32)
    before, start = peak_rss_gib(), time.perf_counter()
    _, report = build_checked(items, users)
    return {
        "items": float(n_items),
        "seconds": time.perf_counter() - start,
        "recall": report.recall,
        "vectors_gib": items.nbytes / 1024**3,
        "peak_gib": peak_rss_gib(),
        "peak_before_gib": before,
    }


def _child(n: int, flag: str = "--child") -> dict[str, float] | str:
    """Run `data_path(n)` in a fresh interpreter; its JSON row, or why it did not finish."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.scale", flag, str(n)],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
    except subprocess.TimeoutExpired:
        return f"did not finish in {CHILD_TIMEOUT_S}s"
    if done.returncode != 0:
        return f"failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-3:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def spark_check() -> tuple[bool, str]:
    """The suites on a local Spark and on pandas, bundled Online Retail and a corrupt copy: same verdicts?"""
    from recsys.data.ingest import load_online_retail
    from recsys.schemas import USER_COL, WEIGHT_COL
    from recsys.validation import validate_dataset

    data = load_online_retail()
    corrupt = data.interactions.copy()
    corrupt.loc[corrupt.index[:5], WEIGHT_COL] = -1.0
    corrupt.loc[corrupt.index[5:8], USER_COL] = None
    verdicts = {}
    with tempfile.TemporaryDirectory() as docs:
        for name, frame in (("valid", data.interactions), ("corrupt", corrupt)):
            for engine in ("pandas", "spark"):
                start = time.perf_counter()
                result = validate_dataset(frame, data.items, Path(docs) / f"{name}-{engine}", engine=engine)
                verdicts[name, engine] = (result.success, sorted(": ".join(f.split(": ")[:2]) for f in result.failed), time.perf_counter() - start)
    same = all(verdicts[name, "pandas"][:2] == verdicts[name, "spark"][:2] for name in ("valid", "corrupt"))
    ok = same and verdicts["valid", "spark"][0] and not verdicts["corrupt", "spark"][0]
    detail = ", ".join(f"{name}/{engine} {'pass' if v[0] else 'fail'} {len(v[1])} failed {v[2]:.1f}s" for (name, engine), v in verdicts.items())
    return ok, detail


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
    return {"workers": workers, "steps_per_s": chief["steps_per_epoch"] / warm[len(warm) // 2], "ndcg_at_10": chief["metrics"]["ndcg_at_10"]}


def _workers() -> None:
    """1 vs 2 workers, interleaved (1, 2, 1, 2) so both see the same machine load."""
    print(f"\n== training: seq two-tower, synthetic shop ({TRAIN_USERS} users), {json.dumps(TRAIN_PARAMS)}; interleaved runs ==", flush=True)
    runs: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as home:
        for repeat in range(2):
            for workers in (1, 2):
                s = training_speed(workers, Path(home) / str(repeat))
                runs[workers].append(s["steps_per_s"])
                print(f"run {repeat + 1}: {workers} worker(s) {s['steps_per_s']:.2f} steps/s, NDCG@10 {s['ndcg_at_10']:.4f}", flush=True)
    one, two = statistics.median(runs[1]), statistics.median(runs[2])
    print(f"workers: 1 → {one:.2f} steps/s, 2 → {two:.2f} steps/s (x{two / one:.2f}, median of {len(runs[1])} each)", flush=True)


def _index_line(r: dict[str, float]) -> str:
    return (
        f"HNSW built and checked in {r['seconds']:.0f}s, recall@100 {r['recall']:.3f}, vectors {r['vectors_gib']:.2f} GiB, "
        f"peak RSS {r['peak_gib']:.2f} GiB (before the build {r['peak_before_gib']:.2f} GiB)"
    )


def _print_table(rows: dict[int, dict[str, float] | str]) -> None:
    print(f"\n== data path ({json.dumps(PIPELINE)}): seconds per stage, then peak RSS (GiB) after it ==")
    print(f"{'interactions':>12} " + " ".join(f"{s[:8]:>8}" for s in STAGES) + f" {'total':>7} {'GX rows/s':>10} {'ex/s':>8} {'ratio':>6} {'peak':>6}")
    for n, row in rows.items():
        if isinstance(row, str):
            print(f"{n:>12,} {row}")
            continue
        seconds = " ".join(f"{row[f'{s}_s']:>8.1f}" for s in STAGES)
        print(
            f"{n:>12,} {seconds} {row['total_s']:>7.1f} {row['gx_rows_per_s']:>10,.0f} {row['examples_per_s']:>8,.0f} "
            f"{row['pipeline_ratio']:>6.2f} {row['index_peak_gib']:>6.2f}"
        )
        print(f"{'peak GiB':>12} " + " ".join(f"{row[f'{s}_peak_gib']:>8.2f}" for s in STAGES))
        print(
            f"{'':>12} rows {row['rows']:,.0f}, examples {row['examples']:,.0f}, items {row['items']:,.0f}; "
            f"ex/s spread {row['examples_per_s_spread']:,.0f}, ratio spread {row['pipeline_ratio_spread']:.2f}; "
            f"NDCG@10 {row['ndcg_at_10']:.4f} [{row['ndcg_lo']:.4f}, {row['ndcg_hi']:.4f}] on {row['eval_users']:,.0f} of "
            f"{row['test_users']:,.0f} test users after {TRAIN_STEPS} steps; index recall@100 {row['index_recall']:.3f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="interactions per data-path run")
    parser.add_argument("--no-workers", action="store_true", help="skip the 1-vs-2-worker runs")
    parser.add_argument("--index-items", type=int, default=INDEX_ITEMS, help="items of the index-build check (0: skip)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--index-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.index_child is not None:
        print(json.dumps(index_build(args.index_child)), flush=True)
        return
    if args.child is not None:
        with tempfile.TemporaryDirectory() as folder:
            print(json.dumps(data_path(args.child, Path(folder))), flush=True)
        return
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    rows: dict[int, dict[str, float] | str] = {}
    for n in (int(x) for x in args.sizes.split(",")):
        rows[n] = _child(n)
        _print_table({n: rows[n]})
    _print_table(rows)
    if args.index_items:
        built = _child(args.index_items, "--index-child")
        print(f"\nindex at {args.index_items:,} items: {built if isinstance(built, str) else _index_line(built)}", flush=True)
    spark_ok, detail = spark_check()
    print(f"\nSpark GX (local[2]) vs pandas: {detail}")
    if not args.no_workers:
        _workers()
    done = {n: r for n, r in rows.items() if not isinstance(r, str)}
    if not done:
        raise SystemExit("no size finished")
    largest = done[max(done)]
    growth = done[max(done)]["total_s"] / done[5_000_000]["total_s"] if 5_000_000 in done and max(done) > 5_000_000 else float("nan")
    print(
        f"scale: rows={max(done)} peak-rss-gib={largest['index_peak_gib']:.2f} gx-rows-per-s={largest['gx_rows_per_s']:.0f} "
        f"pipeline-ratio={largest['pipeline_ratio']:.2f} growth-5m-to-20m={growth:.2f} spark-gx={'pass' if spark_ok else 'fail'}"
    )


if __name__ == "__main__":
    main()
