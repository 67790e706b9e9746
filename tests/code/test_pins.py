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


# Declared packages the code never imports by name: what each is for.
USED_WITHOUT_IMPORT = {
    "openpyxl": "pandas.read_excel of the Online Retail .xlsx",
    "psycopg2-binary": "MLflow's and Prefect's PostgreSQL backends (RECSYS_MLFLOW_BACKEND_STORE_URI)",
    "boto3": "MLflow's S3 artifact store (RECSYS_MLFLOW_ARTIFACTS_DESTINATION)",
}


def test_what_the_code_imports_is_declared_and_what_is_declared_is_used() -> None:
    """Every third-party import of recsys/ and flows/ is a declared dependency, not a transitive one, and vice versa."""
    import ast
    import sys
    from importlib.metadata import packages_distributions

    imported: set[str] = set()
    for path in [*(REPO / "recsys").rglob("*.py"), *(REPO / "flows").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"recsys", "flows", "__future__"}
    distributions = packages_distributions()
    declared = {_name(r) for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    needed = {module: {d.lower().replace("_", "-") for d in distributions.get(module, [])} for module in third_party}
    undeclared = {module: sorted(dists) for module, dists in needed.items() if not dists & declared}
    assert not undeclared, f"imported but not declared in pyproject.toml (only installed through another package): {undeclared}"
    used = set().union(*needed.values())
    unused = declared - used - set(USED_WITHOUT_IMPORT)
    assert not unused, f"declared in pyproject.toml but never imported: {sorted(unused)}"
