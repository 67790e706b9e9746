"""The processes this tool starts: their pid files, their identity, and how to stop them.

A server's pid file (`settings.run_dir/<name>.pid`) holds its pid, its start time and the port
it holds. The start time is its identity: once a process has exited the system may give its pid
to another, and a pid whose process started at another time is never taken for the server nor
signalled. Each server leads its own process session, so `stop` ends its whole process group.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from recsys.settings import Settings


@dataclass(frozen=True)
class ServerRecord:
    """What a pid file holds: the process, when it started (its identity) and the port it holds."""

    pid: int
    started: float | None  # None in a pid file written before start times were kept
    port: int | None  # None: it holds no port of its own (the flow runner)


def pid_file(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.pid"


def log_path(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.log"


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
        return proc.status() != psutil.STATUS_ZOMBIE and (record.started is None or abs(proc.create_time() - record.started) < 0.01)
    except psutil.Error:
        return False


def write_record(settings: Settings, name: str, proc: subprocess.Popen, port: int | None) -> None:
    """Write the pid file of `proc`, just started as server `name`."""
    record = ServerRecord(proc.pid, psutil.Process(proc.pid).create_time(), port)
    pid_file(settings, name).write_text(json.dumps(asdict(record)))


def server_record(settings: Settings, name: str) -> ServerRecord | None:
    """The record of server `name` started in `settings.home`, if it still runs (else its pid file goes)."""
    path = pid_file(settings, name)
    try:
        data = json.loads(path.read_text())
        data = {"pid": data} if isinstance(data, int) else data  # a plain pid: written by an earlier version
        record = ServerRecord(int(data["pid"]), data.get("started"), data.get("port"))
    except (OSError, ValueError, KeyError, TypeError):
        record = None
    if record is not None and alive(record):
        return record
    path.unlink(missing_ok=True)
    return None


def running_pid(settings: Settings, name: str) -> int | None:
    """The pid of a server this tool started and that is still alive, else None."""
    record = server_record(settings, name)
    return record.pid if record else None


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
    pid_file(settings, name).unlink(missing_ok=True)
    return True
