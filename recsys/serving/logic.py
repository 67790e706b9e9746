"""What the service does for a request, testable without BentoML: rank, fall back, explain, log.

Unknown users, and users who were forgotten, get the most popular items, marked as a fallback. Each answer also carries
the figures the monitor needs (history length, popularity of what was recommended), so the
request log alone is enough to compute drift. The hot path is numpy and faiss only: a
batch of requests is one index search, and pandas is never touched while serving.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import os
import threading
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import faiss
import numpy as np
from pydantic_core import to_json

from recsys.models.base import HISTORY_ROW_FAMILIES, EmbeddingModel
from recsys.models.two_stage import served as two_stage
from recsys.schemas import MAX_K, FeedbackRecord, RequestRecord, SimilarItemsRecord
from recsys.serving import index as ann


@dataclass(frozen=True)
class Recommendation:
    items: list[tuple[str, float]]
    fallback: bool
    history_len: int
    rec_popularity: float
    because: list[str | None] | None = None  # per item: the seen item it is closest to


@dataclass(frozen=True)
class Query:
    """One recommendation request, as the ranking needs it."""

    user_id: str
    k: int
    exclude_seen: bool = True
    explain: bool = False
    forgotten: bool = False  # an erased user (recsys.privacy): answered like a stranger, logged without an id


def recommend_one(model: EmbeddingModel, user_id: str, k: int, exclude_seen: bool = True, stage_two: two_stage.StageTwo | None = None) -> Recommendation:
    """Top-k (item id, score) pairs for one user by exact scoring, or the popularity fallback.

    With a two-stage model's `stage_two` (and `model` its searched export, as `ServingModel` holds
    them), a known user is ranked by both stages, as the service ranks them.
    """
    user = model.user_index.get(user_id)
    if user is None:
        return _fallback(model, k)
    if stage_two is not None:
        return _answer(model, user, *stage_two.rank(user, k, exclude_seen), explain=False)
    top_rows, score_rows = model.recommend(np.array([user]), k, exclude_seen)
    return _answer(model, user, top_rows[0], score_rows[0], explain=False)


def _fallback(model: EmbeddingModel, k: int) -> Recommendation:
    top, scores = model.popular(k)
    return Recommendation(_pairs(model, top, scores), True, 0, _popularity(model, top))


def _pairs(model: EmbeddingModel, top: np.ndarray, scores: np.ndarray) -> list[tuple[str, float]]:
    return list(zip(model.item_ids[top].tolist(), np.asarray(scores, dtype=float).tolist()))


def _popularity(model: EmbeddingModel, top: np.ndarray) -> float:
    return float(model.popularity_percentile[top].sum()) / len(top) if len(top) else 0.0  # sum/len: a third of mean()'s cost


def _answer(model: EmbeddingModel, user: int, top: np.ndarray, scores: np.ndarray, explain: bool) -> Recommendation:
    seen = model.seen(user)
    because = _because(model, seen, top) if explain else None
    return Recommendation(_pairs(model, top, scores), False, len(seen), _popularity(model, top), because)


def _because(model: EmbeddingModel, seen: np.ndarray, top: np.ndarray) -> list[str | None]:
    """For each recommended item, the user's seen item whose vector is closest (dot product)."""
    if len(seen) == 0:
        return [None] * len(top)
    closest = (model.item_vectors[seen] @ model.item_vectors[top].T).argmax(axis=0)
    return model.item_ids[seen[closest]].tolist()


# Known users' lists are ranked once at load (`TopLists`) while that costs at most this many
# multiply-adds (users x items x dimensions; Online Retail's champion: 4,334 x 3,659 x 64 = 1e9)
# and keeps at most this many (item, score) entries (8 bytes each: 32M = 256 MB a worker).
TOP_LISTS_MAX_SCAN = 20_000_000_000
TOP_LISTS_MAX_ENTRIES = 32_000_000


