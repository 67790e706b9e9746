"""The floor of the serving benchmark: a bare Starlette POST endpoint answering a constant list.

No model, no validation, no logging: what the HTTP stack alone (uvicorn, one worker) costs,
so the BentoML service's overhead can be read against it.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ITEMS = [{"item_id": f"i{i}", "score": 1.0 - i / 10} for i in range(10)]


async def recommend(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"items": ITEMS, "fallback": False, "model_version": "floor"})


async def health(_: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


app = Starlette(routes=[Route("/recommend", recommend, methods=["POST"]), Route("/health", health)])
