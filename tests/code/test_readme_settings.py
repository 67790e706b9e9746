"""The README's configuration table lists every setting with its env var and default."""

from __future__ import annotations

from pathlib import Path

from recsys.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented_with_its_default() -> None:
    text = README.read_text()
    for name, field in Settings.model_fields.items():
        assert f"| `RECSYS_{name.upper()}` | `{field.default}` |" in text, f"README lacks RECSYS_{name.upper()} (default {field.default})"
