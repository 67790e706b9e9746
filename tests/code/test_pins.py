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


def test_the_bento_ships_every_project_module_the_service_imports() -> None:
    """`bentoml build` packs only bentofile's `include`: a module the service imports at start must be in it."""
    import fnmatch
    import subprocess
    import sys

    code = "import sys, recsys.serving.service; print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] == 'recsys')))"
    modules = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    def source(module: str) -> str:
        path = Path(*module.split("."))
        return str(path.with_suffix(".py")) if (REPO / path.with_suffix(".py")).exists() else str(path / "__init__.py")

    paths = [source(m) for m in modules]
    include = yaml.safe_load((REPO / "bentofile.yaml").read_text())["include"]
    missing = [p for p in paths if not any(fnmatch.fnmatch(p, pattern) for pattern in include)]
    assert "recsys/serving/service.py" in paths and not missing, missing
