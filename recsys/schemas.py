"""Column names shared by every module, and the pydantic models of the service's I/O.

One vocabulary for the canonical tables keeps loaders, validation, training and
monitoring in step: a renamed column is a one-line change here.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# Canonical interactions table: one row per (user, item, timestamp) event.
USER_COL = "user_id"
ITEM_COL = "item_id"
TS_COL = "timestamp"
EVENT_COL = "event"
WEIGHT_COL = "weight"
INTERACTION_COLUMNS = [USER_COL, ITEM_COL, TS_COL, EVENT_COL, WEIGHT_COL]

# Canonical item table.
TITLE_COL = "title"
CATEGORY_COL = "category"
PRICE_COL = "price"
ITEM_COLUMNS = [ITEM_COL, TITLE_COL, CATEGORY_COL, PRICE_COL]

EVENTS = ("purchase", "rating", "click", "view")
DEFAULT_K = 10
MAX_K = 100


class RecommendRequest(BaseModel):
    """A request for the top-k items of one user."""

    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=128)
    k: int = Field(default=DEFAULT_K, ge=1, le=MAX_K)
    # Event time of the request; a replay of past traffic sends the original time.
    timestamp: str | None = Field(default=None, max_length=40)


class RecommendedItem(BaseModel):
    item_id: str
    score: float


class RecommendResponse(BaseModel):
    request_id: str
    user_id: str
    items: list[RecommendedItem]
    fallback: bool = Field(description="True when the user is unknown and popularity answered")
    model_version: str
