"""A model family is named exactly: a typo must fail, not silently train popularity."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.settings import Settings
from recsys.training import FAMILIES, build_model


def test_every_family_builds_and_an_unknown_one_is_refused(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    for family in FAMILIES:
        model, _ = build_model(family, settings, None, None)
        assert model.family == family
    with pytest.raises(ValueError, match="unknown model family 'eas'"):
        build_model("eas", settings, None, None)
