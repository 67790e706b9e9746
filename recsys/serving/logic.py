"""What the service does for one request, testable without BentoML: rank, fall back, log.

Unknown users get the most popular items, marked as a fallback. Each answer also carries
the figures the monitor needs (history length, popularity of what was recommended), so the
request log alone is enough to compute drift.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsys.models.base import EmbeddingModel


@dataclass(frozen=True)
class Recommendation:
    items: list[tuple[str, float]]
    fallback: bool
    history_len: int
    rec_popularity: float


def recommend_one(model: EmbeddingModel, user_id: str, k: int, exclude_seen: bool = True) -> Recommendation:
    """Top-k (item id, score) pairs for one user, or the popularity fallback if unknown."""
    user = model.user_index.get(user_id)
    if user is None:
        top, scores = model.popular(k)
        fallback, history = True, 0
    else:
        top_rows, score_rows = model.recommend(np.array([user]), k, exclude_seen)
        top, scores = top_rows[0], score_rows[0]
        fallback, history = False, len(model.seen(user))
    items = [(str(model.item_ids[i]), float(s)) for i, s in zip(top, scores)]
    popularity = float(model.popularity_percentile[top].mean()) if len(top) else 0.0
    return Recommendation(items, fallback, history, popularity)


class RequestLog:
    """Append-only JSONL log of answered requests; one line per request, flushed at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def append(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line)
