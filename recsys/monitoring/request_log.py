"""The service's logs as the monitor reads them: answers and feedback, validated by their schemas.

The BentoML service appends one `RequestRecord` per answer to the request log and one
`FeedbackRecord` or `SimilarItemsRecord` per event to the events log beside it; the models
in recsys.schemas are the ones it writes with, so a field renamed there changes both ends.
The service appends while we read and a crash can leave a half-written line, so a bad line
must not take monitoring down: lines that are not JSON, or not a valid record, are skipped,
counted in `df.attrs["skipped_lines"]` and logged as a warning.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pandas as pd
from pydantic import BaseModel, TypeAdapter, ValidationError

from recsys.schemas import Arm, EventRecord, FeedbackRecord, RequestRecord

log = logging.getLogger(__name__)

Record = TypeVar("Record", bound=BaseModel)
_EVENT = TypeAdapter(EventRecord)


def _valid_records(path: Path, validate: Callable[[str], Record], last_n: int | None) -> tuple[list[Record], int]:
    """The valid records of the JSONL file at `path` (the `last_n` newest if given) and how many lines were not."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"log not found: {path}")
    if last_n is not None and last_n <= 0:
        raise ValueError(f"last_n must be positive, got {last_n}")
    records: deque[Record] = deque(maxlen=last_n)
    skipped = 0
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(validate(line))
            except ValidationError:  # invalid JSON, JSON that is not an object, or not a record
                skipped += 1
    if skipped:
        log.warning("skipped %d corrupt line(s) in %s", skipped, path)
    return list(records), skipped


def _frame(records: Sequence[BaseModel], model: type[BaseModel], skipped: int) -> pd.DataFrame:
    """One row per record, one column per field of `model` (even with no rows)."""
    df = pd.DataFrame([r.model_dump() for r in records], columns=list(model.model_fields))
    df.attrs["skipped_lines"] = skipped
    return df


def read_request_log(path: Path, last_n: int | None = None) -> pd.DataFrame:
    """The request log as a frame with one column per `RequestRecord` field, keeping only the
    `last_n` newest valid records if given. Fields older logs lack take their defaults."""
    records, skipped = _valid_records(path, RequestRecord.model_validate_json, last_n)
    return _frame(records, RequestRecord, skipped)


def read_feedback(path: Path) -> pd.DataFrame:
    """The feedback events of the events log, one column per `FeedbackRecord` field.

    Similar-item lookups share that log; they are valid lines, left out here, not skipped.
    """
    events, skipped = _valid_records(path, _EVENT.validate_json, None)
    return _frame([e for e in events if isinstance(e, FeedbackRecord)], FeedbackRecord, skipped)


def online_hits(requests: pd.DataFrame, events_path: Path) -> pd.Series | None:
    """Per request of the window: 1.0 if feedback on a recommended item followed, else 0.0.

    Feedback names the answer it reacts to in `answer_request_id`. None when no events log
    exists yet: no feedback channel is not the same as no hits.
    """
    if not Path(events_path).is_file() or requests.empty:
        return None
    feedback = read_feedback(events_path)
    return requests["request_id"].isin(set(feedback["answer_request_id"])).astype(float)


def arm_mask(requests: pd.DataFrame, arm: Arm) -> pd.Series:
    """The requests of the log frame that belong to `arm` of a canary experiment.

    The canary's arm is the requests it answered and those it failed on (the champion answered
    them: they are the canary's errors, and the rollback rule counts them); the champion's arm is
    the rest. One definition for the canary rule and the dashboard's per-arm panel.
    """
    failed = requests["canary_error"].notna()
    return ((requests["arm"] == "canary") | failed) if arm == "canary" else ((requests["arm"] == "champion") & ~failed)


def window_end(records: pd.DataFrame) -> str:
    """One second after the latest event time of a log window: the end of the new data."""
    times = pd.to_datetime(records["event_time"].fillna(records["served_at"]), format="ISO8601", utc=True)
    return (times.max().tz_localize(None) + pd.Timedelta(seconds=1)).isoformat()
