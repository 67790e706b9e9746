"""Pins live in three lists (pyproject, requirements.lock, bentofile): every exact pin must agree with the lock."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[\[=<>!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pins(requirements: list[str]) -> dict[str, str]:
    return {_name(r): r.split("==", 1)[1].strip() for r in requirements if "==" in r}


def test_exact_pins_agree_with_the_lock() -> None:
    lock = _pins([line for line in (REPO / "requirements.lock").read_text().splitlines() if line and not line.startswith((" ", "#"))])
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    bento = yaml.safe_load((REPO / "bentofile.yaml").read_text())["python"]["packages"]
    for source, pins in (("pyproject.toml", _pins(declared)), ("bentofile.yaml", _pins(bento))):
        assert pins, source
        wrong = {name: (pin, lock.get(name)) for name, pin in pins.items() if lock.get(name) != pin}
        assert not wrong, f"{source} pins differ from requirements.lock: {wrong}"
    unpinned = [_name(r) for r in declared if _name(r) not in lock]
    assert not unpinned, f"declared but not in requirements.lock: {unpinned}"
