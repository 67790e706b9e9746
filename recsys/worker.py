"""One task of a multi-worker training cluster: `python -m recsys.worker`, with TF_CONFIG set.

Every task of a MultiWorkerMirroredStrategy cluster runs this same program: two processes on
loopback in the tests and the benchmark, one pod per GPU node in Kubernetes
(infra/k8s/training-job.yaml). The strategy comes from TF_CONFIG (recsys.models.strategy);
the model's tf.data pipeline carries the global batch, which Keras splits across replicas
(each worker reads its own share: AutoShardPolicy.DATA). All tasks fit; only the chief logs
the run to MLflow and registers the model, so a cluster leaves exactly one run and version.
Without TF_CONFIG it is an ordinary single-process training run.

Prints one JSON line (a WorkerReport) on stdout so a launcher can compare the tasks.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, field

from recsys.data.ingest import Dataset, load_dataset
from recsys.data.split import temporal_user_split
from recsys.data.synthetic import make_synthetic
from recsys.models import strategy as strat
from recsys.models.families import DISTRIBUTED
from recsys.settings import Settings, get_settings


@dataclass(frozen=True)
class WorkerReport:
    """What one task did: its place in the cluster, how training went, and (chief) what it logged."""

    task: str  # "worker:0"
    chief: bool
    strategy: str
    replicas: int
    loss: list[float]  # per epoch
    fit_seconds: float | None = None  # wall time of fit alone (tasks that only fit)
    epoch_seconds: list[float] = field(default_factory=list)  # each epoch, its export included
    steps_per_epoch: int | None = None
    run_id: str | None = None  # chief with MLflow logging only
    version: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # on the test split


def load(name: str, settings: Settings) -> Dataset:
    """The training data: a named dataset, or `synthetic[:USERS]` (recsys.data.synthetic, seeded)."""
    if name == "synthetic" or name.startswith("synthetic:"):
        users = int(name.partition(":")[2] or 300)
        return make_synthetic(n_users=users, n_items=max(200, users // 3), seed=settings.seed)
    return load_dataset(name, settings.shared_data_dir)


def run(data: Dataset, settings: Settings, family: str, params: dict | None = None, log: bool = True) -> WorkerReport:
    """Fit `family` as this task of the cluster; the chief also logs and registers when `log`.

    `log=False` fits on every task without touching MLflow (the benchmark times fit alone).
    """
    import mlflow

    from recsys import training
    from recsys.evaluation import evaluate

    if family not in DISTRIBUTED:  # families whose fit runs under a tf.distribute strategy
        raise ValueError(f"family {family!r} trains in one process; multi-worker training supports {', '.join(DISTRIBUTED)}")
    tf_config = os.environ.get("TF_CONFIG")
    task = json.loads(tf_config)["task"] if tf_config else {"type": "worker", "index": 0}
    name, chief = f"{task['type']}:{task['index']}", strat.is_chief(tf_config)
    split = temporal_user_split(data.interactions)
    if chief and log:
        result = training.train(data, split, settings, family, register=True, params=params)
        logged = mlflow.get_run(result.run_id)
        history = mlflow.MlflowClient().get_metric_history(result.run_id, "loss")
        loss = [m.value for m in sorted(history, key=lambda m: m.step)]
        strategy, replicas = logged.data.params["strategy"], int(logged.data.params["replicas"])
        return WorkerReport(name, chief, strategy, replicas, loss, run_id=result.run_id, version=result.version, metrics=result.metrics)
    ends: list[float] = []
    start = time.perf_counter()  # the same fits as the chief's train(), so the collectives line up
    fitted = training.fit_by_protocol(family, settings, params, split, data.items, lambda epoch, step: ends.append(time.perf_counter()))
    seconds = time.perf_counter() - start
    selection = fitted.selection
    setup, steps = selection.distribution, int(selection.dataset().cardinality().numpy())
    epochs = [b - a for a, b in zip([start, *ends], ends)]  # the epoch-choosing fit's epochs (with their validation scoring)
    metrics = evaluate(fitted.model.export(), split.test)
    return WorkerReport(name, chief, setup.name, setup.replicas, fitted.history["loss"], seconds, epochs, steps, metrics=metrics)


def main(argv: list[str] | None = None) -> WorkerReport:
    """Command line: which data and family, optional epochs/batch, and whether the chief logs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=None, help="default: RECSYS_DATASET; 'synthetic' or 'synthetic:USERS' for generated data")
    parser.add_argument("--family", default="seq_two_tower", choices=DISTRIBUTED)
    parser.add_argument("--params", default="{}", help="JSON of model parameters, e.g. '{\"epochs\": 3}'")
    parser.add_argument("--no-log", action="store_true", help="fit only: no MLflow run, no registration")
    args = parser.parse_args(argv)
    settings = get_settings()
    report = run(load(args.dataset or settings.dataset, settings), settings, args.family, json.loads(args.params), not args.no_log)
    print(json.dumps(asdict(report)), flush=True)
    return report


if __name__ == "__main__":
    main()
