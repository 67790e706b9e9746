"""Who answers a request and who is scored beside it: the champion, a canary, a shadow.

A challenger is proven on live traffic before it takes over (issue 17). As the **shadow** it
ranks a share of requests after they are answered, in a thread of its own (`ShadowWriter`): its
list goes to the request log beside the answer, under the same request id, and is never shown. As the **canary** it
answers a share of users, chosen by a hash of their pseudonym so that a user stays in one arm
for the whole experiment (a user who flips between two lists would blur both arms' hit rates).
The monitor (recsys.monitoring.canary) reads both back from the log and decides.

Neither may hurt the answer. A canary that fails on its requests is answered for by the
champion, and the failure is logged for the rollback rule; a shadow that fails only leaves its
error in the log. Testable without BentoML: the service calls these functions and only adds HTTP.
"""

from __future__ import annotations

import functools
import hashlib
import queue
import sys
import threading
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, replace

import faiss

from recsys.schemas import MAX_BATCH, Arm, RequestRecord
from recsys.serving.logic import Query, Recommendation, RequestLog, ServingModel, scrubbed


def unit(key: str, salt: str = "") -> float:
    """A number uniform in [0, 1) fixed by `key` and `salt`: the first 64 bits of SHA-256(salt, key).

    A hash, not a random draw, so every worker and every restart agrees without sharing state.
    """
    digest = hashlib.sha256(f"{salt}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(pseudonym: str | None, share: float, salt: str) -> Arm:
    """The arm of a user: the canary for a `share` of pseudonyms, always the same one, else the champion.

    The pseudonym (the log key's HMAC of the id) is hashed, not the id, so the log alone tells
    which arm a line's user was in. The salt is the canary's version (`arm_salt`): each canary draws its own
    users, so one unlucky tenth does not see every experiment. A user without a pseudonym (a
    forgotten one, logged without id) always gets the champion: no arm could be followed up.
    """
    if pseudonym is None or share <= 0.0:
        return "champion"
    return "canary" if unit(pseudonym, salt) < share else "champion"


def arm_salt(canary: ServingModel) -> str:
    """The salt of a canary's arm: the version first deployed as canary (`arm_salt` in its store metadata).

    An erasure re-registers a deployed canary under a new version (recsys.privacy); salting by
    that version would reshuffle the arms mid-experiment and show the canary to new users.
    """
    return str(canary.info.get("arm_salt", canary.version))


@dataclass(frozen=True)
class Deployment:
    """The models a worker serves, swapped as one reference: in-flight requests finish on the old set."""

    champion: ServingModel
    canary: ServingModel | None = None
    shadow: ServingModel | None = None


@dataclass(frozen=True)
class Served:
    """One answer and where it came from."""

    recommendation: Recommendation
    model: ServingModel  # the model that answered (titles, version)
    arm: Arm
    latency_us: float  # wall time of the search that answered (shared by the requests of one arm in a batch)
    canary_error: str | None = None  # the canary failed on this request of its arm: the champion answered


@dataclass(frozen=True)
class ShadowScore:
    """The shadow's list for a request it scored (or why it has none)."""

    version: str
    items: list[str] | None
    scores: list[float] | None
    latency_us: float | None  # wall time of its search (the whole batch's, for a batch)
    error: str | None = None


def serve(deployment: Deployment, queries: Sequence[Query], pseudonyms: Sequence[str | None], canary_share: float) -> list[Served]:
    """Answers in order: the canary's users in one search, everyone else (and any it failed) in another."""
    canary = deployment.canary
    salt = arm_salt(canary) if canary is not None else ""
    arms = [assign(p, canary_share, salt) if canary is not None else "champion" for p in pseudonyms]
    out: list[Served | None] = [None] * len(queries)
    rest = [i for i, arm in enumerate(arms) if arm == "champion"]
    error = None
    if canary is not None and len(rest) < len(queries):
        mine = [i for i, arm in enumerate(arms) if arm == "canary"]
        try:
            recs, us = _timed(canary.recommend, [queries[i] for i in mine])
        except Exception as exc:  # a broken canary must never cost a user an answer
            error, rest = f"{type(exc).__name__}: {exc}", sorted(rest + mine)
        else:
            for i, rec in zip(mine, recs):
                out[i] = Served(rec, canary, "canary", us)
    if rest:
        champion = deployment.champion
        recs, us = _timed(champion.recommend, [queries[i] for i in rest])
        for i, rec in zip(rest, recs):
            out[i] = Served(rec, champion, "champion", us, error if arms[i] == "canary" else None)
    return out  # type: ignore[return-value]


def shadowed(request_id: str, share: float) -> bool:
    """Whether the shadow scores this request: a hash of its id, so every worker samples the same `share`."""
    return unit(request_id, "shadow") < share


def score_shadow(shadow: ServingModel, queries: Sequence[Query]) -> list[ShadowScore]:
    """The shadow's lists for `queries`, in one search; its failure is each one's error, never an exception."""
    try:  # no explanations: nobody reads them
        recs, us = _timed(shadow.recommend, [replace(q, explain=False) for q in queries])
    except Exception as exc:
        return [ShadowScore(shadow.version, None, None, None, f"{type(exc).__name__}: {exc}")] * len(queries)
    return [ShadowScore(shadow.version, [i for i, _ in r.items], [s for _, s in r.items], us) for r in recs]


@dataclass(frozen=True)
class Answered:
    """An answer waiting for the shadow: the shadow deployed when it was served, its query, its log line."""

    shadow: ServingModel
    query: Query
    line: RequestRecord


class ShadowWriter:
    """Writes the request log's lines, adding the shadow's list beside the answer's off the answer's path.

    Why: scored inside the request, the shadow cost about as much as the answer on a CPU-bound
    service (throughput with it on 0.66 of without). Here a sampled answer's line waits in a
    bounded queue; one thread per worker wakes on the first, lets more gather for `linger_s`,
    takes what has queued (up to `batch` answers), ranks them with one batched `recommend` of
    the shadow and writes their lines, each with the shadow's list under the answer's request id,
    in one write: a batch pays one wake-up, one search call and one write, and contends for the
    GIL with the answers' event loop once rather than once per answer. The answer never waits:
    a line the full queue refuses is written at once without the shadow's list and counted as
    dropped, and lines the shadow does not sample are written at once. A sampled line lands once
    the shadow has scored it (tens of milliseconds), not before the answer returns; `close`
    writes all that is queued, so a worker that stops loses none (one killed outright loses
    what waited).

    `forgotten` returns the erased users as of now (recsys.tombstones). It is asked while the
    log's lock is held (`RequestLog.append_built`), and a line whose user it names is written
    without the user's pseudonym: an erasure that rewrote the log while a line waited for the
    shadow would otherwise find that line written after its rewrite, pseudonym and all.
    """

    def __init__(
        self, log: RequestLog, share: float, capacity: int, batch: int = MAX_BATCH, linger_s: float = 0.01, forgotten: Callable[[], Container[str]] = frozenset
    ) -> None:
        self.log, self.share, self.batch, self.linger_s, self.forgotten = log, share, batch, linger_s, forgotten
        self._omp_threads = faiss.omp_get_max_threads()  # the creating thread's: the service sets one
        self._queue: queue.Queue[Answered | None] = queue.Queue(capacity)  # None: the last, from close
        self._thread = threading.Thread(target=self._run, name="recsys-shadow", daemon=True)
        self._thread.start()

    def append(self, deployment: Deployment, queries: Sequence[Query], lines: Sequence[RequestRecord]) -> int:
        """Log these answers: the shadow's sample queued for it, the rest written now; return how many the full queue refused."""
        shadow, dropped, now = deployment.shadow, 0, []
        for query, line in zip(queries, lines):
            if shadow is not None and shadowed(line.request_id, self.share):
                try:
                    self._queue.put_nowait(Answered(shadow, query, line))
                    continue
                except queue.Full:
                    dropped += 1
            now.append((query, line))
        if now:
            self.log.append_built(functools.partial(scrubbed, [(q.user_id, line) for q, line in now], self.forgotten))
        return dropped

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        # OpenMP's thread count is per thread: unset here, each faiss search of the shadow ran a
        # team of OpenMP threads that spin between calls (measured in-process: ~1,000 us of CPU
        # per request with the shadow on instead of ~500, the answer alone ~250).
        faiss.omp_set_num_threads(self._omp_threads)
        while True:
            taken = [self._queue.get()]
            if taken[-1] is not None:  # let more gather: a batch costs one wake-up, one search and one write
                time.sleep(self.linger_s)
            while taken[-1] is not None and len(taken) < self.batch:
                try:
                    taken.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            answered = [a for a in taken if a is not None]
            try:
                self._write(answered)
            except Exception as exc:  # a line it cannot write (a full disk): the thread must go on for the next ones
                print(f"recsys: {len(answered)} request-log line(s) with the shadow's lists not written: {exc!r}", file=sys.stderr, flush=True)
            if taken[-1] is None:
                return

    def _write(self, answered: list[Answered]) -> None:
        """One search per shadow (a reload may have swapped it while these waited), then their lines in one write."""
        by_shadow: dict[int, list[Answered]] = {}
        for a in answered:
            by_shadow.setdefault(id(a.shadow), []).append(a)
        for group in by_shadow.values():
            scores = score_shadow(group[0].shadow, [a.query for a in group])
            lines = [(a.query.user_id, with_shadow(a.line, score)) for a, score in zip(group, scores)]
            self.log.append_built(functools.partial(scrubbed, lines, self.forgotten))


def record(request_id: str, served_at: str, event_time: str | None, pseudonym: str | None, query: Query, served: Served, cpu_us: float) -> RequestRecord:
    """The request-log line of one answer (the shadow's list is added by `with_shadow`)."""
    rec = served.recommendation
    return RequestRecord(
        request_id=request_id,
        served_at=served_at,
        event_time=event_time,
        user_id=pseudonym,
        k=query.k,
        exclude_seen=query.exclude_seen,
        items=[i for i, _ in rec.items],
        scores=[s for _, s in rec.items],
        fallback=rec.fallback,
        model_version=served.model.version,
        history_len=rec.history_len,
        rec_popularity=rec.rec_popularity,
        cpu_us=round(cpu_us, 1),
        arm=served.arm,
        latency_us=round(served.latency_us, 1),
        canary_error=served.canary_error,
    )


def with_shadow(line: RequestRecord, shadow: ShadowScore) -> RequestRecord:
    """The answer's log line with the shadow's list beside it, under the same request id."""
    us = round(shadow.latency_us, 1) if shadow.latency_us is not None else None
    update = {"shadow_version": shadow.version, "shadow_items": shadow.items, "shadow_scores": shadow.scores, "shadow_us": us, "shadow_error": shadow.error}
    return line.model_copy(update=update)


def _timed(search: Callable[[list[Query]], list[Recommendation]], queries: list[Query]) -> tuple[list[Recommendation], float]:
    start = time.perf_counter()
    recs = search(queries)
    return recs, (time.perf_counter() - start) * 1e6
