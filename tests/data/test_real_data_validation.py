"""GX on real data: the bundled Online Retail, cleaned by the loader, passes the data gate."""

from __future__ import annotations

from pathlib import Path

from recsys.data.ingest import load_online_retail
from recsys.validation import gate, validate_dataset


def test_online_retail_passes_the_gate(tmp_path: Path) -> None:
    ds = load_online_retail()
    result = validate_dataset(ds.interactions, ds.items, tmp_path / "docs")
    assert result.success, result.failed
    gate(result)
    assert result.statistics["interactions"] == {"evaluated": 17, "successful": 17, "unsuccessful": 0}
    assert result.statistics["items"] == {"evaluated": 10, "successful": 10, "unsuccessful": 0}
    assert result.docs_index is not None and result.docs_index.is_file()
