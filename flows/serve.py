"""Serve every flow as a deployment of one runner; the retrain deployment listens for drift.

`python -m flows.serve` is what `recsys up` and the demo start. The trigger maps the drift
event's payload onto the pipeline's parameters (all strings, matching their types).
"""

from __future__ import annotations

from prefect import serve
from prefect.events import DeploymentEventTrigger

from flows.monitor import DRIFT_EVENT, monitor
from flows.pipeline import pipeline
from flows.promote import promote
from flows.train import train_model
from flows.validate import validate

RETRAIN_TRIGGER = DeploymentEventTrigger(
    expect={DRIFT_EVENT},
    match={"prefect.resource.id": "recsys.model.*"},
    parameters={
        "dataset": "{{ event.payload.dataset }}",
        "train_until": "{{ event.payload.window_end }}",
        "reason": "{{ event.payload.reason }}",
    },
)


def main() -> None:
    serve(
        pipeline.to_deployment(name="retrain", triggers=[RETRAIN_TRIGGER]),
        pipeline.to_deployment(name="pipeline"),
        validate.to_deployment(name="validate"),
        train_model.to_deployment(name="train"),
        promote.to_deployment(name="promote"),
        monitor.to_deployment(name="monitor"),
    )


if __name__ == "__main__":
    main()