@dataclass(frozen=True)
class TopLists:
    """Every known user's `MAX_K` best unseen items, ranked once when the model is loaded.

    Why: ranking one user exactly reads every item vector (Online Retail: 3,659 x 64 floats,
    0.9 MB) to keep ten items. In a loaded worker that cost 131 us of CPU a request, a fifth of
    /recommend's (three times what the same call costs in a tight loop, where the vectors stay
    in cache). Ranked in chunks of users, all of Online Retail's 4,334 cost 0.13 s at load
    (`TOP_LISTS_MAX_SCAN` bounds it); a request then reads one row. Only for queries that leave
    seen items out (the default) with k up to `depth`; others are ranked as they come.
    """

    items: np.ndarray  # int32 (users, depth): best first; -1 past the last item a user has not seen
    scores: np.ndarray  # float32 (users, depth)

    @classmethod
    def rank(cls, model: EmbeddingModel, depth: int = MAX_K, chunk: int = 1024) -> TopLists:
        """Each user's `depth` best unseen items: a matrix product, seen items masked, faiss's heap, per chunk of users."""
        n_users, depth = len(model.user_ids), min(depth, model.n_items)
        items, scores = np.empty((n_users, depth), dtype=np.int32), np.empty((n_users, depth), dtype=np.float32)
        for start in range(0, n_users, chunk):
            users = np.arange(start, min(start + chunk, n_users))
            found, found_scores = _masked_best_k(model, users, model.user_vectors[users] @ model.item_vectors.T, [True] * len(users), depth)
            items[start : start + len(users)], scores[start : start + len(users)] = found, found_scores
        return cls(items, scores)

    @staticmethod
    def affordable(model: EmbeddingModel) -> bool:
        """Whether ranking every user fits `TOP_LISTS_MAX_SCAN` and storing them `TOP_LISTS_MAX_ENTRIES`."""
        n_users, n_items, dims = len(model.user_ids), model.n_items, model.item_vectors.shape[1]
        return n_users * n_items * dims <= TOP_LISTS_MAX_SCAN and n_users * min(MAX_K, n_items) <= TOP_LISTS_MAX_ENTRIES

    @property
    def depth(self) -> int:
        """How many items each user's list holds (`MAX_K`, or the catalogue if smaller): the deepest k it answers."""
        return self.items.shape[1]

    def best(self, user: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The user's k best unseen (items, scores); fewer if fewer are unseen."""
        top = self.items[user, :k]
        kept = top >= 0
        return top[kept], self.scores[user, :k][kept]


@dataclass(frozen=True)
class ServingModel:
    """A champion as served: vectors, the shipped ANN index (or exact search) and its lineage.

    The precomputed user-vector table with its id->row dict is the user-embedding cache: a
    known user costs one row lookup, no model call. Instances are never mutated after load,
    so a hot swap is one reference assignment and in-flight requests finish on the old one.

    A two-stage model (`stage_two`) ranks its known users per request instead, both stages in
    numpy (recsys.models.two_stage.served); `model` is then its iALS export, which similar
    items, the index and the explanations use. EASE and item-kNN rank their known users from
    the rows of their seen items instead of the index (`_history_rows`): exact, and faster.
    """

    model: EmbeddingModel
    index: faiss.Index
    info: dict[str, Any] = field(default_factory=dict)  # BentoML metadata: version, run_id, ...
    stage_two: two_stage.StageTwo | None = None
    top_lists: TopLists | None = None  # with exact search, known users' lists ranked at load

    @property
    def version(self) -> str:
        return str(self.info.get("version", "unknown"))

    @classmethod
    def load(cls, folder: Path, arrays: Path, info: dict[str, Any]) -> ServingModel:
        """Arrays from `arrays` (npz + json) or the stage-two folder beside them, the index from `folder` (exact if none shipped)."""
        stage_two = two_stage.beside(arrays)
        model = stage_two.model if stage_two is not None else EmbeddingModel.load(arrays)
        if model.meta.get("family") in HISTORY_ROW_FAMILIES:  # column order: its rows (_history_rows) without a second copy
            model.item_vectors = np.asfortranarray(model.item_vectors)
        index = ann.read(folder)
        if index is None:
            index, info = ann.exact_index(model.item_vectors), {**info, "index_kind": "flat"}
        ranked_alone = stage_two is not None or model.meta.get("family") in HISTORY_ROW_FAMILIES
        exact = isinstance(index, faiss.IndexFlat) and not ranked_alone
        return cls(model, index, info, stage_two, TopLists.rank(model) if exact and TopLists.affordable(model) else None)

    def recommend(self, queries: Sequence[Query]) -> list[Recommendation]:
        """Answers in order. Known users: from the lists ranked at load (`TopLists`) where there
        are some; else with exact search, all in one matrix product (`_rank_exactly`); with a
        graph, in one index search per group of like depth (k + seen); for a two-stage model or
        an item-item one, each ranked alone (its stages, its rows).

        A search is as deep as the deepest query in it, and HNSW's cost grows with depth: one
        search for a whole batch made every user pay for the longest history in it (64 Online
        Retail users: 4 ms at depth 16, 8 ms at 277; some users have seen over 1,000 items), so
        a batch cost more than its users one at a time. Grouped by depth to the next power of two, each
        user searches at most about twice as deep as it needs; a lone query exactly as deep.
        """
        model, history_rows = self.model, self._history_rows
        rows = [None if q.forgotten else model.user_index.get(q.user_id) for q in queries]
        out: list[Recommendation | None] = [None] * len(queries)
        groups: dict[int, list[tuple[int, int]]] = {}  # depth to the next power of two -> (query, depth)
        exact: list[int] = []  # queries of known users, ranked exactly in one product
        for i, r in enumerate(rows):
            if r is not None and self.stage_two is not None:
                q = queries[i]
                out[i] = _answer(model, r, *self.stage_two.rank(r, q.k, q.exclude_seen), q.explain)
            elif r is not None and history_rows is not None:
                q = queries[i]
                out[i] = _answer(model, r, *self._from_history(history_rows, r, q.k, q.exclude_seen), q.explain)
            elif r is not None and self.top_lists is not None and queries[i].exclude_seen and queries[i].k <= self.top_lists.depth:
                q = queries[i]
                out[i] = _answer(model, r, *self.top_lists.best(r, q.k), q.explain)
            elif r is not None and self._exact:
                exact.append(i)
            elif r is not None:
                depth = queries[i].k + (len(model.seen(r)) if queries[i].exclude_seen else 0)
                groups.setdefault(1 << (depth - 1).bit_length(), []).append((i, depth))
        if exact:
            self._rank_exactly(exact, rows, queries, out)
        for group in groups.values():
            users = np.array([rows[i] for i, _ in group])
            depth = max(d for _, d in group)
            scores, found = self.index.search(model.user_vectors[users], min(depth, model.n_items))
            for j, (i, _) in enumerate(group):
                out[i] = self._pick(rows[i], queries[i], found[j], scores[j])
        for i, r in enumerate(rows):
            if r is None:
                out[i] = _fallback(model, queries[i].k)
        return out  # type: ignore[return-value]

    @cached_property
    def _exact(self) -> bool:
        """Whether the index is exact search (flat): then known users are ranked by one matrix
        product, their seen items masked, and faiss's heap (`_rank_exactly`), with no search depth."""
        return isinstance(self.index, faiss.IndexFlat)

    def _rank_exactly(self, picked: list[int], rows: Sequence[int | None], queries: Sequence[Query], out: list[Recommendation | None]) -> None:
        """Answer the `picked` queries by exact scores: their users' vectors times every item's, in one product.

        Why not the flat index's own search: it cannot leave seen items out, so it must search as
        deep as k plus the history (over 1,000 for some users) and drop them after; masking first
        (`_best_unseen`) keeps every user's heap at k.
        """
        model = self.model
        users = np.array([rows[i] for i in picked])
        ranked = _best_unseen(
            model, users, model.user_vectors[users] @ model.item_vectors.T, [queries[i].exclude_seen for i in picked], max(queries[i].k for i in picked)
        )
        for i, user, (top, top_scores) in zip(picked, users, ranked):
            k = queries[i].k
            out[i] = _answer(model, int(user), top[:k], top_scores[:k], queries[i].explain)

    @cached_property
    def _history_rows(self) -> np.ndarray | None:
        """EASE's and item-kNN's item-item matrix, one contiguous row per trained item; None for other families.

        Why: their user vector is the binary history row over the trained items
        (recsys.models.item_item), thousands of dimensions on a real catalogue, where an HNSW
        search costs milliseconds (Online Retail, 3,594 dimensions: 5 ms a query) and still
        misses some of the exact list. The dot product is the sum of the rows of the items the
        user has seen, so the exact scores cost as much as the history is long: tens of rows,
        as two-stage retrieval computes them (recsys.models.two_stage.candidates).
        """
        if self.model.meta.get("family") not in HISTORY_ROW_FAMILIES:
            return None
        return np.ascontiguousarray(self.model.item_vectors.T)  # no copy of a model `load` laid out by column

    def _from_history(self, history_rows: np.ndarray, user: int, k: int, exclude_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k (items, scores) of an item-item model: the sum of the rows of the user's history."""
        model = self.model
        scores = history_rows[np.flatnonzero(model.user_vectors[user])].sum(axis=0)
        return _best_unseen(model, np.array([user]), scores[None], [exclude_seen], k)[0]

    def _pick(self, user: int, query: Query, found: np.ndarray, scores: np.ndarray) -> Recommendation:
        """Drop seen items and padding from one search row; exact scoring if that leaves < k."""
        model = self.model
        keep = found >= 0
        seen = model.seen(user)
        if query.exclude_seen and len(seen):  # rows are sorted (build_seen): binary search
            keep &= seen[np.minimum(np.searchsorted(seen, found), len(seen) - 1)] != found
        top, top_scores = found[keep][: query.k], scores[keep][: query.k]
        if len(top) < min(query.k, model.n_items - (len(seen) if query.exclude_seen else 0)):
            users = np.array([user])
            top, top_scores = _best_unseen(model, users, model.user_vectors[users] @ model.item_vectors.T, [query.exclude_seen], query.k)[0]
        return _answer(model, user, top, top_scores, query.explain)

    def similar(self, item_id: str, k: int) -> list[tuple[str, float]] | None:
        """The k items closest to `item_id` by inner product (itself excluded); None if unknown."""
        row = self.model.item_index.get(item_id)
        if row is None:
            return None
        n = min(k + 1, self.model.n_items)
        scores, found = self.index.search(self.model.item_vectors[row : row + 1], n)
        keep = (found[0] >= 0) & (found[0] != row)
        return _pairs(self.model, found[0][keep][:k], scores[0][keep][:k])


def _best_unseen(model: EmbeddingModel, users: np.ndarray, scores: np.ndarray, exclude_seen: Sequence[bool], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each user's k best (items, scores) from their row of `scores`, their seen items left out where asked.

    A row with fewer than k items left comes back shorter (`_masked_best_k`). `scores` is changed.
    """
    found, found_scores = _masked_best_k(model, users, scores, exclude_seen, k)
    kept = found >= 0  # padding: fewer than k items the user has not seen
    return [(found[row][kept[row]], found_scores[row][kept[row]]) for row in range(len(users))]


def _masked_best_k(model: EmbeddingModel, users: np.ndarray, scores: np.ndarray, exclude_seen: Sequence[bool], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k best (items, scores), padded with item -1 (`index.best_k`), seen items left out where asked.

    Seen items are set to -inf before faiss's heap, so no row is searched deeper than k. `scores` is changed.
    """
    for row, (user, exclude) in enumerate(zip(users, exclude_seen)):
        if exclude:
            scores[row, model.seen(int(user))] = -np.inf
    return ann.best_k(scores, min(k, model.n_items))


Logged = TypeVar("Logged", RequestRecord, FeedbackRecord)


def scrubbed(lines: Sequence[tuple[str, Logged]], forgotten: Callable[[], Container[str]]) -> list[Logged]:
    """The log lines (each beside its user's raw id) as they may be written now: without the
    pseudonym of a user `forgotten()` lists.

    Called under the log's lock (`RequestLog.append_built`): an erasure lists the user before it
    rewrites the log under that lock, so a line checked here either lands before the rewrite (which
    drops it) or is checked after the listing and written without them.
    """
    gone = forgotten()
    return [line.model_copy(update={"user_id": None}) if line.user_id is not None and user in gone else line for user, line in lines]


def pseudonymise(user_id: str, key: bytes) -> str:
    """Keyed hash of a user id for the logs: joinable across lines, not reversible without the key."""
    return hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()


class RequestLog:
    """Append-only JSONL log; each record is one `write` on an O_APPEND descriptor.

    One write per line on O_APPEND is atomic with respect to other writers on Linux, so
    threads and worker processes never interleave or lose lines; the data is in the kernel
    once `append` returns, so it survives the process dying.

    The one rewrite, an erasure (`drop_lines`), replaces the file by a rename. So each append
    holds a shared flock(2) on its descriptor (the rewrite holds an exclusive one: no line
    lands while it copies) and, if the file it holds was renamed over meanwhile (no links
    left), reopens the path and writes there: a line is never written into a replaced file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = self._open()
        self._lock = threading.Lock()  # a flock is per open file: threads of one process take turns

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def append(self, *records: RequestRecord | FeedbackRecord | SimilarItemsRecord) -> None:
        """Write `records` as compact JSON lines (pydantic-core's encoder: ~5x json.dumps), in one write.

        Records are the schemas the monitor reads back (recsys.schemas), validated when built.
        Many at once (the shadow's batch) take the lock and the write once: each of those calls
        lets go of the GIL, which a busy event loop in the same process then has to give back.
        """
        data = _encoded(records)
        self._write(lambda: data)

    def append_built(self, build: Callable[[], Sequence[RequestRecord | FeedbackRecord | SimilarItemsRecord]]) -> None:
        """Append the records that `build` returns, called while this log's locks are held.

        Why: what `build` reads is then as fresh as the write. An erasure lists the user
        (recsys.tombstones) before it rewrites the log under the exclusive lock, so a line built
        here after checking the list is either written before the rewrite (which drops it) or
        built after the listing (and can leave the user out): it never lands after the rewrite
        with the user in it.
        """
        self._write(lambda: _encoded(build()))

    def _write(self, data_of: Callable[[], bytes]) -> None:
        """One write of `data_of()` under the locks (see the class docstring)."""
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_SH)
            while os.fstat(self._fd).st_nlink == 0:  # an erasure replaced the file: append to the new one
                os.close(self._fd)  # closing drops its lock
                self._fd = self._open()
                fcntl.flock(self._fd, fcntl.LOCK_SH)
            try:
                data = data_of()
                written = os.write(self._fd, data)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        if written != len(data):  # only on a full disk or similar: do not leave half a line
            raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")

    def close(self) -> None:
        os.close(self._fd)


def _encoded(records: Sequence[RequestRecord | FeedbackRecord | SimilarItemsRecord]) -> bytes:
    return b"".join(to_json(record) + b"\n" for record in records)


def drop_lines(path: Path, needle: bytes) -> int:
    """Delete the lines of the log at `path` that contain `needle`; return how many went.

    The kept lines go to a temporary file that is renamed over the log, so a killed rewrite
    leaves the old log whole. An exclusive flock on the log holds appends (RequestLog) back
    while it copies; they then reopen the path. A rewrite that waited on a file another one
    replaced meanwhile starts again on the new file.
    """
    while True:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return 0
        with os.fdopen(fd, "rb") as log:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink == 0:
                continue  # lost a race with another rewrite: read the file that replaced this one
            tmp, dropped = path.with_name(f".{path.name}.{os.getpid()}.tmp"), 0
            with open(tmp, "wb") as out:  # streamed: a log of any size in constant memory
                for line in log:
                    if needle in line:
                        dropped += 1
                    else:
                        out.write(line)
                out.flush()
                os.fsync(out.fileno())
            if dropped:
                os.chmod(tmp, os.fstat(fd).st_mode & 0o777)
                os.replace(tmp, path)
            else:
                tmp.unlink()
            return dropped
