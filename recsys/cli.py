"""`recsys`: the command line for people (the Makefile calls the same commands).

Commands that orchestrate flows run them in a child process (`python -m flows.<name>`), so
this library never imports Prefect and each child starts with the servers' environment.
"""

from __future__ import annotations

import os
import subprocess
import sys

import typer

from recsys import platform
from recsys.settings import get_settings

app = typer.Typer(help="recsys: an MLOps-managed recommender (Prefect, GX, Keras, MLflow, BentoML, Evidently).")


def _demo_env() -> dict[str, str]:
    settings = get_settings()
    env = {**os.environ, **platform.server_env(settings)}
    if settings.mlflow_tracking_uri is None:  # the demo tracks through the MLflow server (its UI)
        env["RECSYS_MLFLOW_TRACKING_URI"] = platform.mlflow_server(settings).url
        env["MLFLOW_TRACKING_URI"] = env["RECSYS_MLFLOW_TRACKING_URI"]
    return env


@app.command()
def demo() -> None:
    """Run the whole loop on Online Retail with local servers, and print where to look."""
    raise typer.Exit(subprocess.call([sys.executable, "-m", "flows.demo"], env=_demo_env()))


@app.command()
def down() -> None:
    """Stop every server that `recsys demo` or `recsys up` started."""
    settings = get_settings()
    for name in ("bentoml", "runner", "mlflow", "prefect"):
        if platform.stop(name, settings):
            typer.echo(f"stopped {name}")


@app.command()
def status() -> None:
    """Say which local servers are up."""
    settings = get_settings()
    specs = [platform.prefect_server(settings), platform.mlflow_server(settings), platform.bentoml_server(settings)]
    for spec in specs:
        typer.echo(f"{spec.name:8s} {'up  ' if platform.is_healthy(spec.health_url) else 'down'} {spec.url}")
    typer.echo(f"{'runner':8s} {'up  ' if platform.running_pid(settings, 'runner') else 'down'}")


if __name__ == "__main__":
    app()
