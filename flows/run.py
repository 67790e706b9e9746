"""Run one flow in this process from the command line: `python -m flows.run <flow> [--result FILE] key=value ...`.

The CLI (`recsys monitor`) runs flows as such children, so the library never imports
Prefect and each child starts with the platform's environment. Values are read as JSON
when they parse (`epochs=3`, `window=500`), else kept as strings. `--result FILE` writes the
flow's typed result there as JSON (pydantic), for the parent to read back into the same type
instead of parsing the child's output.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def flows() -> dict[str, Callable[..., Any]]:
    """Every runnable flow by its name (the same names as its deployments)."""
    from flows.canary import canary
    from flows.monitor import monitor
    from flows.pipeline import pipeline
    from flows.promote import promote
    from flows.train import train_model
    from flows.tune import tune_model
    from flows.validate import validate

    return {"pipeline": pipeline, "validate": validate, "train": train_model, "promote": promote, "monitor": monitor, "canary": canary, "tune": tune_model}


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
    from pydantic import TypeAdapter

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("flow", choices=sorted(flows()))
    parser.add_argument("--result", type=Path, help="write the flow's result here as JSON")
    parser.add_argument("params", nargs="*", metavar="key=value")
    args = parser.parse_intermixed_args(argv)  # options may sit between the flow and its key=value pairs
    result = flows()[args.flow](**parse_params(args.params))
    if args.result:
        args.result.write_bytes(TypeAdapter(type(result)).dump_json(result))


if __name__ == "__main__":
    main(sys.argv[1:])
