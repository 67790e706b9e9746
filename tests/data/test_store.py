"""The dataset store: months appended as new files, never rewritten, never duplicated; read back as stored."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recsys.data import store
from recsys.data.ingest import load_dataset
from recsys.data.synthetic import make_synthetic
from recsys.data.synthetic_store import write_synthetic_store
from recsys.schemas import INTERACTION_COLUMNS, ITEM_COL, TS_COL, USER_COL

KEY = [TS_COL, USER_COL, ITEM_COL]


@pytest.fixture(scope="module")
def shop() -> pd.DataFrame:
    return make_synthetic(n_users=120, n_items=40, days=100, seed=3).interactions


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    a, b = (f.sort_values(KEY).reset_index(drop=True).astype(object) for f in (a, b))
    return a.equals(b)


def test_append_writes_one_file_per_month_and_reads_back_the_rows(shop: pd.DataFrame, tmp_path: Path) -> None:
    result = store.append(tmp_path, shop)
    snap = store.snapshot(tmp_path)
    months = sorted(shop[TS_COL].dt.strftime("%Y-%m").unique())
    assert snap.months == months and len(result.files) == len(months) == len(snap.files)
    assert result.rows_written == snap.rows == len(shop) and result.rows_duplicate == 0
    back = snap.read()
    assert list(back.columns) == INTERACTION_COLUMNS and back[USER_COL].dtype == pd.StringDtype("pyarrow")
    assert _same(back, shop)


def test_appends_never_rewrite_history_nor_duplicate_events(shop: pd.DataFrame, tmp_path: Path) -> None:
    half = len(shop) // 2
    store.append(tmp_path, shop.iloc[:half])
    first = {f: (tmp_path / f).stat().st_mtime_ns for f in store.snapshot(tmp_path).files}
    overlap = store.append(tmp_path, shop.iloc[half // 2 :])  # a quarter already stored
    assert overlap.rows_duplicate == half - half // 2 and overlap.rows_written == len(shop) - half
    again = store.append(tmp_path, shop)  # everything already stored: nothing written
    assert again.files == [] and again.rows_written == 0 and again.rows_duplicate == len(shop)
    snap = store.snapshot(tmp_path)
    assert {f: (tmp_path / f).stat().st_mtime_ns for f in first} == first  # earlier files untouched
    assert snap.rows == len(shop) and _same(snap.read(), shop)


def test_snapshot_digest_changes_only_with_new_files_and_ignores_interrupted_writes(shop: pd.DataFrame, tmp_path: Path) -> None:
    store.append(tmp_path, shop.iloc[:100])
    before = store.snapshot(tmp_path)
    month = tmp_path / store.INTERACTIONS_DIR / f"month={before.months[0]}"
    (month / ".part-killed.parquet.tmp").write_bytes(b"half a file")  # what a killed append leaves
    assert store.snapshot(tmp_path) == before
    store.append(tmp_path, shop.iloc[100:])
    after = store.snapshot(tmp_path)
    assert after.digest != before.digest and set(before.files) < set(after.files)
    assert before.read().shape[0] == 100  # an old snapshot still reads its own files only


def test_reads_only_the_months_and_time_asked(shop: pd.DataFrame, tmp_path: Path) -> None:
    store.append(tmp_path, shop)
    snap = store.snapshot(tmp_path)
    until = shop[TS_COL].quantile(0.4)
    assert _same(snap.read(until=until), shop[shop[TS_COL] < until])
    first = snap.read(columns=[USER_COL, TS_COL], months=snap.months[:1])
    assert list(first.columns) == [USER_COL, TS_COL]
    assert len(first) == (shop[TS_COL].dt.strftime("%Y-%m") == snap.months[0]).sum()


def test_a_store_folder_is_a_dataset_name(tmp_path: Path) -> None:
    snap = write_synthetic_store(tmp_path / "shop", 20_000, months=4, seed=1)
    assert 19_000 < snap.rows <= 20_000 and len(snap.months) == 4
    data = load_dataset(str(tmp_path / "shop"), until="2023-03-01")
    assert data.name == "shop" and data.interactions[TS_COL].max() < pd.Timestamp("2023-03-01")
    assert len(data.interactions) == len(snap.read(months=snap.months[:2]))
    assert set(data.interactions[ITEM_COL]) <= set(data.items[ITEM_COL])
    repeats = data.interactions.sort_values([USER_COL, TS_COL])
    same = (repeats[USER_COL] == repeats[USER_COL].shift()) & (repeats[ITEM_COL] == repeats[ITEM_COL].shift())
    assert same.fillna(False).mean() > 0.05  # repeat purchases, as the generator promises
