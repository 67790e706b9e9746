"""Compute cost: CPU seconds count this process and its children; money follows the prices."""

from __future__ import annotations

import subprocess
import sys

import pytest

from recsys.cost import Meter


def _spin(seconds: float) -> None:
    import time

    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_meter_counts_own_and_child_cpu_and_prices_it() -> None:
    with Meter() as own:
        _spin(0.3)
    with Meter() as child:
        subprocess.run([sys.executable, "-c", "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"], check=True)
    assert own.cpu_s >= 0.25 and child.cpu_s >= 0.25  # a child's CPU time is the parent's cost too
    cost = own.cost(1000, price_per_core_hour=3600.0, price_per_gpu_hour=0.0)  # one unit per core-second
    assert cost.money == pytest.approx(own.cpu_s) and cost.gpu_s == 0.0
    assert cost.examples_per_s == pytest.approx(1000 / own.wall_s)
    assert set(cost.metrics()) == {"train_wall_s", "train_cpu_s", "train_peak_rss_gib", "train_examples_per_s", "train_cost"}


def test_peak_rss_grows_with_a_large_allocation() -> None:
    """In a fresh process: the suite's own high-water mark could hide a new allocation."""
    code = (
        "from recsys.cost import peak_rss_gib\n"
        "before = peak_rss_gib()\n"
        "block = bytearray(300 * 2**20)\n"
        "block[::4096] = b'x' * len(block[::4096])\n"
        "print(before, peak_rss_gib())"
    )
    before, after = map(float, subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split())
    assert after - before >= 0.25  # 300 MiB touched
