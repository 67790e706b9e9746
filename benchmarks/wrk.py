"""Drive an HTTP endpoint with wrk and read back requests/s, latency percentiles and errors.

A Lua script posts JSON bodies drawn round-robin from a fixed list (so every run sends the
same traffic) and prints one JSON summary line at the end, since wrk's own text report has
no p95 and spreads errors over several lines. Refusals (429, 503: a service shedding load)
are counted apart from errors, and requests/s counts answered requests only.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {%(bodies)s}
local n = 0
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args) refused = 0 end
request = function()
  n = n + 1
  return wrk.format(nil, "%(path)s", nil, bodies[(n %% #bodies) + 1])
end
response = function(status, headers, body)
  if status == 429 or status == 503 then refused = refused + 1 end
end
done = function(summary, latency, requests)
  local e, shed = summary.errors, 0
  for _, thread in ipairs(threads) do shed = shed + thread:get("refused") end
  io.write(string.format('WRKJSON {"requests": %%d, "seconds": %%f, "p50": %%d, "p95": %%d, "p99": %%d, ' ..
    '"connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d, "refused": %%d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), e.connect, e.read, e.write, e.status, e.timeout, shed))
end
"""


@dataclass(frozen=True)
class WrkResult:
    concurrency: int
    requests: int  # completed responses, any status
    rps: float  # answered (not refused) a second
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int  # socket errors, timeouts and non-2xx/3xx answers other than refusals
    refused: int = 0  # 429 or 503 (latencies include them: fast answers, if any)

    def row(self, name: str) -> str:
        return (
            f"{name:<8} c={self.concurrency:<3} {self.rps:>9.0f} req/s  p50 {self.p50_ms:>7.2f} ms  "
            f"p95 {self.p95_ms:>7.2f} ms  p99 {self.p99_ms:>7.2f} ms  errors {self.errors}  refused {self.refused}"
        )


def lua_script(bodies: list[str], path: str) -> Path:
    """A wrk script that posts `bodies` round-robin to `path`."""
    quoted = ", ".join(json.dumps(b) for b in bodies)  # JSON string syntax is valid Lua here
    script = Path(tempfile.mkstemp(suffix=".lua", prefix="wrk-")[1])
    script.write_text(LUA % {"bodies": quoted, "path": path})
    return script


def run(base_url: str, script: Path, concurrency: int, seconds: int) -> WrkResult:
    """One wrk run: `concurrency` connections over min(concurrency, 2) threads."""
    threads = min(concurrency, 2)
    cmd = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script), base_url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("WRKJSON "))
    s = json.loads(line.removeprefix("WRKJSON "))
    errors = s["connect"] + s["read"] + s["write"] + s["status"] - s["refused"] + s["timeout"]
    answered_rps = (s["requests"] - s["refused"]) / s["seconds"]
    return WrkResult(concurrency, s["requests"], answered_rps, s["p50"] / 1e3, s["p95"] / 1e3, s["p99"] / 1e3, errors, s["refused"])
