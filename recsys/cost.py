"""What a piece of work costs in compute: wall and CPU seconds, peak memory, and a money estimate.

Why: a model 1% better and ten times dearer to train is usually the wrong choice, so every
training run logs what it cost beside what it scored (`recsys.training`), and the quality
benchmark puts both in one table. CPU time counts this process and the children it waited for
(`os.times`), so work done in threads and subprocesses is included. Peak memory is the
process's high-water mark (`VmHWM`), not the machine's. Money is CPU-hours and GPU-hours times
the configured prices (`RECSYS_PRICE_PER_CORE_HOUR`, `RECSYS_PRICE_PER_GPU_HOUR`): examples to
replace with your own, not any vendor's list price.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Cost:
    """The compute one piece of work took; `metrics()` is what MLflow logs."""

    wall_s: float
    cpu_s: float  # user + system, this process and its waited-for children
    peak_rss_gib: float
    gpu_s: float  # wall seconds with a GPU held; 0 without one
    peak_gpu_gib: float
    examples: int
    money: float  # cpu_s and gpu_s at the configured prices

    @property
    def examples_per_s(self) -> float:
        return self.examples / self.wall_s if self.wall_s > 0 else 0.0

    def metrics(self, prefix: str = "train_") -> dict[str, float]:
        values = {
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "peak_rss_gib": self.peak_rss_gib,
            "examples_per_s": self.examples_per_s,
            "cost": self.money,
        }
        if self.gpu_s > 0:
            values |= {"gpu_s": self.gpu_s, "peak_gpu_gib": self.peak_gpu_gib}
        return {f"{prefix}{k}": float(v) for k, v in values.items()}


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and the children it has waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def peak_rss_gib() -> float:
    """This process's peak resident memory so far (VmHWM on Linux, ru_maxrss elsewhere)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, kB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30


def _gpu_peak_gib() -> float | None:
    """Peak memory of the first GPU TensorFlow uses, or None without one (or without TensorFlow loaded)."""
    tf = sys.modules.get("tensorflow")
    if tf is None or not tf.config.list_logical_devices("GPU"):
        return None
    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**30


class Meter:
    """Measure a block: `with Meter() as m: ...`, then `m.cost(examples, price_core_h, price_gpu_h)`."""

    def __enter__(self) -> Meter:
        self._wall, self._cpu = time.perf_counter(), cpu_seconds()
        self.wall_s = self.cpu_s = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._wall
        self.cpu_s = cpu_seconds() - self._cpu

    def cost(self, examples: int, price_per_core_hour: float, price_per_gpu_hour: float) -> Cost:
        gpu_peak = _gpu_peak_gib()
        gpu_s = self.wall_s if gpu_peak is not None else 0.0
        money = self.cpu_s / 3600 * price_per_core_hour + gpu_s / 3600 * price_per_gpu_hour
        return Cost(self.wall_s, self.cpu_s, peak_rss_gib(), gpu_s, gpu_peak or 0.0, examples, money)
