"""The HTTP pieces BentoML's typed APIs do not cover: GET /model, POST /admin/{reload,forget},
body cap, load shedding.

BentoML 1.4 APIs are POST-only and public, so the lineage GET and the token-guarded admin
route live in a small Starlette app mounted beside them (`@bentoml.asgi_app`); BentoML's
own routes match first. Bodies are guarded by an ASGI middleware before anything parses
them: over the size cap is a 413, a Content-Type other than JSON a 415 (BentoML would
otherwise try, say, a multipart parser on it and answer a 500). Past a bound of requests in
flight a worker refuses more at once (`LoadShedder`: 503 with `Retry-After`) rather than queue them.
"""

from __future__ import annotations

import asyncio
import hmac
import json

import bentoml
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recsys.schemas import ForgetRequest, ModelInfo
from recsys.settings import get_settings


async def model_info(_: Request) -> JSONResponse:
    """Lineage of the model answering right now (version, run, data digest, GX result, promotion)."""
    return JSONResponse(ModelInfo.of(bentoml.get_current_service().current.info).model_dump())


def _authorised(request: Request) -> JSONResponse | None:
    """None if the bearer token matches the service's admin token; the refusal otherwise.

    The token is RECSYS_ADMIN_TOKEN, or the one generated for this install into
    RECSYS_HOME/secrets/admin-token (recsys.keys): there is no default token to guess.
    """
    token = bentoml.get_current_service().admin_token
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), token.encode()):
        return JSONResponse({"error": "missing or wrong admin token (Authorization: Bearer <token>)"}, status_code=401)
    return None


async def reload(request: Request) -> JSONResponse:
    """Swap to the newest model in the store; in-flight requests finish on the old one."""
    if (refusal := _authorised(request)) is not None:
        return refusal
    service = bentoml.get_current_service()
    previous = service.current.version
    try:
        serving = await service.reload()
    except Exception as exc:  # the old model keeps serving; say why the new one did not load
        return JSONResponse({"error": f"reload failed, still serving {previous}: {exc}"}, status_code=500)
    return JSONResponse({"previous": previous, "serving": serving.version, "bento_tag": serving.info.get("bento_tag")})


async def forget(request: Request) -> JSONResponse:
    """Erase a user (recsys.privacy): 202 once every worker forgets them; the rest follows, audited.

    `{"user_id": ...}` in; out, the audit hash under which the audit log will record what was
    removed where (the erasure of stores, logs and models outlasts the request timeout).
    """
    if (refusal := _authorised(request)) is not None:
        return refusal
    try:
        user_id = ForgetRequest.model_validate_json(await request.body()).user_id
    except ValidationError as exc:
        return JSONResponse({"error": f"invalid body: {exc.errors(include_url=False, include_input=False)}"}, status_code=400)
    subject = await bentoml.get_current_service().forget(user_id)
    return JSONResponse({"subject": subject, "status": "erasing", "audit_log": str(get_settings().audit_log.resolve())}, status_code=202)


admin_app = Starlette(
    routes=[
        Route("/model", model_info, methods=["GET"]),
        Route("/admin/reload", reload, methods=["POST"]),
        Route("/admin/forget", forget, methods=["POST"]),
    ]
)


class RequestGuard:
    """Refuse non-JSON bodies (415) and bodies over `max_bytes` (413), saying why.

    A declared Content-Length is checked up front; a chunked body is read up to the limit
    and replayed to the app, so nothing downstream ever holds more than `max_bytes`.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        media_type = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
        if media_type != b"application/json":
            error = f"unsupported Content-Type {media_type.decode('latin-1')!r}: send application/json"
            return await _error(send, 415, error)
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.max_bytes:
                return await self._refuse(send, declared.decode("latin-1"))
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay({"type": "http.disconnect"}, receive), send)
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await self._refuse(send, f"at least {len(body)}")
        await self.app(scope, _replay({"type": "http.request", "body": body, "more_body": False}, receive), send)

    async def _refuse(self, send: Send, size: str) -> None:
        await _error(send, 413, f"request body too large: {size} bytes; the limit is {self.max_bytes}")


class LoadShedder:
    """Refuse a request at once (503, `Retry-After`) while `limit` requests are in flight in this worker.

    Past a worker's capacity a queue only makes every answer later: at 64 concurrent clients on
    one worker, p99 was 1.4 s with nothing refused. A refusal costs microseconds and tells the
    client (or a load balancer) when to come back, so the requests that are taken stay fast.
    BentoML's `traffic.max_concurrency` answers 429 with no `Retry-After`, from outside every
    middleware a service adds (the header cannot be put on its answer), and does not see the
    queue (below). Only POSTs to the typed APIs count: health, metrics, GET routes and the admin
    routes (a reload under overload must get through) are never refused. Refused requests never
    reach the handler, so they are not in the request log; `/metrics` counts them by status.
    """

    def __init__(self, app: ASGIApp, limit: int, retry_after_s: int = 1) -> None:
        self.app = app
        self.limit = limit
        self.retry_after = str(retry_after_s).encode()
        self.in_flight = 0  # one event loop per worker: a plain counter, no lock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].startswith("/admin/"):
            return await self.app(scope, receive, send)
        if self.in_flight >= self.limit:
            error = f"overloaded: {self.limit} requests in flight in this worker; retry after {self.retry_after.decode()} s"
            return await _error(send, 503, error, [(b"retry-after", self.retry_after)])
        self.in_flight += 1
        try:
            # Handlers run start to finish without yielding, so the queue is in the event loop's
            # ready tasks, out of a plain counter's sight: it would only ever see the one request
            # running (BentoML's `max_concurrency` is blind the same way; measured: nothing shed at
            # 64 concurrent against a bound of 4). Yielding once, counted, puts this request behind
            # those already taken: the count is then what was taken and is not done.
            await asyncio.sleep(0)
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


async def _error(send: Send, status: int, error: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps({"error": error}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": data})


def _replay(first: Message, receive: Receive) -> Receive:
    """A receive that yields `first` once, then defers to the real one."""
    pending = [first]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
