"""Tombstones: the forgotten users of this install, as keyed hashes, so no load brings them back.

Why a list at all: some sources cannot be edited (the Online Retail copy bundled with recsys, a
publisher's CSV), and a store may be appended to again with an old export that still holds
them. So every load (`recsys.data.ingest.load_dataset`, and the ingest of a named dataset into
a store) drops the users listed here, and the service answers them like strangers.

Why keyed hashes: the list must not itself be a list of the people who asked to be forgotten.
It holds HMAC-SHA256 of each id under the audit key (`recsys.keys.audit_key`), the same hash the
erasure audit log records, and never the id or its log pseudonym (made with the log key).

The file, `RECSYS_HOME/privacy/tombstones`, has one hex hash a line and is replaced whole
(written beside it, then renamed), so a reader sees the old list or the new one. The service
watches its identity (inode and mtime) on each request: replacing it is how an erasure tells
every worker at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from recsys.keys import audit_key
from recsys.schemas import USER_COL
from recsys.settings import Settings

FILE = "tombstones"


def subject_hash(user_id: str, key: bytes) -> str:
    """The keyed hash under which a forgotten user is listed and audited (hex HMAC-SHA256)."""
    return hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()


def path_of(settings: Settings) -> Path:
    return settings.privacy_dir / FILE


def read_hashes(path: Path) -> frozenset[str]:
    """The hashes listed in `path` (none when there is no file)."""
    try:
        return frozenset(line for line in path.read_text().split() if line)
    except FileNotFoundError:
        return frozenset()


def add(path: Path, *hashes: str) -> None:
    """List `hashes` beside those listed; the file is always replaced, even when none is new.

    The replacement (a new file renamed into place, so readers see the old list or the new one,
    whole) is the signal the service's workers watch, so adding a listed hash again tells them
    to look again. A lock file serialises writers, so two erasures never lose each other's hash.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(f"{h}\n" for h in sorted(read_hashes(path) | set(hashes))))
        os.replace(tmp, path)
    finally:
        os.close(fd)


def bury(settings: Settings, user_id: str) -> str:
    """List `user_id` as forgotten, in milliseconds: every load and every worker forgets them now.

    Returns the audit hash. The service calls it before answering POST /admin/forget (it needs
    neither MLflow nor the data stores) and leaves the rest of the erasure (recsys.privacy)
    to run after the answer.
    """
    subject = subject_hash(user_id, audit_key(settings))
    add(path_of(settings), subject)
    return subject


@dataclass(frozen=True)
class Tombstones:
    """The forgotten users of an install, checked by hashing a candidate id with the audit key."""

    hashes: frozenset[str]
    key: bytes = b""

    @classmethod
    def of(cls, settings: Settings) -> Tombstones:
        """The install's list; the audit key is read only when the list is not empty."""
        hashes = read_hashes(path_of(settings))
        return cls(hashes, audit_key(settings) if hashes else b"")

    def __contains__(self, user_id: str) -> bool:
        return bool(self.hashes) and subject_hash(user_id, self.key) in self.hashes

    def drop(self, interactions: pd.DataFrame) -> pd.DataFrame:
        """`interactions` without the rows of listed users (each distinct id is hashed once)."""
        if not self.hashes or interactions.empty:
            return interactions
        users = pd.unique(interactions[USER_COL].dropna())
        gone = [u for u in users if subject_hash(str(u), self.key) in self.hashes]
        if not gone:
            return interactions
        return interactions[~interactions[USER_COL].isin(gone)].reset_index(drop=True)


class TombstoneWatch:
    """A service worker's view of the list, re-read whenever the file is replaced.

    `changed()` costs one stat(2), so a worker calls it on every request: an erasure's rename
    reaches every worker at its next request, with no message between processes.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._path = path_of(settings)  # once: building it from the settings cost half of each call
        self._seen: tuple[int, int] | None = None  # (inode, mtime) of the file last read; None: no file
        self.current = Tombstones(frozenset())

    def changed(self) -> bool:
        """True (after re-reading it) when the file was replaced since the last call."""
        try:
            stat = os.stat(self._path)
            seen: tuple[int, int] | None = (stat.st_ino, stat.st_mtime_ns)
        except FileNotFoundError:
            seen = None
        if seen == self._seen:
            return False
        self._seen = seen
        self.current = Tombstones.of(self.settings)  # the audit key is read only once someone is listed
        return True

    def now(self) -> Tombstones:
        """The list as the file holds it now (one stat; read again only when it was replaced)."""
        self.changed()
        return self.current
