"""The BentoML service: thin HTTP over serving.logic, with the champion from the model store.

Run with `bentoml serve recsys.serving.service:RecsysService` (BENTOML_HOME pointing at the
store the champion was exported to). Every answer carries a request id and the serving model
version, and is appended to the request log that the monitor reads.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import bentoml
from pydantic import Field

from recsys.models.base import EmbeddingModel
from recsys.schemas import DEFAULT_K, MAX_K, RecommendedItem, RecommendResponse
from recsys.serving.logic import RequestLog, recommend_one
from recsys.settings import get_settings

MODEL_TAG = os.environ.get("RECSYS_BENTO_MODEL", "recsys:latest")
EXPORT_PATH = Path("mlflow_model") / "artifacts" / "export"


@bentoml.service(traffic={"timeout": 30})
class RecsysService:
    """Top-k recommendations for a user from the promoted champion."""

    bento_model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        self.model = EmbeddingModel.load(Path(self.bento_model.path) / EXPORT_PATH)
        self.version = str(self.bento_model.info.metadata.get("version", "unknown"))
        self.log = RequestLog(get_settings().request_log)

    @bentoml.api
    def recommend(
        self,
        user_id: Annotated[str, Field(min_length=1, max_length=128)],
        k: Annotated[int, Field(ge=1, le=MAX_K)] = DEFAULT_K,
        timestamp: Annotated[str | None, Field(max_length=40)] = None,
    ) -> RecommendResponse:
        """Recommend k items; unknown users get the most popular items (fallback=true)."""
        rec = recommend_one(self.model, user_id, k)
        response = RecommendResponse(
            request_id=uuid.uuid4().hex,
            user_id=user_id,
            items=[RecommendedItem(item_id=i, score=s) for i, s in rec.items],
            fallback=rec.fallback,
            model_version=self.version,
        )
        self.log.append(
            {
                "request_id": response.request_id,
                "served_at": datetime.now(UTC).isoformat(),
                "event_time": timestamp,
                "user_id": user_id,
                "k": k,
                "items": [i for i, _ in rec.items],
                "scores": [s for _, s in rec.items],
                "fallback": rec.fallback,
                "model_version": self.version,
                "history_len": rec.history_len,
                "rec_popularity": rec.rec_popularity,
            }
        )
        return response
