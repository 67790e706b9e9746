"""Two MultiWorkerMirrored workers on loopback train the model one process would, as one cluster.

Each worker is a real `python -m recsys.worker` process with its own TF_CONFIG: the same
program a GPU pod of infra/k8s/training-job.yaml runs. A single process without TF_CONFIG
trains the same model on the same data as the reference.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import mlflow

from recsys.models.strategy import MULTI_WORKER, cluster_config
from tests.conftest import free_port

# The seq model's small-data settings (tests/model/test_seq_model.py): enough to beat popularity.
PARAMS = {"epochs": 10, "embedding_dim": 32, "batch_size": 256, "max_len": 20}
TIMEOUT_S = 420


def _start(home: Path, tf_config: str | None, *flags: str) -> subprocess.Popen:
    """One worker process; each gets its own RECSYS_HOME so we can see who wrote what."""
    env = {**os.environ, "RECSYS_HOME": str(home), "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    if tf_config:
        env["TF_CONFIG"] = tf_config
    command = [sys.executable, "-m", "recsys.worker", "--dataset", "synthetic", "--params", json.dumps(PARAMS), *flags]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# TensorFlow logs this when a second MultiWorkerMirroredStrategy re-enables collective ops in a
# running process: what preceded a worker's lost heartbeats in CI (recsys.models.strategy).
REENABLED = "Enabling collective ops after program startup"


def _reports(processes: list[subprocess.Popen]) -> list[dict]:
    """Each worker's JSON report (its last stdout line), once all have ended; every stderr if one failed."""
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=TIMEOUT_S))
        finally:
            process.kill()
    failed = [f"task {i} (exit {p.returncode}):\n{err[-3000:]}" for i, (p, (_, err)) in enumerate(zip(processes, outputs)) if p.returncode]
    assert not failed, "\n\n".join(failed)
    assert not [err for _, err in outputs if REENABLED in err]  # one strategy per process, for both fits
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


def test_two_workers_train_what_one_process_trains(tmp_path: Path) -> None:
    workers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    # All three at once: the cluster waits on its collectives, the reference fills the gaps.
    chief = _start(tmp_path / "chief", cluster_config(workers, 0))
    other = _start(tmp_path / "worker1", cluster_config(workers, 1))
    single = _start(tmp_path / "single", None, "--no-log")
    reports = _reports([chief, other, single])
    chief_report, other_report, single_report = reports

    # One synchronous cluster: both tasks see 2 replicas and the same all-reduced loss each epoch.
    assert [(r["chief"], r["strategy"], r["replicas"]) for r in reports[:2]] == [(True, MULTI_WORKER, 2), (False, MULTI_WORKER, 2)]
    assert len(chief_report["loss"]) == PARAMS["epochs"]
    assert all(math.isclose(a, b, rel_tol=1e-5) for a, b in zip(chief_report["loss"], other_report["loss"]))
    assert (single_report["strategy"], single_report["replicas"]) == ("default", 1)

    # Loss: the global batch of 256 is split, so each replica's in-batch softmax ranks its positive
    # among 128 candidates, not 256. At chance that loss is log(128) vs log(256): exactly log 2
    # lower. While negatives dominate the softmax the gap stays near log 2 (seen: 0.60-0.76 per
    # epoch); a cluster that trained on duplicated or missing data, or did not average its
    # gradients, drifts away from it. Tolerance on the mean gap over epochs: 0.1.
    gaps = [s - m for s, m in zip(single_report["loss"], chief_report["loss"])]
    assert abs(sum(gaps) / len(gaps) - math.log(2)) < 0.1, gaps
    assert chief_report["loss"][-1] < chief_report["loss"][0]

    # Ranking quality on the test split: within 0.03 NDCG@10 of the single process (seed-to-seed
    # spread of this configuration is about 0.01; the learned model is about 0.14, popularity 0.08).
    assert abs(chief_report["metrics"]["ndcg_at_10"] - single_report["metrics"]["ndcg_at_10"]) < 0.03, (
        chief_report["metrics"]["ndcg_at_10"],
        single_report["metrics"]["ndcg_at_10"],
    )
    assert abs(chief_report["metrics"]["recall_at_10"] - single_report["metrics"]["recall_at_10"]) < 0.04

    # Only the chief writes: one MLflow run and one registered version, nothing from worker 1.
    assert not (tmp_path / "worker1").exists()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'chief' / 'mlflow.db'}")
    run = mlflow.get_run(chief_report["run_id"])
    assert (run.data.params["strategy"], run.data.params["replicas"]) == (MULTI_WORKER, "2")
    assert chief_report["version"] == "1"
    assert len(mlflow.search_runs(search_all_experiments=True)) == 1


def test_exactly_one_task_of_a_cluster_is_chief() -> None:
    from recsys.models.strategy import is_chief

    workers = ["h0:2222", "h1:2222", "h2:2222"]
    assert [is_chief(cluster_config(workers, i)) for i in range(3)] == [True, False, False]
    with_chief = {"cluster": {"chief": ["c:2222"], "worker": workers}}
    roles = [("chief", 0), ("worker", 0), ("worker", 1)]
    assert [is_chief(json.dumps({**with_chief, "task": {"type": t, "index": i}})) for t, i in roles] == [True, False, False]
    assert is_chief(None) and is_chief("")  # a lone process writes its own artifacts
