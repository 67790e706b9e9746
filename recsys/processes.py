"""The servers this tool starts: the per-user record of each, its identity, and how to stop it.

Each started server is recorded in `settings.servers_dir`, a per-user folder outside every home
(one small file per home and server, so concurrent starts never overwrite each other): its home,
pid, start time and port. The record lives outside the home so that a command run under any
home finds it (the loop runs under `.recsys/loop`, a test under its tmp folder): `recsys down`
stops every recorded server, `recsys up` names the home whose server holds a port it needs,
and a server outlives the deletion of its home without being lost. The start time is the
process's identity: once a process has exited the system may give its pid to another, and a
pid whose process started at another time is never taken for the server nor signalled. Each
server leads its own process session, so `stop` ends its whole process group.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from recsys.settings import Settings


@dataclass(frozen=True)
class ServerRecord:
    """A started server: its home and name, the process, when it started (its identity), its port."""

    home: str
    name: str
    pid: int
    started: float
    port: int | None  # None: it holds no port of its own (the flow runner)


def log_path(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.log"


def _record_file(settings: Settings, name: str) -> Path:
    """Where server `name` of `settings.home` is recorded (named by a digest of the home's path)."""
    digest = hashlib.sha256(str(settings.home.resolve()).encode()).hexdigest()[:16]
    return settings.servers_dir / f"{digest}-{name}.json"


def reap(pid: int) -> None:
    """Collect an exited child of this process, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def alive(record: ServerRecord) -> bool:
    """Whether the recorded process still runs and is the one recorded (not a reused pid)."""
    reap(record.pid)
    try:
        proc = psutil.Process(record.pid)
        return proc.status() != psutil.STATUS_ZOMBIE and abs(proc.create_time() - record.started) < 0.01
    except psutil.Error:
        return False


def write_record(settings: Settings, name: str, proc: subprocess.Popen, port: int | None) -> None:
    """Record `proc`, just started as server `name` of `settings.home` (atomically: never half a file)."""
    record = ServerRecord(str(settings.home.resolve()), name, proc.pid, psutil.Process(proc.pid).create_time(), port)
    settings.servers_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=settings.servers_dir, suffix=".tmp")
    with os.fdopen(fd, "w") as out:
        json.dump(asdict(record), out)
    os.replace(tmp, _record_file(settings, name))


def _read(path: Path) -> ServerRecord | None:
    """The record in `path` if its server still runs; a record of an ended server is removed."""
    try:
        record = ServerRecord(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        record = None
    if record is not None and alive(record):
        return record
    path.unlink(missing_ok=True)
    return None


def server_record(settings: Settings, name: str) -> ServerRecord | None:
    """The record of server `name` of `settings.home`, if it still runs."""
    return _read(_record_file(settings, name))


def recorded(settings: Settings) -> list[ServerRecord]:
    """Every recorded server that still runs, whatever its home."""
    return [record for path in sorted(settings.servers_dir.glob("*.json")) if (record := _read(path))]


def running_pid(settings: Settings, name: str) -> int | None:
    """The pid of a server this tool started and that is still alive, else None."""
    record = server_record(settings, name)
    return record.pid if record else None


def forget(settings: Settings, name: str) -> None:
    """Drop the record of server `name` of `settings.home` (it has exited)."""
    _record_file(settings, name).unlink(missing_ok=True)


def listeners(port: int) -> str:
    """' (pid N: command)' for each local process listening on `port` that this user may see, else ''."""
    try:
        pids = {c.pid for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid}
        return "".join(f" (pid {pid}: {' '.join(' '.join(psutil.Process(pid).cmdline()).split())[:120]})" for pid in sorted(pids))
    except psutil.Error:
        return ""


def stop(name: str, settings: Settings, timeout: float = 20.0) -> bool:
    """Stop a server started by this tool (its whole process group). True if one was running."""
    record = server_record(settings, name)
    if record is None:
        return False
    try:
        os.killpg(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(record):
            if time.monotonic() > deadline:
                os.killpg(record.pid, signal.SIGKILL)
                break
            time.sleep(0.2)
    except ProcessLookupError:
        pass
    forget(settings, name)
    return True
