"""The BentoML service: thin typed HTTP over serving.logic, with the champion from the model store.

Run with `bentoml serve recsys.serving.service:RecsysService` (BENTOML_HOME pointing at the
store the champion was exported to). Every answer carries a request id and the serving
model version and is appended to the request log the monitor reads, as a `RequestRecord`
(recsys.schemas); feedback and similar-item lookups go to `events.jsonl` beside it
(`FeedbackRecord`, `SimilarItemsRecord`), so they do not skew drift figures.
What answering costs is on `/metrics` (`recsys_cpu_seconds_total`,
`recsys_recommended_users_total`) and in each log line (`cpu_us`).

Settings (`recsys.settings`, all `RECSYS_*`, secure defaults): `bind_host` (127.0.0.1;
`--host` overrides), `serve_workers`, `serve_max_concurrency` (past it a 503 with `Retry-After`,
not a queue: recsys.serving.http.LoadShedder), `request_timeout_s`, `access_log`, `tracing` (BentoML's
OpenTelemetry spans, off: see TRACING below), `bento_model`, and the secrets `log_key` (the
HMAC-SHA256 key that pseudonymises user ids in the logs) and `admin_token` (bearer token of
POST /admin/reload and /admin/forget): unset, each is generated once for this install
(`recsys.keys`). The service refuses a key under 32 bytes and a non-loopback interface without
an explicit token.

Challengers (recsys.serving.arms): if the store holds a model under the champion's name plus
`-canary` or `-shadow` (`Settings.challenger_model`), the service loads it beside the champion,
and reloads it with it. The canary answers `canary_share` of users, sticky by their pseudonym;
each response's `arm` says who answered. The shadow scores `shadow_share` of requests after they
are answered, in batches on a thread of each worker (`ShadowWriter`), and its list is logged beside
the answer's (`shadow_items`), never shown; at most `shadow_queue` answers wait for it, past that
their lines are written without its list (`recsys_shadow_dropped_total`).

Forgotten users (recsys.privacy): each worker stats the tombstone file on every request. When
an erasure replaces it, the worker re-reads the hashes, from then on answers those users with
the popularity fallback and logs their requests without an id, and reloads the store's newest
model if it changed (the erasure replaces the file again once the champion without them is
exported). So an erasure reaches every worker at its next request, whichever process ran it.
POST /admin/forget lists the user, answers 202, and runs the rest of the erasure in this worker.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import bentoml
import faiss
from _bentoml_sdk.io_models import IORootModel
from bentoml.exceptions import NotFound
from pydantic import Field, TypeAdapter
from starlette.responses import Response
from threadpoolctl import threadpool_limits

from recsys import keys, tombstones
from recsys.schemas import (
    DEFAULT_K,
    MAX_BATCH,
    MAX_BODY_BYTES,
    MAX_K,
    EventName,
    FeedbackRecord,
    FeedbackResponse,
    Id,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    RequestRecord,
    SimilarItemsRecord,
    SimilarItemsResponse,
)
from recsys.serving.arms import Deployment, Served, ShadowWriter, record, serve
from recsys.serving.http import LoadShedder, RequestGuard, admin_app
from recsys.serving.logic import Query, RequestLog, ServingModel, pseudonymise, scrubbed
from recsys.settings import get_settings
from recsys.tombstones import TombstoneWatch

if TYPE_CHECKING:
    from recsys.privacy import Erasure

SETTINGS = get_settings()
EXPORT_PATH = Path("mlflow_model") / "artifacts" / "export"


def _example_ids() -> dict[str, str]:
    """Ids the stored champion knows (promotion records them), as Swagger UI's examples."""
    try:
        metadata = bentoml.models.get(SETTINGS.bento_model).info.metadata
    except NotFound:
        return {}
    return {key: str(metadata[key]) for key in ("example_user_id", "example_item_id") if key in metadata}


