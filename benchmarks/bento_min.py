"""BentoML's own minimum for the serving benchmark: a service that answers a constant body.

Same BentoML settings as the real service (one worker, no access log, no tracing spans),
no model, no validation beyond the request's two fields, no logging: what BentoML itself
costs per request on this machine, between the bare Starlette floor and our service. The
answer is the saved real /recommend answer (RECSYS_FLOOR_BODY), so it sends as many bytes.
"""

from __future__ import annotations

import json

import bentoml

from benchmarks.floor_app import BODY

ANSWER = json.loads(BODY)


@bentoml.service(workers=1, logging={"access": {"enabled": False}}, tracing={"excluded_urls": ".*"})
class Minimal:
    """One typed endpoint with the shape of /recommend that does no work."""

    @bentoml.api
    async def recommend(self, user_id: str, k: int = 10) -> dict:
        return ANSWER
