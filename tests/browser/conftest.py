"""One real platform for every browser test: `recsys up` on free loopback ports, small data.

The session fixture runs the real CLI (`recsys up`, which trains a first champion on a small
synthetic shop through the pipeline flow), replays traffic (`recsys simulate`) and judges it
(`recsys monitor`) so that every UI has something to show; `recsys down --home` ends it. Pages are
1280x800 Chromium (Debian's, driven by Playwright); each test saves a screenshot into
RECSYS_SCREENSHOTS_DIR when it is set (the README's images: docs/screenshots), else into tmp.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from recsys.data.synthetic import make_synthetic
from recsys.settings import Settings
from tests.conftest import SMALL_TRAINING, free_port

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
RECSYS = str(Path(sys.executable).with_name("recsys"))
expect.set_options(timeout=30_000)  # pages of a loaded 2-core machine can take seconds to draw


@dataclass(frozen=True)
class Platform:
    """The running platform as the tests see it: its settings, environment and `up` output."""

    settings: Settings
    env: dict[str, str]
    up_output: str

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run `recsys <args>` against this platform."""
        return subprocess.run([RECSYS, *args], env=self.env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def platform_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """`recsys up` in a private home on free ports; traffic replayed and monitored once."""
    root = tmp_path_factory.mktemp("platform")
    shop = make_synthetic()
    shop.interactions.to_parquet(root / "shop.parquet")
    shop.items.to_parquet(root / "shop.items.parquet")
    overrides = {
        "RECSYS_HOME": str(root / "home"),
        "RECSYS_DATASET": str(root / "shop.parquet"),
        "RECSYS_PREFECT_PORT": str(free_port()),
        "RECSYS_MLFLOW_PORT": str(free_port()),
        "RECSYS_SERVE_PORT": str(free_port()),
        "RECSYS_EVIDENTLY_PORT": str(free_port()),
        "RECSYS_STATE_DIR": os.environ["RECSYS_STATE_DIR"],  # this session's record of servers (tests/conftest.py)
        **{f"RECSYS_{k.upper()}": str(v) for k, v in SMALL_TRAINING.items()},
        # The synthetic shop's planted signal is one the two-tower learns; untuned iALS loses to
        # popularity there, so the default first champion (iALS) would not be blessed.
        "RECSYS_FIRST_CHAMPION_FAMILY": "two_tower",
        "RECSYS_CANARY_SHARE": "0.5",  # a canary deployed by a test answers half the users: both arms get traffic
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECSYS_", "PREFECT_", "MLFLOW_", "BENTOML_"))}
    env.update(overrides, COLUMNS="200")  # a wide terminal: rich tables print URLs whole
    settings = Settings(**{k.removeprefix("RECSYS_").lower(): v for k, v in overrides.items()})
    up = subprocess.run([RECSYS, "up"], env=env, capture_output=True, text=True, timeout=900)
    platform = Platform(settings, env, up.stdout + up.stderr)
    try:
        assert up.returncode == 0, platform.up_output[-3000:]
        replayed = platform.cli("simulate", "--requests", "200")
        assert replayed.returncode == 0, replayed.stderr[-2000:]
        judged = platform.cli("monitor", "--window", "200")
        assert judged.returncode == 0, judged.stderr[-2000:]
        yield platform
    finally:
        subprocess.run([RECSYS, "down", "--home", overrides["RECSYS_HOME"]], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium for one test file, closed after it.

    Playwright's sync API keeps an asyncio loop running in the main thread while it is open;
    Prefect's sync calls made under a running loop return coroutines instead of results, so the
    loop must end with the file's last test, before any Prefect test that runs after it.
    """
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()


@pytest.fixture
def screenshot(tmp_path: Path):
    """`screenshot(page, name)`: save a PNG where the README's images live, when asked to."""
    folder = Path(os.environ.get("RECSYS_SCREENSHOTS_DIR", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)

    def take(page: Page, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path))
        assert path.stat().st_size > 10_000  # a rendered page, not a blank one
        return path

    return take