EXAMPLE_IDS = _example_ids()
UserIdParam = Annotated[Id, Field(examples=[EXAMPLE_IDS["example_user_id"]])] if "example_user_id" in EXAMPLE_IDS else Id
ItemIdParam = Annotated[Id, Field(examples=[EXAMPLE_IDS["example_item_id"]])] if "example_item_id" in EXAMPLE_IDS else Id
K = Annotated[int, Field(ge=1, le=MAX_K)]

# With no exporter configured BentoML still records five OpenTelemetry spans per request
# (its sampler is RECORD_ONLY at rate 0) only to put trace ids in access lines that are off.
# Measured: a third of the server's CPU per /recommend (1,060 -> 730 us), for nothing.
# Excluding every URL skips the tracing middleware; RECSYS_TRACING=1 keeps it (for a
# deployment that configures an exporter).
TRACING: dict[str, str] = {} if SETTINGS.tracing else {"excluded_urls": ".*"}

# One query at a time per worker: more threads would only contend. Exact search's matrix product
# runs in OpenBLAS, whose idle threads spin: left at one per core, a worker used both cores of
# the test machine for 18-21 ms of CPU a 64-user batch, against 8-9 ms on one thread.
faiss.omp_set_num_threads(1)
threadpool_limits(1, "blas")

# What answering costs, as Prometheus counters on /metrics (bentoml.metrics: multiprocess-safe).
# CPU time is the handler thread's own (`time.thread_time`): the model, the answer and its log
# line, not HTTP parsing, so cost per user is comparable between models and releases.
CPU_SECONDS = bentoml.metrics.Counter(name="recsys_cpu_seconds", documentation="Handler CPU seconds spent answering, per endpoint", labelnames=["endpoint"])
RECOMMENDED_USERS = bentoml.metrics.Counter(
    name="recsys_recommended_users", documentation="Users given a list of recommendations, per endpoint", labelnames=["endpoint"]
)
SHADOW_DROPPED = bentoml.metrics.Counter(
    name="recsys_shadow_dropped", documentation="Answers the shadow was to score, logged without its list: its queue was full"
)


RESPONSES = TypeAdapter(list[RecommendResponse])
JSON_ANSWER = "application/json"


class RecommendBatchOutput(IORootModel[list[RecommendResponse]]):
    """/recommend_batch's answer, a JSON list of answers, written by pydantic's serializer.

    BentoML's own root model for a list derives its media type from the list's JSON schema on
    every response and writes through `json.dumps` of a `model_dump`: a quarter of the worker's
    time under /recommend_batch (py-spy, 64 users a request), for bytes that are the same.
    """

    media_type = JSON_ANSWER

    def model_dump_json(self, **kwargs: object) -> str:
        # BentoML passes only `exclude` (the multipart fields), which a JSON list has none of.
        return RESPONSES.dump_json(self.root).decode()


def load_serving(model: bentoml.Model) -> ServingModel:
    """A stored BentoML model as served: arrays, shipped index, metadata and tag."""
    path = Path(model.path)
    return ServingModel.load(path, path / EXPORT_PATH, {**model.info.metadata, "bento_tag": str(model.tag)})


def load_deployment(champion_tag: str, keep: Deployment | None = None) -> Deployment:
    """The champion stored as `champion_tag`, and the store's newest shadow and canary if it holds them.

    A challenger is exported to the store under its own name (`Settings.challenger_model`), from
    the MLflow alias of the same name. With `keep`, a model whose stored tag is the one already
    loaded is reused, not read again.
    """
    loaded = {m.info.get("bento_tag"): m for m in (keep.champion, keep.canary, keep.shadow) if m is not None} if keep else {}

    def load(tag: str) -> ServingModel:
        stored = bentoml.models.get(tag)
        return loaded.get(str(stored.tag)) or load_serving(stored)

    def challenger(alias: str) -> ServingModel | None:
        try:
            return load(SETTINGS.challenger_model(alias))
        except NotFound:  # none deployed: the champion serves alone
            return None

    return Deployment(load(champion_tag), challenger(SETTINGS.canary_alias), challenger(SETTINGS.shadow_alias))


