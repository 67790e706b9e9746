"""One table of model families: every consumer reads it, and a typo fails before any data loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
from typer.testing import CliRunner

from recsys.models.families import CANDIDATES, DISTRIBUTED, FAMILIES, NAMES, TUNABLE, by_name
from recsys.settings import CandidateFamily, Settings


def test_every_family_builds_and_an_unknown_one_is_refused(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    for name in NAMES:
        model, hp = by_name(name).build(settings)
        assert model.family == name
        assert {key: hp[key] for key in FAMILIES[name].defaults} == {key: getattr(settings, key) for key in FAMILIES[name].defaults}
    with pytest.raises(ValueError, match="unknown model family 'eas'; known: two_tower, popularity, seq_two_tower, ease, ials, item_knn, two_stage"):
        by_name("eas")


def test_params_override_the_settings_defaults(tmp_path: Path) -> None:
    model, hp = by_name("two_tower").build(Settings(home=tmp_path, epochs=7), {"epochs": 2})
    assert hp["epochs"] == 2 and model.params["epochs"] == 2


def test_the_settings_candidates_the_flows_and_the_worker_follow_the_table() -> None:
    from flows.train import train_model
    from flows.tune import tune_model

    assert set(get_args(CandidateFamily)) == set(CANDIDATES)  # settings import nothing, so they restate it
    assert "popularity" not in CANDIDATES
    # what the Prefect UI's run forms offer: the flows' parameter schemas
    assert tuple(train_model.parameters.properties["family"]["enum"]) == NAMES
    assert tuple(tune_model.parameters.properties["family"]["enum"]) == TUNABLE
    assert set(TUNABLE) == {"ease", "ials", "item_knn", "seq_two_tower", "two_stage"}
    assert DISTRIBUTED == ("seq_two_tower",)


def test_the_cli_refuses_an_unknown_family_before_loading_data(tmp_path: Path) -> None:
    from recsys.app.cli import app

    result = CliRunner().invoke(app, ["train", "--family", "eas", "--dataset", str(tmp_path / "missing.csv")])
    assert result.exit_code == 2  # a usage error: the missing dataset was never opened
    assert "eas" in result.output and "item_knn" in result.output and "missing.csv" not in result.output


def test_asking_for_the_names_imports_neither_keras_nor_the_models() -> None:
    code = "import sys, recsys.models.families; print(sorted(m for m in ('keras', 'tensorflow', 'recsys.models.ease') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
