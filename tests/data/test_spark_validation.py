"""GX on Spark: the same suites on a real local Spark session give the pandas verdict and failure names.

Starts pyspark for real (`local[2]`, needs Java 17: `make java-deps`); one session for the module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data.ingest import Dataset, load_online_retail
from recsys.schemas import ITEM_COL, TS_COL, USER_COL, WEIGHT_COL
from recsys.validation import ValidationResult, _spark, _spark_fingerprint, _to_spark, validate_dataset


@pytest.fixture(scope="module")
def retail() -> Dataset:
    return load_online_retail()


@pytest.fixture(scope="module")
def spark():
    session = _spark()
    yield session
    session.stop()


def checks(result: ValidationResult) -> set[str]:
    """'table: expect_x(col)' of every failure, without the observed details."""
    return {": ".join(f.split(": ")[:2]) for f in result.failed}


def both(interactions: pd.DataFrame, items: pd.DataFrame, docs: Path) -> tuple[ValidationResult, ValidationResult]:
    pandas = validate_dataset(interactions, items, docs / "pandas", engine="pandas")
    spark = validate_dataset(interactions, items, docs / "spark", engine="spark")
    return pandas, spark


def test_session_is_local_and_reused(spark) -> None:
    assert spark.sparkContext.master == "local[2]"
    assert spark.conf.get("spark.sql.shuffle.partitions") == "4"
    assert _spark() is spark


def test_online_retail_passes_on_spark_as_on_pandas(spark, retail: Dataset, tmp_path: Path) -> None:
    pandas, on_spark = both(retail.interactions, retail.items, tmp_path)
    assert pandas.success and on_spark.success, (pandas.failed, on_spark.failed)
    assert (
        on_spark.statistics
        == pandas.statistics
        == {
            "interactions": {"evaluated": 17, "successful": 17, "unsuccessful": 0},
            "items": {"evaluated": 10, "successful": 10, "unsuccessful": 0},
        }
    )
    assert on_spark.docs_index is not None and on_spark.docs_index.is_file()
    pages = list((on_spark.docs_index.parent / "validations" / "interactions").rglob("*.html"))
    assert len(pages) == 1 and "expect_column_values_to_not_be_in_set(item_id)" in pages[0].read_text()
    # Spark has no pandas fingerprint marker: a digest of row count, schema and column hash sums
    # stands in, stable for the same rows (in any order) and different for other rows.
    fingerprint = lambda frame: _spark_fingerprint(_to_spark(frame)[0])  # noqa: E731
    first = fingerprint(retail.items)
    assert first == fingerprint(retail.items.iloc[::-1]) != fingerprint(retail.items.iloc[1:])


def test_corrupt_retail_fails_the_same_checks_on_both_engines(spark, retail: Dataset, tmp_path: Path) -> None:
    interactions = retail.interactions.copy()
    interactions[USER_COL] = interactions[USER_COL].astype(object)
    interactions.loc[3, USER_COL] = None  # a null id
    interactions.loc[5, USER_COL] = 12  # an int among string ids: no Spark type holds both
    interactions.loc[7, WEIGHT_COL] = 0.0  # weight must be > 0
    interactions.loc[8, WEIGHT_COL] = np.nan  # NaN is a null on pandas, so it must be one on Spark too
    interactions.loc[9, ITEM_COL] = "no-such-item"  # not in the items table
    interactions.loc[11, TS_COL] = pd.Timestamp("1970-01-01")  # before min_timestamp
    interactions = pd.concat([interactions, interactions.iloc[20:22]], ignore_index=True)  # duplicated events
    items = retail.items.copy()
    items.loc[0, "price"] = -1.0
    pandas, on_spark = both(interactions, items, tmp_path)
    expected = {
        "interactions: expect_column_values_to_not_be_null(user_id)",
        "interactions: expect_column_values_to_be_of_type(user_id)",
        "interactions: expect_column_values_to_not_be_null(weight)",
        "interactions: expect_column_values_to_be_between(weight)",
        "interactions: expect_column_values_to_not_be_in_set(item_id)",
        "interactions: expect_column_values_to_be_between(timestamp)",
        "interactions: expect_compound_columns_to_be_unique(user_id, item_id, timestamp)",
        "items: expect_column_values_to_be_between(price)",
    }
    assert not pandas.success and not on_spark.success
    assert checks(pandas) == expected, pandas.failed
    assert checks(on_spark) == expected, on_spark.failed
    assert on_spark.statistics == pandas.statistics
    unknown = next(f for f in on_spark.failed if "not_be_in_set(item_id)" in f)
    assert unknown.endswith("1 of 386252 rows, e.g. ['no-such-item']"), unknown


def test_empty_frames_fail_the_same_checks_on_both_engines(spark, retail: Dataset, tmp_path: Path) -> None:
    """Spark cannot infer a schema from no rows (or no columns): pandas' dtypes give it one."""
    for name, (interactions, items) in {
        "no rows": (retail.interactions.iloc[:0], retail.items.iloc[:0]),
        "no columns": (pd.DataFrame(), pd.DataFrame()),
    }.items():
        pandas, on_spark = both(interactions, items, tmp_path / name)
        assert not pandas.success and not on_spark.success
        assert sorted(on_spark.failed) == sorted(pandas.failed), name
        assert on_spark.statistics == pandas.statistics, name