def new_request_ids(n: int) -> list[str]:
    """`n` ids of 128 random bits as 32 hex digits (like uuid4().hex without UUID objects), from
    one read of the system's randomness: one read each cost a 64-user batch 4% of its time."""
    digits = secrets.token_hex(16 * n)
    return [digits[i : i + 32] for i in range(0, 32 * n, 32)]


def new_request_id() -> str:
    """One request id (`new_request_ids`)."""
    return new_request_ids(1)[0]


def now() -> str:
    return datetime.now(UTC).isoformat()


@bentoml.asgi_app(admin_app, path="/")
@bentoml.service(
    # BentoML 1.4's timeout middleware leaves one timer per request armed for the whole
    # timeout, keeping that request's future, context and trace span alive: at 1,000 req/s
    # a 30 s timeout holds ~30k of them and full GC passes over them pause for 100+ ms.
    # Answers take milliseconds (model reloads about a second), so 5 s is ample.
    traffic={"timeout": SETTINGS.request_timeout_s},
    workers=SETTINGS.serve_workers,
    http={"host": SETTINGS.bind_host},
    # Our request log already records every answer; a second, per-request access line
    # to stdout costs about a third of the throughput. RECSYS_ACCESS_LOG=1 turns it on.
    logging={"access": {"enabled": SETTINGS.access_log}},
    tracing=TRACING,
)
class RecsysService:
    """Recommendations, similar items and feedback from the promoted champion (and its challengers, if deployed)."""

    bento_model = bentoml.models.BentoModel(SETTINGS.bento_model)

    def __init__(self) -> None:
        settings = get_settings()
        for host in {settings.bind_host, settings.host}:  # its own interface, and the one `recsys up` passes
            keys.check_bind(settings, host)
        self.log_key = keys.log_key(settings)  # made on first use for this install, shared by every worker
        self.admin_token = keys.admin_token(settings)
        self.deployed = load_deployment(str(self.bento_model.tag))
        self.canary_share = settings.canary_share
        log = settings.request_log
        self.log = RequestLog(log)
        log_watch = TombstoneWatch(settings)  # the log's own: asked only under the log's lock (RequestLog.append_built)
        self.shadows = ShadowWriter(self.log, settings.shadow_share, settings.shadow_queue, forgotten=log_watch.now)
        self.events = RequestLog(log.with_name("events.jsonl"))
        self._reload_lock = asyncio.Lock()
        self.tombstones = TombstoneWatch(settings)
        self._swaps: set[asyncio.Task] = set()  # reloads started by an erasure, held until done
        # Everything loaded so far (libraries, the model's id dicts) lives as long as the
        # process: freezing it spares every full collection a walk over all of it. Full
        # collections under load found no garbage (collected=0) yet paused the event loop
        # for 30-70 ms each, so they are made 10x rarer; young generations run as usual.
        gc.freeze()
        gc.set_threshold(700, 10, 100)

    @bentoml.on_shutdown
    def close_logs(self) -> None:
        self.shadows.close()  # first: it writes the lines still waiting for the shadow
        self.log.close()
        self.events.close()

    @property
    def current(self) -> ServingModel:
        """The champion serving now."""
        return self.deployed.champion

    async def reload(self, if_newer: bool = False) -> ServingModel:
        """Load the store's newest champion and challengers off the event loop, then swap them in at once.

        With `if_newer`, a model whose newest stored version is the one serving is not read again.
        """
        async with self._reload_lock:
            newest = f"{self.bento_model.tag.name}:latest"
            self.deployed = await asyncio.to_thread(load_deployment, newest, self.deployed if if_newer else None)
        return self.current

    def _forgotten(self) -> tombstones.Tombstones:
        """The erased users, after one stat of the tombstone file per call (not per user of a batch);
        a replaced file also starts a swap to the newest model."""
        if self.tombstones.changed():
            swap = asyncio.get_running_loop().create_task(self._swap_after_erasure())
            self._swaps.add(swap)
            swap.add_done_callback(self._swaps.discard)
        return self.tombstones.current

    async def _swap_after_erasure(self) -> None:
        try:
            await self.reload(if_newer=True)
        except Exception as exc:  # the old model keeps serving; forgotten users still get the fallback
            print(f"recsys: reload after an erasure failed, still serving {self.current.version}: {exc!r}", flush=True)

    async def forget(self, user_id: str) -> str:
        """List `user_id` as forgotten now, erase the rest in the background; return the audit hash.

        Every worker answers them with the fallback from its next request on. The erasure of
        stores, logs and models takes seconds (longer than the request timeout), so it runs
        after the answer, here, and its outcome is the line it adds to the audit log.
        """
        subject = await asyncio.to_thread(tombstones.bury, get_settings(), user_id)
        erasing = asyncio.get_running_loop().create_task(self._erase(user_id))
        self._swaps.add(erasing)
        erasing.add_done_callback(self._swaps.discard)
        return subject

    async def _erase(self, user_id: str) -> None:
        try:
            erasure = await asyncio.to_thread(_forget, user_id)
            self.tombstones.changed()
            await self.reload(if_newer=True)
        except Exception as exc:  # listed already: they get the fallback; a second call finishes the job
            print(f"recsys: erasure failed (run it again): {exc!r}", flush=True)
        else:
            print(f"recsys: erasure done (see the audit log); champion {erasure.model_version or 'unchanged'}", flush=True)

    @bentoml.api(output_spec=RecommendResponse)
    async def recommend(
        self,
        user_id: UserIdParam,
        k: K = DEFAULT_K,
        exclude_seen: bool = True,
        explain: bool = False,
        timestamp: Annotated[str | None, Field(max_length=40)] = None,
    ) -> Response:
        """Top-k items for a user; unknown users get the most popular items (fallback=true)."""
        start = time.thread_time()
        deployed, q = self.deployed, Query(user_id, k, exclude_seen, explain, user_id in self._forgotten())
        pseudonym = None if q.forgotten else pseudonymise(user_id, self.log_key)
        served = serve(deployed, [q], [pseudonym], self.canary_share)
        cpu_us = (time.thread_time() - start) * 1e6  # the ranking's CPU (the monitor's cost per 1,000)
        response = _responses([q], served, [new_request_id()])[0]
        # Logged before it is returned, or queued for the shadow, whose thread writes it once scored and
        # at shutdown: an answered request is a logged one.
        self._log(deployed, [q], [record(response.request_id, now(), timestamp, pseudonym, q, served[0], cpu_us)])
        _count("recommend", time.thread_time() - start, 1)
        # The answer's JSON bytes in one plain response (its schema is still the API's: `output_spec`).
        # BentoML's own output path checks an answer for a file and streams it chunked; with this and
        # the answer validated from dicts (`_responses`), the server's CPU a request fell 483 -> 468 us.
        return Response(response.model_dump_json(), media_type=JSON_ANSWER)

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=5000, output_spec=RecommendBatchOutput)
    async def recommend_batch(self, requests: Annotated[list[RecommendRequest], Field(min_length=1, max_length=MAX_BATCH)]) -> list[RecommendResponse]:
        """Many users at once; concurrent calls are merged (adaptive batching) into one search."""
        start = time.thread_time()
        deployed = self.deployed
        forgotten = self._forgotten()
        queries = [Query(r.user_id, r.k, r.exclude_seen, r.explain, r.user_id in forgotten) for r in requests]
        pseudonyms = [None if q.forgotten else pseudonymise(q.user_id, self.log_key) for q in queries]
        served = serve(deployed, queries, pseudonyms, self.canary_share)
        cpu_us = (time.thread_time() - start) * 1e6 / len(queries)  # one search per arm for the batch: an equal share each
        responses = _responses(queries, served, new_request_ids(len(queries)))
        lines = [record(a.request_id, now(), r.timestamp, p, q, s, cpu_us) for q, s, r, a, p in zip(queries, served, requests, responses, pseudonyms)]
        self._log(deployed, queries, lines)  # the shadow's sample in batches on its thread
        _count("recommend_batch", time.thread_time() - start, len(queries))
        return responses

    def _log(self, deployed: Deployment, queries: list[Query], lines: list[RequestRecord]) -> None:
        """Append the answers' lines, those the shadow samples through its queue (`ShadowWriter`)."""
        dropped = self.shadows.append(deployed, queries, lines)
        if dropped:
            SHADOW_DROPPED.inc(dropped)

    @bentoml.api
    async def similar_items(self, item_id: ItemIdParam, k: K = DEFAULT_K) -> SimilarItemsResponse:
        """Items closest to `item_id` in the model's space; 404 for an item the model does not know."""
        state = self.current
        items = state.similar(item_id, k)
        if items is None:
            raise NotFound(f"unknown item_id {item_id!r}: not in the catalogue of model version {state.version}")
        response = SimilarItemsResponse(
            request_id=new_request_id(),
            item_id=item_id,
            model_version=state.version,
            items=[RecommendedItem(item_id=i, title=state.model.title(i), score=s) for i, s in items],
        )
        self.events.append(
            SimilarItemsRecord(request_id=response.request_id, served_at=now(), item_id=item_id, k=k, items=[i for i, _ in items], model_version=state.version)
        )
        return response

    @bentoml.api
    async def feedback(
        self,
        user_id: UserIdParam,
        item_id: ItemIdParam,
        event: EventName,
        request_id: Annotated[str, Field(min_length=1, max_length=64)],
    ) -> FeedbackResponse:
        """Record what the user did with a recommended item (joined to the answer by request_id)."""
        response = FeedbackResponse(request_id=new_request_id(), accepted=True, model_version=self.current.version)
        line = FeedbackRecord(
            request_id=response.request_id,
            served_at=now(),
            user_id=pseudonymise(user_id, self.log_key),
            item_id=item_id,
            event=event,
            answer_request_id=request_id,
            model_version=response.model_version,
        )
        # Whether they were erased is asked under the events log's lock (on this event loop, so the
        # service's own watch): checked before it, an erasure in between would find the line written
        # after its rewrite, pseudonym and all.
        self.events.append_built(functools.partial(scrubbed, [(user_id, line)], self._forgotten))
        return response


