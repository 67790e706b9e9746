"""The gate on a store: new files validated once, a corrupt new month caught, the good ones left alone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recsys.data import store
from recsys.data.synthetic import make_synthetic
from recsys.schemas import TS_COL, USER_COL, WEIGHT_COL
from recsys.validation_store import LEDGER, validate_store


def test_each_file_is_validated_once_and_a_corrupt_new_month_fails_alone(tmp_path: Path) -> None:
    shop = make_synthetic(n_users=80, n_items=30, days=90, start="2024-01-01", seed=5)
    root = tmp_path / "shop"
    store.write_items(root, shop.items)
    old = shop.interactions[shop.interactions[TS_COL] < "2024-03-01"]
    store.append(root, old)

    first = validate_store(store.snapshot(root), tmp_path / "docs1", max_timestamp="2025-01-01")
    assert first.success, first.failed
    assert sorted(first.checked) == sorted(store.snapshot(root).files) and first.skipped == []
    assert first.rows_checked == len(old)
    assert all(r.docs_index is not None and r.docs_index.is_file() for r in first.checked.values())

    again = validate_store(store.snapshot(root), tmp_path / "docs2", max_timestamp="2025-01-01")
    assert again.success and again.checked == {} and again.rows_checked == 0  # nothing new: nothing read
    assert sorted(again.skipped) == sorted(first.checked)

    new = shop.interactions[shop.interactions[TS_COL] >= "2024-03-01"].copy()
    new.loc[new.index[:3], WEIGHT_COL] = -1.0  # corrupt rows in the new month
    new.loc[new.index[3], USER_COL] = None
    appended = store.append(root, new)
    third = validate_store(store.snapshot(root), tmp_path / "docs3", max_timestamp="2025-01-01")
    assert not third.success
    assert sorted(third.checked) == sorted(str(f.relative_to(root)) for f in appended.files)  # only the new files
    assert third.rows_checked == len(new)
    assert any("month=2024-03" in line and "expect_column_values_to_be_between(weight)" in line for line in third.failed), third.failed
    assert any("expect_column_values_to_not_be_null(user_id)" in line for line in third.failed), third.failed
    ledger = (root / LEDGER).read_text()
    assert all(name in ledger for name in first.checked)  # the good months stay vouched for
    assert not any(name in ledger for name in third.checked if "2024-03" in name)  # the corrupt one is not


def test_whole_table_row_count_is_checked_from_metadata(tmp_path: Path) -> None:
    shop = make_synthetic(n_users=20, n_items=10, days=20, seed=2)
    store.write_items(tmp_path, shop.items)
    store.append(tmp_path, shop.interactions)
    result = validate_store(store.snapshot(tmp_path), tmp_path / "docs", max_rows=100, max_timestamp=pd.Timestamp("2030-01-01"))
    assert not result.success
    assert f"interactions: row count {len(shop.interactions)} outside 10..100 (whole table)" in result.failed
