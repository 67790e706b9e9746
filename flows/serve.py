"""Serve every flow as a deployment of one runner; the retrain deployment listens for drift.

`python -m flows.serve` is what `recsys up` and the demo start. The trigger maps the drift
event's payload onto the pipeline's parameters (all strings, matching their types). Each
deployment's dataset defaults to `settings.dataset`, so the Prefect UI's run form opens on the
data the platform was started with; the monitor and the canary's judge also run on a schedule
(`settings.monitor_interval_minutes`, 0 for none); with no canary deployed the canary run does nothing.
"""

from __future__ import annotations

from datetime import timedelta

from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger

from flows.canary import canary
from flows.monitor import DRIFT_EVENT, monitor
from flows.pipeline import pipeline
from flows.promote import promote
from flows.train import train_model
from flows.tune import tune_model
from flows.validate import validate
from recsys.settings import Settings, get_settings

RETRAIN_TRIGGER = DeploymentEventTrigger(
    name="Retrain on drift",
    description=(
        f"When the monitor emits {DRIFT_EVENT} (drift or an online hit-rate drop that no guardrail held back), "
        "run the pipeline on the data up to the window's end: GX gate, train, bless, promote."
    ),
    expect={DRIFT_EVENT},
    match={"prefect.resource.id": "recsys.model.*"},
    parameters={
        "dataset": "{{ event.payload.dataset }}",
        "train_until": "{{ event.payload.window_end }}",
        "reason": "{{ event.payload.reason }}",
    },
)


def deployments(settings: Settings) -> list[RunnerDeployment]:
    """Every flow as a deployment, with the platform's dataset as the form's default."""
    data = {"dataset": settings.dataset}
    minutes = settings.monitor_interval_minutes
    schedule = {"interval": timedelta(minutes=minutes)} if minutes > 0 else {}
    return [
        pipeline.to_deployment(name="retrain", triggers=[RETRAIN_TRIGGER], parameters=data, tags=["triggered"]),
        pipeline.to_deployment(name="pipeline", parameters=data),
        validate.to_deployment(name="validate", parameters=data),
        train_model.to_deployment(name="train", parameters=data),
        promote.to_deployment(name="promote", parameters=data),
        monitor.to_deployment(name="monitor", parameters=data, tags=["scheduled"] if schedule else [], **schedule),
        canary.to_deployment(name="canary", tags=["scheduled"] if schedule else [], **schedule),
        tune_model.to_deployment(name="tune"),
    ]


def main() -> None:
    serve(*deployments(get_settings()))


if __name__ == "__main__":
    main()