def _responses(queries: list[Query], served: list[Served], request_ids: list[str]) -> list[RecommendResponse]:
    """The answers as the users see them, built before the shadow sees the requests (so it cannot change them).

    Validated from plain dicts in one pydantic call: a model built per item cost a third more
    (16 against 12 us for ten items, in process).
    """
    return RESPONSES.validate_python([_plain_answer(q, s, i) for q, s, i in zip(queries, served, request_ids)])


def _plain_answer(q: Query, served: Served, request_id: str) -> dict[str, Any]:
    """One answer as the plain data of a `RecommendResponse` (validated by `_responses`)."""
    rec, model = served.recommendation, served.model.model
    because = rec.because or [None] * len(rec.items)
    items = [{"item_id": i, "title": model.title(i), "score": s, "because": b, "because_title": model.title(b)} for (i, s), b in zip(rec.items, because)]
    return {"request_id": request_id, "user_id": q.user_id, "items": items, "fallback": rec.fallback, "model_version": served.model.version, "arm": served.arm}


def _forget(user_id: str) -> Erasure:
    from recsys.privacy import forget

    return forget(get_settings(), user_id)


def _count(endpoint: str, cpu_s: float, users: int) -> None:
    cpu, answered = _counters(endpoint)
    cpu.inc(cpu_s)
    answered.inc(users)


@functools.cache
def _counters(endpoint: str) -> tuple[Any, Any]:
    """The endpoint's two counters, looked up by label once per worker rather than on every request."""
    return CPU_SECONDS.labels(endpoint=endpoint), RECOMMENDED_USERS.labels(endpoint=endpoint)


if SETTINGS.serve_max_concurrency:  # outermost of ours: a refused request is not even read
    RecsysService.add_asgi_middleware(LoadShedder, limit=SETTINGS.serve_max_concurrency)
RecsysService.add_asgi_middleware(RequestGuard, max_bytes=MAX_BODY_BYTES)
