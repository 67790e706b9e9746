"""The load clients wrk is not: a constant-rate (open-loop) one, and a closed loop that tells
answered requests from refused ones. Both keep the latency of answered requests only and the
request ids the answers carried.

wrk is a closed loop: a connection sends its next request once the last is answered, so while
the server stalls wrk stalls too, and the requests it would have sent meanwhile are never
timed (coordinated omission). The open-loop client sends on a fixed schedule and times each
request from when it was due, so a stall shows in every request it held up. wrk2, which does
this, is not packaged in Debian. wrk also lumps refusals (503) in with errors and their fast
latencies in with the answers', which a load-shedding server makes meaningless.
Both speak HTTP/1.1 keep-alive over raw asyncio streams on uvloop: tens of microseconds of
client CPU a request, so one core offers thousands a second; each run reports what it achieved.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np
import uvloop

REFUSED = (429, 503)
REQUEST_ID = re.compile(rb'"request_id":\s*"([0-9a-f]{32})"')
TIMEOUT_S = 5.0


@dataclass(frozen=True)
class LoadResult:
    """One load run: counts by outcome, the answered requests' latencies, their request ids."""

    label: str  # "c=64" (closed loop) or "400/s" (open loop)
    seconds: float  # from the first send to the last answer
    answered: int  # 2xx
    refused: int  # 429 or 503: shed by the server, not an error
    failed: int  # any other status, a dropped connection or a timeout
    refused_without_retry_after: int
    latencies_ms: np.ndarray  # answered only; open loop: from when each request was due
    request_ids: frozenset[str]
    client_lag_p99_ms: float = float("nan")  # open loop: how late the client itself started due requests

    @property
    def completed_rps(self) -> float:
        """Requests that got any answer, a second: what the client achieved."""
        return (self.answered + self.refused + self.failed) / self.seconds

    def p(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if len(self.latencies_ms) else float("nan")

    def row(self, name: str) -> str:
        return (
            f"{name:<12} {self.label:<8} {self.completed_rps:>7.0f} req/s done  answered {self.answered:>6}  refused {self.refused:>6}  "
            f"failed {self.failed}  p50 {self.p(50):>7.2f} ms  p99 {self.p(99):>7.2f} ms (answered)"
            + ("" if np.isnan(self.client_lag_p99_ms) else f"  client lag p99 {self.client_lag_p99_ms:.2f} ms")
        )


def requests(url: str, path: str, bodies: list[str]) -> tuple[str, int, list[bytes]]:
    """Host, port and the raw HTTP/1.1 POSTs of `bodies` to `path` (built once, sent many times)."""
    parts = urlsplit(url)
    raw = [
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\nContent-Length: {len(b.encode())}\r\n\r\n{b}".encode()
        for b in bodies
    ]
    return parts.hostname or "127.0.0.1", parts.port or 80, raw


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _Tally:
    """What a run saw, added to by every connection (one event loop: no locks)."""

    def __init__(self, collect_ids: bool) -> None:
        self.collect_ids = collect_ids
        self.latencies: list[float] = []
        self.ids: set[str] = set()
        self.refused = self.failed = self.bare_refusals = 0

    def add(self, status: int, retry_after: bool, body: bytes, latency_s: float) -> None:
        if 200 <= status < 300:
            self.latencies.append(latency_s * 1e3)
            if self.collect_ids:
                self.ids.update(m.decode() for m in REQUEST_ID.findall(body))
        elif status in REFUSED:
            self.refused += 1
            self.bare_refusals += not retry_after
        else:
            self.failed += 1

    def result(self, label: str, seconds: float, lags_ms: list[float] | None = None) -> LoadResult:
        lat = np.asarray(self.latencies)
        lag = float(np.percentile(lags_ms, 99)) if lags_ms else float("nan")
        return LoadResult(label, seconds, len(lat), self.refused, self.failed, self.bare_refusals, lat, frozenset(self.ids), lag)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bool, bytes]:
    """Send one request on a kept-alive connection; its status, whether it said Retry-After, its body."""
    writer.write(request)
    async with asyncio.timeout(TIMEOUT_S):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = dict(line.split(b":", 1) for line in lines[1:] if b":" in line)
        headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
        body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return int(lines[0].split()[1]), b"retry-after" in headers, body


async def _counted(host: str, port: int, conn: Connection, request: bytes, tally: _Tally, since: float) -> Connection:
    """One request on `conn`, counted in `tally` with its latency from `since`; a broken connection is counted and replaced."""
    reader, writer = conn
    try:
        status, retry_after, body = await _exchange(reader, writer, request)
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        tally.failed += 1
        writer.close()
        return await asyncio.open_connection(host, port)
    tally.add(status, retry_after, body, asyncio.get_running_loop().time() - since)
    return conn


async def _closed(host: str, port: int, raw: list[bytes], concurrency: int, seconds: float, collect_ids: bool) -> LoadResult:
    loop = asyncio.get_running_loop()
    tally, start = _Tally(collect_ids), loop.time()
    stop = start + seconds

    async def connection(n: int) -> None:
        conn = await asyncio.open_connection(host, port)
        while loop.time() < stop:
            conn = await _counted(host, port, conn, raw[n % len(raw)], tally, loop.time())
            n += concurrency
        conn[1].close()

    await asyncio.gather(*(connection(i) for i in range(concurrency)))
    return tally.result(f"c={concurrency}", loop.time() - start)


async def _open(host: str, port: int, raw: list[bytes], rate: float, seconds: float, connections: int, collect_ids: bool) -> LoadResult:
    loop = asyncio.get_running_loop()
    tally = _Tally(collect_ids)
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(await asyncio.open_connection(host, port))

    async def one(due: float, request: bytes) -> None:
        conn = await idle.get()  # waiting for a free connection counts: the clock started at `due`
        idle.put_nowait(await _counted(host, port, conn, request, tally, due))

    start = loop.time() + 0.05
    sends, lags_ms = [], []
    for i in range(int(rate * seconds)):
        due = start + i / rate
        if (wait := due - loop.time()) > 0:
            await asyncio.sleep(wait)
        lags_ms.append((loop.time() - due) * 1e3)  # the client's own delay: were it large, it would be the bottleneck
        sends.append(asyncio.ensure_future(one(due, raw[i % len(raw)])))  # every due request starts now, late or not
    await asyncio.gather(*sends)
    while not idle.empty():
        idle.get_nowait()[1].close()
    return tally.result(f"{rate:.0f}/s", loop.time() - start, lags_ms)


def closed_loop(url: str, path: str, bodies: list[str], concurrency: int, seconds: float, collect_ids: bool = True) -> LoadResult:
    """`concurrency` connections, each sending its next request when the last is answered."""
    host, port, raw = requests(url, path, bodies)
    return uvloop.run(_closed(host, port, raw, concurrency, seconds, collect_ids))


def open_loop(url: str, path: str, bodies: list[str], rate: float, seconds: float, connections: int = 64, collect_ids: bool = True) -> LoadResult:
    """A request due every 1/`rate` s, sent on whichever of `connections` is free, timed from when it was due."""
    host, port, raw = requests(url, path, bodies)
    return uvloop.run(_open(host, port, raw, rate, seconds, connections, collect_ids))
