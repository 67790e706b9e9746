"""Quality benchmark: every model family on three public datasets, one protocol, one table each.

EASE and iALS are tuned on the validation split (grids of `recsys.tuning.SPACES`, reported);
the chosen config is then refit on train and scored on test, like every other model. The
deep model runs one fixed config (no budget for its own search on 2 CPU cores): its defaults
(future-window objective, `horizon` 0.3), chosen from the experiments in issue 3's note. Also measured:
training steps/s through the real tf.data pipeline over the same steps on cached tensors.
Run: `make bench-quality` (about 15-20 minutes on 2 cores).
"""

from __future__ import annotations

import time

from recsys.data.ingest import Dataset, load_dataset
from recsys.data.split import Split, temporal_user_split
from recsys.evaluation import evaluate
from recsys.models.ease import EASEModel
from recsys.models.ials import IALSModel
from recsys.models.item_knn import ItemKNNModel
from recsys.models.popularity import PopularityModel
from recsys.models.seq_two_tower import SeqTwoTowerModel
from recsys.settings import get_settings
from recsys.tuning import SPACES, grid, search, validation_objective

DATASETS = ("online-retail", "ml-100k", "ml-latest-small")
DEEP = {"epochs": 5, "batch_size": 512, "embedding_dim": 64, "max_len": 50, "horizon": 0.3}
DEEP_EPOCHS = {"online-retail": 3}  # 3x the examples of the MovieLens sets
PIPELINE_DATASET, PIPELINE_STEPS = "ml-100k", 40


def _tuned(family: str, data: Dataset, split: Split) -> tuple[dict, list[str]]:
    """Best config of `family` on validation, and one report line per trial."""
    trials = search(grid(SPACES[family]), validation_objective(family, data, split, get_settings()))
    lines = [f"    {family} {t.params} val_ndcg@10={t.score:.4f} ({t.seconds:.1f}s)" for t in trials]
    return trials[0].params, lines


def bench(name: str) -> tuple[dict[str, dict], list[str], float | None]:
    settings = get_settings()
    data = load_dataset(name, settings.shared_data_dir)
    split = temporal_user_split(data.interactions)
    ease_params, ease_lines = _tuned("ease", data, split)
    ials_params, ials_lines = _tuned("ials", data, split)
    deep = SeqTwoTowerModel(**{**DEEP, "epochs": DEEP_EPOCHS.get(name, DEEP["epochs"])})
    models = {
        "popularity": PopularityModel(),
        "item_knn": ItemKNNModel(),
        "ease": EASEModel(**ease_params),
        "ials": IALSModel(**ials_params),
        "seq_two_tower": deep,
    }
    rows = {}
    for label, model in models.items():
        start = time.perf_counter()
        exported = model.fit(split.train, data.items, split.val).export()
        seconds = time.perf_counter() - start
        rows[label] = {**evaluate(exported, split.test, bootstrap=200), "seconds": seconds}
        print(f"  {name} {label}: {seconds:.1f}s", flush=True)
    pipeline = deep.pipeline_ratio(PIPELINE_STEPS)["ratio"] if name == PIPELINE_DATASET else None
    return rows, ease_lines + ials_lines, pipeline


def table(name: str, rows: dict[str, dict]) -> str:
    head = f"{'model':<14} {'NDCG@10':>8} {'95% CI':>17} {'Recall@20':>9} {'coverage':>8} {'train s':>8}"
    lines = [f"== {name} ==", head]
    for label, m in rows.items():
        ci = f"[{m['ndcg_at_10_lo']:.4f}, {m['ndcg_at_10_hi']:.4f}]"
        lines.append(f"{label:<14} {m['ndcg_at_10']:>8.4f} {ci:>17} {m['recall_at_20']:>9.4f} {m['coverage']:>8.3f} {m['seconds']:>8.1f}")
    return "\n".join(lines)


def main() -> None:
    ratios, pipeline = {}, None
    for name in DATASETS:
        rows, grid_lines, measured = bench(name)
        pipeline = measured if measured is not None else pipeline
        deep = rows["seq_two_tower"]["ndcg_at_10"]
        best = max(rows["ease"]["ndcg_at_10"], rows["ials"]["ndcg_at_10"])
        ratios[name] = (deep / best, deep / max(rows["popularity"]["ndcg_at_10"], 1e-12))
        print(table(name, rows))
        print(f"deep/best(EASE,iALS)={ratios[name][0]:.3f} deep/popularity={ratios[name][1]:.3f}")
        print("  validation grids (best first):\n" + "\n".join(grid_lines), flush=True)
    print(f"pipeline steps/s ratio (tf.data / cached, {PIPELINE_STEPS} steps on {PIPELINE_DATASET}) = {pipeline:.3f}")
    best = " ".join(f"{name}:deep/best={ratios[name][0]:.3f}" for name in DATASETS)
    print(f"quality: {best} online-retail:deep/pop={ratios['online-retail'][1]:.3f} pipeline={pipeline:.3f}")


if __name__ == "__main__":
    main()
