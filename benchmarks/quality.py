"""Quality benchmark: every model family on three public datasets, by the field's standard protocol.

Per-user temporal split: each user's last 20% of events is test, and validation is the last 20%
of what comes before (cut like the test, `recsys.data.split`). Every family chooses on
validation (fit on train, score validation): EASE, iALS and item-kNN by their grids in
`recsys.models.families`, the deep model its epoch count (validation NDCG@10 after each epoch of
one fit). The chosen configuration is then refit on train + validation and scored on test, the
same test users and candidates for every model. `base` is the best tuned baseline (EASE, iALS,
item-kNN), `best` the best project model (the deep model or the two-stage model, whose retrievers
take the baselines' chosen configurations; its candidate recall@N on test is the ranker's ceiling).
Beside quality, what each costs: the refit's CPU seconds and the CPU microseconds per user of
ranking (`--plot` draws quality against training cost with each dataset's Pareto front). Also
measured: training steps/s through the real tf.data pipeline over the same steps on cached
tensors (interleaved rounds, the shuffle buffer's fill untimed: `SeqTwoTowerModel.pipeline_ratio`). Run: `make bench-quality` (`--datasets` for a subset,
`--deep-retriever` to put the sequence two-tower in the two-stage union).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.deep import deep_config
from recsys.cost import Meter
from recsys.data.ingest import Dataset, load_dataset
from recsys.data.split import Split, temporal_user_split
from recsys.epochs import choose_epochs
from recsys.evaluation import evaluate, recommend_ids
from recsys.models.base import Recommender
from recsys.models.families import FAMILIES
from recsys.models.two_stage.reuse import reusing
from recsys.schemas import USER_COL
from recsys.settings import get_settings
from recsys.tuning import grid, refit_score, search, validation_objective

DATASETS = ("online-retail", "ml-100k", "ml-latest-small")
BASELINES = ("ease", "ials", "item_knn")
PROJECT = ("seq_two_tower", "two_stage")  # the project's own models: `best` is the one better on validation
PIPELINE_DATASET, PIPELINE_STEPS = "ml-100k", 40
BOOTSTRAP = 200
SEEDS = (42, 43, 44)  # the deciding model's refits: the first is the settings' default seed


@dataclass(frozen=True)
class Row:
    """One family on one dataset: its choice, validation score, and test metrics after the refit."""

    config: dict
    val_ndcg: float
    test: dict[str, float]
    train_cpu_s: float  # the refit's CPU seconds
    serve_us: float  # CPU microseconds per user, ranking the test users' top 10 in process
    seconds: float  # choosing plus refitting


def _tuned(family: str, data: Dataset, split: Split) -> tuple[dict, float, list[str]]:
    """Best config of `family` on validation, its validation NDCG@10, and one report line per trial."""
    trials = search(grid(FAMILIES[family].grid), validation_objective(family, data, split, get_settings()))
    lines = [f"    {family} {t.params} val_ndcg@10={t.score:.4f} ({t.seconds:.1f}s)" for t in trials]
    return trials[0].params, trials[0].score, lines


def _deep_epochs(name: str, data: Dataset, split: Split) -> tuple[int, float, list[str]]:
    """The deep model's epoch count, chosen as the pipeline's training chooses it (`choose_epochs`)."""
    _, epochs, history = choose_epochs("seq_two_tower", get_settings(), deep_config(name), split, data.items)
    curve = history["val_ndcg_at_10"]
    return epochs, max(curve), [f"    seq_two_tower val_ndcg@10 by epoch {[round(v, 4) for v in curve]} -> {epochs} epochs"]


def _two_stage(name: str, data: Dataset, split: Split, rows: dict[str, Row], deep_retriever: bool) -> tuple[Row, list[str]]:
    """The two-stage model over the tuned baselines: N chosen on validation, refit on train + validation, test.

    Its retrievers take the configurations the baselines chose on validation (and iALS their
    seed), so the ranker is judged on what it adds to them; N (each retriever's top N joins the union) is searched on
    validation like any family's grid. Also reported: candidate recall@N on test, its ceiling.
    With `deep_retriever` the sequence two-tower joins the union, with the epochs it chose.
    """
    settings, start = get_settings(), time.perf_counter()
    retrievers = {family: rows[family].config for family in BASELINES}
    retrievers["ials"] = {**retrievers["ials"], "seed": settings.seed}  # the baseline's own fit, whatever the ranker's seed
    if deep_retriever:  # the sequence model joins the union with the configuration it chose, fit per window (minutes each)
        retrievers["seq_two_tower"] = {**rows["seq_two_tower"].config, "seed": settings.seed}
    configs = [{**config, "retrievers": retrievers} for config in grid(FAMILIES["two_stage"].grid)]
    trials = search(configs, validation_objective("two_stage", data, split, settings))
    model, _ = FAMILIES["two_stage"].build(settings, trials[0].params)
    row = Row(trials[0].params, trials[0].score, *_refit(model, data, split), time.perf_counter() - start)
    print(f"  {name} two_stage: {row.seconds:.1f}s", flush=True)
    n, recall = model.params["candidates"], model.candidate_recall(split.test)
    lines = [f"    two_stage candidates={t.params['candidates']} val_ndcg@10={t.score:.4f} ({t.seconds:.1f}s)" for t in trials]
    return row, [*lines, f"    two_stage candidate recall (union of each retriever's top {n}) on test = {recall:.4f}"]


def _seeded(family: str, row: Row, data: Dataset, split: Split) -> list[float]:
    """Test NDCG@10 of `family`'s chosen config refit with each of SEEDS (the first is `row` itself).

    A deep or ranker fit varies with its seed by about the size of the gaps being claimed, so the
    deciding ratio is a median over seeds; the choice itself stays the one made on validation.
    A two-stage model's retrievers are the same fits for every seed (iALS keeps the baseline's):
    what varies is its ranker.
    """
    settings = get_settings()
    refits = [refit_score(family, {**row.config, "seed": seed}, data, split, settings)["ndcg_at_10"] for seed in SEEDS[1:]]
    return [row.test["ndcg_at_10"], *refits]


def _refit(model: Recommender, data: Dataset, split: Split) -> tuple[dict[str, float], float, float]:
    """The standard protocol's last step: fit on train + validation, score on test.

    Also what it costs: the refit's CPU seconds (what each production retrain pays) and the CPU
    microseconds per user of ranking every test user's top 10 in process, in batches.
    """
    with Meter() as fit:
        exported = model.fit(split.train_val, data.items).export()
    users = split.test[USER_COL].unique().tolist()
    start = time.process_time()
    recommend_ids(exported, users, 10)
    serve_us = (time.process_time() - start) / max(len(users), 1) * 1e6
    return evaluate(exported, split.test, bootstrap=BOOTSTRAP), fit.cpu_s, serve_us


@dataclass(frozen=True)
class Bench:
    """One dataset's rows, report lines, the pipeline ratio (one dataset measures it) and the deciding model."""

    rows: dict[str, Row]
    lines: list[str]
    pipeline: float | None
    best: str  # the project model better on validation
    best_ndcgs: list[float]  # its test NDCG@10 refit with each of SEEDS


