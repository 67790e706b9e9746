"""What a search may reuse between two-stage fits: the parts that do not depend on what it varies.

The grid over N and the refits with other seeds fit the same retrievers on the same windows
each time; only the ranker (and the cut of the union) changes. Inside `reusing()` a snapshot,
and the candidate lists and features built from it, are made once per distinct input (the
interactions by content, the settings by value) and handed back after that. Outside it, as in
training and serving, nothing is kept: a retrain always fits anew.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pandas as pd

T = TypeVar("T")
_memo: dict[tuple, Any] | None = None


@contextmanager
def reusing() -> Iterator[None]:
    """Within this block, `kept` builds each distinct part once (nested blocks share the outer one's parts)."""
    global _memo
    outer = _memo
    _memo = {} if outer is None else outer
    try:
        yield
    finally:
        _memo = outer


def kept(key: Callable[[], tuple], make: Callable[[], T]) -> T:
    """`make()`, or inside `reusing()` the value made for an equal `key()` before.

    The key is a function: outside a search (training, serving) nothing is kept, so the windows
    are not hashed either.
    """
    if _memo is None:
        return make()
    k = key()
    if k not in _memo:
        _memo[k] = make()
    return _memo[k]


def fingerprint(frame: pd.DataFrame) -> str:
    """A digest of a frame's content (rows and columns in order), so equal windows share a key."""
    rows = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha1(rows.tobytes() + json.dumps(list(map(str, frame.columns))).encode()).hexdigest()


def settings_key(value: Any) -> str:
    """Settings (nested dicts of numbers and strings) as a key: equal by value, whatever the dict order."""
    return json.dumps(value, sort_keys=True, default=str)
