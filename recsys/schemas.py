"""Column names shared by every module, and the pydantic models of the service's I/O.

One vocabulary for the canonical tables keeps loaders, validation, training and
monitoring in step: a renamed column is a one-line change here. The records of the
service's logs live here too, so the service that writes them and the monitor that reads
them share one definition without either importing the other.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

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
EventName = Literal["purchase", "rating", "click", "view"]  # EVENTS, as a type for request bodies
DEFAULT_K = 10
MAX_K = 100
MAX_BATCH = 64  # requests in one /recommend_batch call
MAX_BODY_BYTES = 64 * 1024  # larger bodies get a 413 before any parsing
MAX_ID_LEN = 128

#: Who answered a request: the champion, or the canary on its sticky share of users (recsys.serving.arms).
Arm = Literal["champion", "canary"]


def _integer_as_text(value: Any) -> Any:
    """An integer id becomes its decimal text (Online Retail and MovieLens ids are numbers);
    a bool is not an id and stays as it is, to be refused."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _printable(value: str) -> str:
    """Refuse control characters: a NUL or newline in an id breaks logs and lookups downstream."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("ids may not contain control characters (NUL, tab, newline, ...)")
    return value


#: A user or item id as clients send it: text, or an integer taken as its decimal text.
Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LEN), BeforeValidator(_integer_as_text), AfterValidator(_printable)]


class RecommendRequest(BaseModel):
    """A request for the top-k items of one user."""

    model_config = ConfigDict(extra="forbid")

    user_id: Id
    k: int = Field(default=DEFAULT_K, ge=1, le=MAX_K)
    # Event time of the request; a replay of past traffic sends the original time.
    timestamp: str | None = Field(default=None, max_length=40)
    exclude_seen: bool = Field(default=True, description="Leave out items the user already interacted with")
    explain: bool = Field(default=False, description="Name, per item, the seen item it is closest to")


class RecommendedItem(BaseModel):
    item_id: str
    title: str | None = Field(default=None, description="The item's title (its description in the catalogue)")
    score: float
    because: str | None = Field(default=None, description="With explain: the closest item the user has seen")
    because_title: str | None = Field(default=None, description="With explain: that seen item's title")


class RecommendResponse(BaseModel):
    request_id: str
    user_id: str
    items: list[RecommendedItem]
    fallback: bool = Field(description="True when the user is unknown and popularity answered")
    model_version: str
    arm: Arm = Field(default="champion", description="Which arm answered: the champion, or the canary on its sticky share of users")


class SimilarItemsResponse(BaseModel):
    request_id: str
    item_id: str
    items: list[RecommendedItem]
    model_version: str


class FeedbackResponse(BaseModel):
    request_id: str = Field(description="Id of this feedback event in the log")
    accepted: bool
    model_version: str


class ForgetRequest(BaseModel):
    """Body of POST /admin/forget: the user to erase (recsys.privacy)."""

    model_config = ConfigDict(extra="forbid")

    user_id: Id


class ModelInfo(BaseModel):
    """Lineage of the serving champion, from its BentoML model metadata."""

    model_config = ConfigDict(extra="allow")

    version: str
    family: str = ""  # the model family (recsys.models.families); empty for a model exported before it was recorded
    run_id: str = ""
    data_digest: str = ""
    gx_result_id: str = ""
    promoted_at: str = ""
    bento_tag: str = ""
    index_kind: str = ""
    index_recall_at_100: float | None = None
    retriever_runs: dict[str, str] = Field(default_factory=dict)  # a two-stage model's retrievers: {name: run id}

    @classmethod
    def of(cls, info: dict[str, Any]) -> ModelInfo:
        return cls.model_validate({k: v for k, v in info.items() if v is not None})


class RequestRecord(BaseModel):
    """One answered recommendation: a line of the request log, written by the service, read by the monitor.

    It carries what drift needs without a join (history length, popularity of the answer,
    the handler's CPU time). Fields added after the first logs were written have defaults,
    so old logs still load; unknown fields are ignored, so a newer log does too.
    """

    model_config = ConfigDict(frozen=True)

    request_id: str
    served_at: str  # ISO 8601, the server's clock (UTC)
    event_time: str | None = None  # the client's time, as sent (a replay of past traffic sends the original)
    user_id: str | None  # pseudonymised (HMAC); None for a forgotten user
    k: int
    exclude_seen: bool = True
    items: list[str]
    scores: list[float]
    fallback: bool  # the user was unknown (or forgotten) and popularity answered
    model_version: str
    history_len: int
    rec_popularity: float  # mean popularity percentile of the recommended items
    cpu_us: float | None = None  # the handler's CPU time for this answer; None before it was logged
    # Challengers (recsys.serving.arms); older lines were all the champion's, without a shadow.
    arm: Arm = "champion"  # the arm that answered
    latency_us: float | None = None  # wall time of the search that answered (a batch's requests of one arm share one)
    canary_error: str | None = None  # the canary's failure on a request of its arm; the champion answered instead
    shadow_version: str | None = None  # the shadow's version, on the requests it scored (never shown)
    shadow_items: list[str] | None = None
    shadow_scores: list[float] | None = None
    shadow_us: float | None = None  # wall time of the shadow's search (its whole batch's, in /recommend_batch)
    shadow_error: str | None = None  # the shadow failed on this request; the answer is unchanged


class FeedbackRecord(BaseModel):
    """What a user did with a recommended item: a line of the events log, joined to its answer by `answer_request_id`."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["feedback"] = "feedback"
    request_id: str  # this event's own id
    served_at: str
    user_id: str | None  # pseudonymised; None for a forgotten user
    item_id: str
    event: EventName
    answer_request_id: str
    model_version: str


class SimilarItemsRecord(BaseModel):
    """A similar-items lookup: logged beside feedback, not in the request log, so it never skews drift."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["similar_items"] = "similar_items"
    request_id: str
    served_at: str
    item_id: str
    k: int
    items: list[str]
    model_version: str


#: A line of the events log, told apart by its `kind`.
EventRecord = Annotated[FeedbackRecord | SimilarItemsRecord, Field(discriminator="kind")]