def bench(name: str, deep_retriever: bool = False) -> Bench:
    """One dataset: every family chosen, refit and scored; the two-stage retrievers fit once per window (`reusing`)."""
    with reusing():
        return _bench(name, deep_retriever)


def _bench(name: str, deep_retriever: bool) -> Bench:
    settings = get_settings()
    data = load_dataset(name, settings.shared_data_dir)
    split = temporal_user_split(data.interactions)
    rows: dict[str, Row] = {}
    lines: list[str] = []
    start = time.perf_counter()
    val = validation_objective("popularity", data, split, settings)({})["ndcg_at_10"]
    rows["popularity"] = Row({}, val, *_refit(FAMILIES["popularity"].build(settings)[0], data, split), time.perf_counter() - start)
    for family in BASELINES:
        start = time.perf_counter()
        params, val, grid_lines = _tuned(family, data, split)
        rows[family] = Row(params, val, *_refit(FAMILIES[family].build(settings, params)[0], data, split), time.perf_counter() - start)
        lines += grid_lines
        print(f"  {name} {family}: {rows[family].seconds:.1f}s", flush=True)
    start = time.perf_counter()
    epochs, val, deep_lines = _deep_epochs(name, data, split)
    deep, _ = FAMILIES["seq_two_tower"].build(settings, {**deep_config(name), "epochs": epochs})
    rows["seq_two_tower"] = Row({**deep_config(name), "epochs": epochs}, val, *_refit(deep, data, split), time.perf_counter() - start)
    lines += deep_lines
    print(f"  {name} seq_two_tower: {rows['seq_two_tower'].seconds:.1f}s", flush=True)
    rows["two_stage"], stage_lines = _two_stage(name, data, split, rows, deep_retriever)
    lines += stage_lines
    pipeline = None
    if name == PIPELINE_DATASET:
        speed = deep.pipeline_ratio(PIPELINE_STEPS)
        pipeline = speed["ratio"]
        rates = f"{speed['pipeline']:.1f} steps/s through tf.data, {speed['cached']:.1f} cached"
        lines.append(f"    pipeline: {rates}; ratio {pipeline:.3f} (median of 3 interleaved rounds, spread {speed['ratio_spread']:.3f})")
    best = max(PROJECT, key=lambda f: rows[f].val_ndcg)  # chosen on validation, never on test
    return Bench(rows, lines, pipeline, best, _seeded(best, rows[best], data, split))


