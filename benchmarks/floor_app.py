"""The floor of the serving benchmark: a bare Starlette POST endpoint answering a constant body.

No model, no validation, no logging: what the HTTP stack alone (uvicorn, one worker) costs,
so the BentoML service's overhead can be read against it. The body is a real /recommend
answer that the benchmark saved (RECSYS_FLOOR_BODY), so the floor sends as many bytes as
the service; without it, one of the same shape (ten items, request id, lineage).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def _body() -> bytes:
    if path := os.environ.get("RECSYS_FLOOR_BODY"):
        return Path(path).read_bytes()
    items = [{"item_id": f"2{i:04d}", "score": 0.5728541612625122 - i / 100, "because": None} for i in range(10)]
    answer = {"request_id": "0" * 32, "user_id": "12347", "items": items, "fallback": False, "model_version": "1"}
    return json.dumps(answer, separators=(",", ":")).encode()


BODY = _body()


async def recommend(request: Request) -> Response:
    await request.body()
    return Response(BODY, media_type="application/json")


async def health(_: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


app = Starlette(routes=[Route("/recommend", recommend, methods=["POST"]), Route("/health", health)])
