"""One way to stand up the BentoML service for integration tests: a private state folder,
a champion published into its store by the caller, `bentoml serve` on a free loopback port.

The service tests differ only in how the champion gets into the store (blessed two-tower
promotion, or a popularity model exported directly), so that step is the one parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from recsys import platform
from recsys.data.ingest import Dataset
from recsys.data.split import Split, temporal_user_split
from recsys.data.synthetic import make_synthetic
from recsys.settings import Settings, get_settings
from tests.conftest import SMALL_TRAINING, free_port


@dataclass(frozen=True)
class Served:
    """A running service and what it was built from."""

    url: str
    settings: Settings
    data: Dataset
    split: Split


Publish = Callable[[Settings, Dataset, Split], None]


@contextmanager
def served_champion(home: Path, publish: Publish, extra_env: dict[str, str] | None = None, data: Dataset | None = None) -> Iterator[Served]:
    """Settings rooted at `home`, a champion `publish`ed from `data` (default: synthetic), served until exit.

    `extra_env` goes to the server process only (the admin token, say), so a test can also
    check the service with it unset.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECSYS_HOME", str(home))
        mp.setenv("BENTOML_HOME", str(home / "bentoml"))
        mp.setenv("RECSYS_SERVE_PORT", str(free_port()))
        for name, value in SMALL_TRAINING.items():
            mp.setenv(f"RECSYS_{name.upper()}", str(value))
        get_settings.cache_clear()
        settings = get_settings()
        data = data if data is not None else make_synthetic()
        split = temporal_user_split(data.interactions)
        publish(settings, data, split)
        spec = platform.bentoml_server(settings)
        platform.start(spec, settings, extra_env=extra_env)
        try:
            yield Served(spec.url, settings, data, split)
        finally:
            platform.stop("bentoml", settings)
            get_settings.cache_clear()