def table(name: str, rows: dict[str, Row]) -> str:
    head = (
        f"{'model':<14} {'val NDCG':>8} {'NDCG@10':>8} {'95% CI':>17} {'Recall@20':>9} {'coverage':>8} "
        f"{'train CPU s':>11} {'µs/user':>8} {'seconds':>8}  chosen"
    )
    lines = [f"== {name} (chosen on validation, refit on train+validation, scored on test) ==", head]
    for label, row in rows.items():
        m = row.test
        ci = f"[{m['ndcg_at_10_lo']:.4f}, {m['ndcg_at_10_hi']:.4f}]"
        lines.append(
            f"{label:<14} {row.val_ndcg:>8.4f} {m['ndcg_at_10']:>8.4f} {ci:>17} {m['recall_at_20']:>9.4f} "
            f"{m['coverage']:>8.3f} {row.train_cpu_s:>11.1f} {row.serve_us:>8.0f} {row.seconds:>8.1f}  {_shown(row.config)}"
        )
    return "\n".join(lines)


def _shown(config: dict) -> dict:
    """A row's choice as the table prints it (the two-stage retrievers' configs are the baselines' rows)."""
    return {key: value for key, value in config.items() if key != "retrievers"}


def pareto_plot(results: dict[str, dict[str, Row]], path: Path) -> None:
    """NDCG@10 against the refit's CPU seconds per family, one panel per dataset, its Pareto front drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 3.6), squeeze=False)
    for ax, (name, rows) in zip(axes[0], results.items()):
        points = sorted((max(r.train_cpu_s, 0.01), r.test["ndcg_at_10"], family) for family, r in rows.items())
        front, best = [], -1.0
        for x, y, _ in points:  # cheapest first: a point is on the front if nothing cheaper is as good
            if y > best:
                front.append((x, y))
                best = y
        ax.plot(*zip(*front), color="tab:gray", linestyle="--", label="Pareto front")
        for x, y, family in points:
            ax.scatter(x, y)
            ax.annotate(family, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set(title=name, xlabel="training CPU seconds (refit, log)", ylabel="test NDCG@10")
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated subset of " + ", ".join(DATASETS))
    parser.add_argument("--plot", type=Path, default=None, help="write the quality-against-cost plot here (PNG)")
    parser.add_argument("--deep-retriever", action="store_true", help="the two-stage union includes the sequence two-tower (four more deep fits per dataset)")
    args = parser.parse_args()
    names = args.datasets.split(",")
    ratios, eases, pipeline, results = {}, {}, None, {}
    for name in names:
        result = bench(name, args.deep_retriever)
        rows, best_family = result.rows, result.best
        results[name] = rows
        pipeline = result.pipeline if result.pipeline is not None else pipeline
        base_family = max(BASELINES, key=lambda f: rows[f].test["ndcg_at_10"])
        seeded = [ndcg / rows[base_family].test["ndcg_at_10"] for ndcg in result.best_ndcgs]
        ratios[name] = statistics.median(seeded)
        eases[name] = rows["ease"].test["ndcg_at_10"]
        print(table(name, rows))
        print(
            f"best/base = {best_family}/{base_family} = {ratios[name]:.3f} "
            f"(median of seeds {SEEDS}: {[round(r, 3) for r in seeded]}, spread {max(seeded) - min(seeded):.3f})"
        )
        coverage = rows[best_family].test["coverage"] / rows["seq_two_tower"].test["coverage"]
        print(f"coverage {best_family}/seq_two_tower = {coverage:.2f}")
        print("  validation choices (best first):\n" + "\n".join(result.lines), flush=True)
    if args.plot is not None:
        pareto_plot(results, args.plot)
    shown = f"{pipeline:.3f}" if pipeline is not None else "n/a"
    print(f"pipeline steps/s ratio (tf.data / cached, {PIPELINE_STEPS} steps on {PIPELINE_DATASET}) = {shown}")
    best = " ".join(f"{name}:best/base={ratios[name]:.3f}" for name in names)
    ease = " ".join(f"{name}:ease={eases[name]:.4f}" for name in names)
    print(f"quality: {best} {ease} pipeline={shown}")


if __name__ == "__main__":
    main()
