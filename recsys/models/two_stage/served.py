"""The two-stage model as the service runs it: both stages per request, for one user at a time.

The export (a users x items score table) is what evaluation and blessing read; serving it
would freeze every list at training time. `StageTwo` instead keeps what the export was
ranked from, the Snapshot (retriever exports, item and user statistics) and the ranker's
weights as arrays, and ranks a user when asked with the very functions the export used
(`candidates`, `features`, `ranker.forward`): stage one from the user's seen items, stage two
in numpy, no Keras. It is saved (npz + json, no pickles) in its own folder, `ARTIFACT`, beside
the export of a registered model, which the BentoML model folder copies whole.

Its iALS export (with the catalogue's titles) is what the service searches for similar
items, builds the ANN index on and explains with: the score table's item vectors are the
identity, which say nothing about which items are alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recsys.models.base import EmbeddingModel
from recsys.models.two_stage import ranker
from recsys.models.two_stage.candidates import candidates
from recsys.models.two_stage.features import features
from recsys.models.two_stage.snapshot import Snapshot

if TYPE_CHECKING:
    from recsys.models.two_stage.model import TwoStageModel

ARTIFACT = "two_stage"  # the folder's name among a registered model's artifacts (beside `export`)
SEARCHED = "ials"  # the retriever whose export the service searches and explains with


@dataclass(frozen=True)
class StageTwo:
    """A fitted two-stage model reduced to arrays: its snapshot, its ranker and the candidates per retriever."""

    snapshot: Snapshot
    weights: dict[str, np.ndarray]
    n: int  # each retriever's top n make the candidates

    @classmethod
    def of(cls, model: TwoStageModel) -> StageTwo:
        """From a fitted model; the searched export takes the export's titles (training sets them after the fit)."""
        snap = model.snapshot
        searched = replace(snap.models[SEARCHED], item_titles=model.export().item_titles)
        return cls(replace(snap, models={**snap.models, SEARCHED: searched}), ranker.weights(model.keras_model), int(model.params["candidates"]))

    @property
    def model(self) -> EmbeddingModel:
        """The export the service searches, indexes and explains with (vocabularies and seen items as the snapshot's)."""
        return self.snapshot.models[SEARCHED]

    @cached_property
    def _by_percentile(self) -> np.ndarray:
        """Items by descending popularity percentile: the export's order for what follows the candidates."""
        return np.argsort(-self.snapshot.base.popularity_percentile, kind="stable")

    def rank(self, user: int, k: int, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores for the user at row `user`, ranked as the export ranks them.

        Scores are on the export's scale: the ranker's order of the candidates in (1, 2], then,
        should there be fewer than k, the most popular other items at their percentile in [0, 1].
        """
        users = np.array([user])
        cands = candidates(self.snapshot, users, self.n, exclude_seen)  # one user: no padding
        order = np.argsort(-ranker.forward(self.weights, features(self.snapshot, users, cands))[0], kind="stable")
        ranked = cands.items[0][order]
        top, scores = ranked[:k], 2.0 - np.arange(min(k, len(ranked)), dtype=np.float32) / max(len(ranked), 1)
        if len(top) < k:
            taken = np.concatenate([ranked, self.snapshot.base.seen(user)]) if exclude_seen else ranked
            rest = self._by_percentile[~np.isin(self._by_percentile, taken)][: k - len(top)]
            top, scores = np.concatenate([top, rest]), np.concatenate([scores, self.snapshot.base.popularity_percentile[rest]])
        return top, scores

    def without_users(self, user_ids: set[str]) -> StageTwo:
        """The same model less the rows of `user_ids` (an erasure); the ranker learnt aggregates and stays."""
        return replace(self, snapshot=self.snapshot.without_users(user_ids))

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self.snapshot.save(folder / "snapshot")
        np.savez(folder / "ranker.npz", **self.weights)
        (folder / "stage_two.json").write_text(json.dumps({"candidates": self.n}))
        return folder

    @classmethod
    def load(cls, folder: Path) -> StageTwo:
        with np.load(folder / "ranker.npz", allow_pickle=False) as arrays:
            weights = {name: arrays[name] for name in arrays.files}
        n = int(json.loads((folder / "stage_two.json").read_text())["candidates"])
        return cls(Snapshot.load(folder / "snapshot"), weights, n)


def beside(export: Path) -> StageTwo | None:
    """The stage-two folder beside a registered model's `export` folder; None for a family without one."""
    folder = export.parent / ARTIFACT
    return StageTwo.load(folder) if folder.is_dir() else None


def searched_beside(export: Path) -> EmbeddingModel:
    """What the service searches for the model exported at `export`: the export itself, or a two-stage model's
    searched retriever (read alone: the ANN index is built on it at promotion)."""
    folder = export.parent / ARTIFACT / "snapshot" / SEARCHED
    return EmbeddingModel.load(folder if folder.is_dir() else export)
