"""Who answers a request and who is scored beside it: the champion, a canary, a shadow.

A challenger is proven on live traffic before it takes over (issue 17). As the **shadow** it
ranks a share of requests once the champion's answer is built: its list goes to the request
log beside the answer, under the same request id, and is never shown. As the **canary** it
answers a share of users, chosen by a hash of their pseudonym so that a user stays in one arm
for the whole experiment (a user who flips between two lists would blur both arms' hit rates).
The monitor (recsys.monitoring.canary) reads both back from the log and decides.

Neither may hurt the answer. A canary that fails on its requests is answered for by the
champion, and the failure is logged for the rollback rule; a shadow that fails only leaves its
error in the log. Testable without BentoML: the service calls these functions and only adds HTTP.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from recsys.schemas import Arm, RequestRecord
from recsys.serving.logic import Query, Recommendation, ServingModel


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


def score_shadow(deployment: Deployment, queries: Sequence[Query], request_ids: Sequence[str], share: float) -> list[ShadowScore | None]:
    """The shadow's lists for the sampled requests (None for the others), in one search.

    Call it once the answers are built: it reads nothing they depend on, so it cannot change
    them, and what it costs is this one search (one per batch), never a failed request.
    Requests are sampled by a hash of their id, so the shadow's share is the same in every worker.
    """
    shadow = deployment.shadow
    out: list[ShadowScore | None] = [None] * len(queries)
    picked = [i for i, rid in enumerate(request_ids) if unit(rid, "shadow") < share] if shadow is not None else []
    if shadow is None or not picked:
        return out
    try:  # no explanations: nobody reads them
        recs, us = _timed(shadow.recommend, [replace(queries[i], explain=False) for i in picked])
    except Exception as exc:
        scores = [ShadowScore(shadow.version, None, None, None, f"{type(exc).__name__}: {exc}")] * len(picked)
    else:
        scores = [ShadowScore(shadow.version, [i for i, _ in r.items], [s for _, s in r.items], us) for r in recs]
    for i, score in zip(picked, scores):
        out[i] = score
    return out


def record(
    request_id: str, served_at: str, event_time: str | None, pseudonym: str | None, query: Query, served: Served, shadow: ShadowScore | None, cpu_us: float
) -> RequestRecord:
    """The request-log line of one answer, with the shadow's list beside it under the same request id."""
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
        shadow_version=shadow.version if shadow else None,
        shadow_items=shadow.items if shadow else None,
        shadow_scores=shadow.scores if shadow else None,
        shadow_us=round(shadow.latency_us, 1) if shadow and shadow.latency_us is not None else None,
        shadow_error=shadow.error if shadow else None,
    )


def _timed(search: Callable[[list[Query]], list[Recommendation]], queries: list[Query]) -> tuple[list[Recommendation], float]:
    start = time.perf_counter()
    recs = search(queries)
    return recs, (time.perf_counter() - start) * 1e6
