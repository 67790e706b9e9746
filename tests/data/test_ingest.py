"""Loaders on the real copies in ../shared/data: publishers' layouts → canonical tables."""

from __future__ import annotations

import pandas as pd
import pytest

from recsys.data.ingest import (
    clean_online_retail,
    load_dataset,
    load_interactions_file,
    read_online_retail_raw,
)
from recsys.schemas import INTERACTION_COLUMNS, ITEM_COLUMNS
from tests.conftest import SHARED_DATA

RETAIL_CSV = SHARED_DATA / "online-retail" / "online_retail.csv.gz"


@pytest.fixture(scope="module")
def bundled_raw() -> pd.DataFrame:
    return read_online_retail_raw()


def test_bundled_copy_has_every_uci_line(bundled_raw: pd.DataFrame) -> None:
    csv = read_online_retail_raw(RETAIL_CSV)
    assert len(bundled_raw) == len(csv) == 541_909
    for column in ["InvoiceNo", "StockCode", "Quantity", "Country", "Description"]:
        assert bundled_raw[column].fillna("").astype(str).equals(csv[column].fillna("").astype(str)), column
    assert bundled_raw["CustomerID"].astype("Float64").equals(csv["CustomerID"].astype("Float64"))
    assert bundled_raw["UnitPrice"].equals(csv["UnitPrice"])
    assert bundled_raw["Quantity"].sum() == 5_176_450
    assert pd.to_datetime(bundled_raw["InvoiceDate"]).equals(pd.to_datetime(csv["InvoiceDate"]))


def test_cleaning_rules(bundled_raw: pd.DataFrame) -> None:
    data = clean_online_retail(bundled_raw)
    inter, items = data.interactions, data.items
    assert list(inter.columns) == INTERACTION_COLUMNS and list(items.columns) == ITEM_COLUMNS
    assert inter["weight"].min() > 0
    assert inter["item_id"].str.match(r"^\d{5}").all()  # no postage, fees or manual lines
    assert not inter.duplicated(["user_id", "item_id", "timestamp"]).any()
    assert 4_300 < inter["user_id"].nunique() <= 4_372
    assert 3_600 < inter["item_id"].nunique() <= 4_070
    assert set(inter["item_id"]) <= set(items["item_id"])
    assert items["price"].gt(0).all()


def test_each_cleaning_rule_on_hand_made_lines() -> None:
    raw = pd.DataFrame(
        [
            ("536365", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 6, "2010-12-01 08:26:00", 2.55, 17850.0, "UK"),
            ("536365", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 2, "2010-12-01 08:26:00", 2.55, 17850.0, "UK"),
            ("536366", "22633", "HAND WARMER UNION JACK", 6, "2010-12-01 08:28:00", 1.85, None, "UK"),
            ("C536379", "22633", "HAND WARMER UNION JACK", -1, "2010-12-01 09:41:00", 1.85, 14527.0, "UK"),
            ("536380", "22633", "HAND WARMER UNION JACK", -3, "2010-12-01 09:41:00", 1.85, 14527.0, "UK"),
            ("536381", "22633", "HAND WARMER UNION JACK", 3, "2010-12-01 09:45:00", 0.0, 14527.0, "UK"),
            ("536382", "POST", "POSTAGE", 1, "2010-12-01 09:45:00", 18.0, 14527.0, "UK"),
            ("536383", "22633", "HAND WARMER UNION JACK", 4, "2010-12-01 10:00:00", 1.85, 14527.0, "UK"),
        ],
        columns=["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"],
    )
    data = clean_online_retail(raw)
    rows = data.interactions[["user_id", "item_id", "weight"]].values.tolist()
    # no customer, cancellation, return, free line and postage are dropped; duplicates summed
    assert sorted(rows) == [["14527", "22633", 4.0], ["17850", "85123A", 8.0]]
    assert data.items.set_index("item_id").loc["85123A", "category"] == "HOLDER"


def test_movielens_100k() -> None:
    data = load_dataset("ml-100k", SHARED_DATA)
    assert len(data.interactions) == 100_000
    assert data.interactions["user_id"].nunique() == 943
    assert data.items["item_id"].nunique() == 1_682
    assert data.interactions["weight"].between(1, 5).all()
    assert data.interactions["timestamp"].min() == pd.Timestamp("1997-09-20 03:05:10")


def test_movielens_latest_small() -> None:
    data = load_dataset("ml-latest-small", SHARED_DATA)
    assert len(data.interactions) == 100_836
    assert data.interactions["user_id"].nunique() == 610
    assert data.interactions["item_id"].nunique() == 9_724
    assert data.items["category"].notna().all()


def test_generic_file_and_until(tmp_path, synthetic) -> None:
    path = tmp_path / "events.parquet"
    synthetic.interactions.to_parquet(path)
    data = load_interactions_file(path)
    assert len(data.interactions) == len(synthetic.interactions)
    bad = tmp_path / "bad.csv"
    synthetic.interactions.drop(columns=["weight"]).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="weight"):
        load_interactions_file(bad)
    early = load_dataset("online-retail", until="2011-09-01")
    assert early.interactions["timestamp"].max() < pd.Timestamp("2011-09-01")


def test_unknown_dataset_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("no-such-thing", SHARED_DATA)
