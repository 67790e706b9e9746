"""Run one flow in this process from the command line: `python -m flows.run <flow> key=value ...`.

The CLI (`recsys monitor`) runs flows as such children, so the library never imports
Prefect and each child starts with the platform's environment. Values are read as JSON
when they parse (`epochs=3`, `window=500`), else kept as strings.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


def flows() -> dict[str, Callable[..., Any]]:
    """Every runnable flow by its name (the same names as its deployments)."""
    from flows.monitor import monitor
    from flows.pipeline import pipeline
    from flows.promote import promote
    from flows.train import train_model
    from flows.tune import tune_model
    from flows.validate import validate

    return {"pipeline": pipeline, "validate": validate, "train": train_model, "promote": promote, "monitor": monitor, "tune": tune_model}


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """`key=value` arguments as flow parameters (JSON values where they parse)."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise SystemExit(f"expected key=value, got {pair!r}")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def main(argv: list[str]) -> None:
    name, *pairs = argv
    known = flows()
    if name not in known:
        raise SystemExit(f"unknown flow {name!r}; known: {', '.join(known)}")
    result = known[name](**parse_params(pairs))
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
