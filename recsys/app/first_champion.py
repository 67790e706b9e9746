"""The first champion of a new platform: `recsys up` starts this beside its servers.

Importing the flows (TensorFlow, Prefect, MLflow, GX) takes as long as the servers take to
start, so this child does both at once: it imports, waits until the Prefect and MLflow
servers answer, and runs the pipeline (family `settings.first_champion_family`) only if the
registry still has no champion. Run as `python -m recsys.app.first_champion`.
"""

from __future__ import annotations

import json

from flows.pipeline import pipeline
from recsys import platform
from recsys.settings import get_settings


def wait_for_servers(timeout_s: float = 300.0) -> None:
    """Block until Prefect and MLflow answer (they start beside us); raise if they never do."""
    settings = get_settings()
    needed = [platform.prefect_server(settings), platform.mlflow_server(settings)]
    if not platform.poll(lambda: all(platform.is_healthy(spec.health_url) for spec in needed), timeout_s):
        raise TimeoutError(f"Prefect and MLflow did not answer within {timeout_s:.0f}s; see {settings.run_dir}")


def main() -> None:
    settings = get_settings()
    wait_for_servers()
    if (version := platform.champion_version(settings)) is not None:
        print(json.dumps({"trained": False, "champion": version}))
        return
    result = pipeline(dataset=settings.dataset, family=settings.first_champion_family)
    print(json.dumps({"trained": True, "result": result}, default=str))


if __name__ == "__main__":
    main()
