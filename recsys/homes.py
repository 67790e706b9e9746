"""The per-user record of the recsys homes that have started servers on this machine.

A server's pid file lives in its own home (`settings.run_dir`), so a command run under another
home (the loop's `.recsys/loop`, a test's tmp folder, a second checkout) cannot see it. Every
start therefore also records its home here, in `settings.homes_dir` (one small file per home,
so concurrent starts never overwrite each other's entry): `recsys down` stops the servers of
every recorded home, and `recsys up` names the home whose server holds a port it needs.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from recsys.processes import server_record
from recsys.settings import Settings


def _entry(settings: Settings, home: Path) -> Path:
    """The file that records `home` (named by a digest of its resolved path)."""
    return settings.homes_dir / f"{hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]}.json"


def record(settings: Settings) -> None:
    """Note that `settings.home` has started a server (atomic: a reader never sees half a file)."""
    settings.homes_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=settings.homes_dir, suffix=".tmp")
    with os.fdopen(fd, "w") as out:
        json.dump({"home": str(settings.home.resolve())}, out)
    os.replace(tmp, _entry(settings, settings.home))


def recorded(settings: Settings) -> list[Path]:
    """Every recorded home, sorted; an unreadable entry is skipped (it names no home)."""
    homes = set()
    for path in settings.homes_dir.glob("*.json"):
        try:
            homes.add(Path(json.loads(path.read_text())["home"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(homes)


def rooted(settings: Settings, home: Path) -> Settings:
    """`settings` with `home` as its home: that home's run folder and pid files."""
    return settings.model_copy(update={"home": home})


def holder(settings: Settings, port: int) -> tuple[Path, str] | None:
    """(home, server name) of a live server that another recorded home started on `port`, if any."""
    for home in recorded(settings):
        if home == settings.home.resolve():
            continue
        other = rooted(settings, home)
        for path in sorted(other.run_dir.glob("*.pid")):
            record = server_record(other, path.stem)
            if record is not None and record.port == port:
                return home, path.stem
    return None


def forget(settings: Settings, home: Path) -> None:
    """Drop `home` from the record (its servers are all stopped)."""
    _entry(settings, home).unlink(missing_ok=True)
