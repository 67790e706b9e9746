"""The GX gate: valid data passes; each kind of corruption fails and is named, in `failed` and the docs."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import great_expectations as gx
import numpy as np
import pandas as pd
import pytest

from recsys.data.ingest import Dataset
from recsys.data.synthetic import make_synthetic
from recsys.schemas import (
    CATEGORY_COL,
    EVENT_COL,
    INTERACTION_COLUMNS,
    ITEM_COL,
    ITEM_COLUMNS,
    PRICE_COL,
    TS_COL,
    USER_COL,
    WEIGHT_COL,
)
from recsys.validation import (
    SUITES_DIR,
    DataValidationError,
    ValidationResult,
    gate,
    load_suites,
    validate_dataset,
)

REPO = Path(__file__).resolve().parents[2]
Tables = tuple[pd.DataFrame, pd.DataFrame]


@pytest.fixture(scope="module")
def small() -> Dataset:
    return make_synthetic(n_users=50, n_items=40, events_per_user=10)


def checks(result: ValidationResult) -> set[str]:
    """'table: expect_x(col)' of every failure, without the observed details."""
    return {": ".join(f.split(": ")[:2]) for f in result.failed}


def test_valid_dataset_passes(small: Dataset, tmp_path: Path) -> None:
    result = validate_dataset(small.interactions, small.items, tmp_path / "docs")
    assert result.success, result.failed
    assert result.failed == []
    assert result.statistics == {
        "interactions": {"evaluated": 17, "successful": 17, "unsuccessful": 0},
        "items": {"evaluated": 10, "successful": 10, "unsuccessful": 0},
    }
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{12}", result.result_id)
    assert result.docs_index == tmp_path / "docs" / "index.html" and result.docs_index.is_file()
    gate(result)  # does not raise


def _set(frame: pd.DataFrame, row: int, column: str, value: object) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[row, column] = value
    return frame


# name -> (corrupt the (interactions, items) pair, the exact set of checks that must fail)
CORRUPTIONS: dict[str, tuple[Callable[[pd.DataFrame, pd.DataFrame], Tables], set[str]]] = {
    "null user_id": (
        lambda i, it: (_set(i, 3, USER_COL, None), it),
        {"interactions: expect_column_values_to_not_be_null(user_id)"},
    ),
    "missing column": (
        lambda i, it: (i.drop(columns=[EVENT_COL]), it),
        {
            "interactions: expect_table_columns_to_match_ordered_list",
            "interactions: expect_column_values_to_not_be_null(event)",
            "interactions: expect_column_values_to_be_of_type(event)",
            "interactions: expect_column_values_to_be_in_set(event)",
        },
    ),
    "timestamps as strings": (
        lambda i, it: (i.assign(**{TS_COL: i[TS_COL].astype(str)}), it),
        {
            "interactions: expect_column_values_to_be_of_type(timestamp)",
            "interactions: expect_column_values_to_be_between(timestamp)",
        },
    ),
    "timestamp in the future": (
        lambda i, it: (_set(i, 0, TS_COL, pd.Timestamp.now() + pd.Timedelta(days=30)), it),
        {"interactions: expect_column_values_to_be_between(timestamp)"},
    ),
    "timestamp before 1990": (
        lambda i, it: (_set(i, 0, TS_COL, pd.Timestamp("1970-01-01")), it),
        {"interactions: expect_column_values_to_be_between(timestamp)"},
    ),
    "duplicate events": (
        lambda i, it: (pd.concat([i, i.iloc[:2]], ignore_index=True), it),
        {"interactions: expect_compound_columns_to_be_unique(user_id, item_id, timestamp)"},
    ),
    "weight <= 0": (
        lambda i, it: (_set(_set(i, 0, WEIGHT_COL, 0.0), 1, WEIGHT_COL, -2.0), it),
        {"interactions: expect_column_values_to_be_between(weight)"},
    ),
    "absurd weight": (
        lambda i, it: (_set(i, 0, WEIGHT_COL, 1e9), it),
        {"interactions: expect_column_values_to_be_between(weight)"},
    ),
    "integer weights": (
        lambda i, it: (i.assign(**{WEIGHT_COL: i[WEIGHT_COL].astype("int64")}), it),
        {"interactions: expect_column_values_to_be_of_type(weight)"},
    ),
    "integer user ids": (
        lambda i, it: (i.assign(**{USER_COL: i[USER_COL].str[1:].astype("int64")}), it),
        {"interactions: expect_column_values_to_be_of_type(user_id)"},
    ),
    "unknown event type": (
        lambda i, it: (_set(i, 0, EVENT_COL, "hover"), it),
        {"interactions: expect_column_values_to_be_in_set(event)"},
    ),
    "item not in items table": (
        lambda i, it: (_set(i, 0, ITEM_COL, "no-such-item"), it),
        {"interactions: expect_column_values_to_not_be_in_set(item_id)"},
    ),
    "duplicate item ids": (
        lambda i, it: (i, pd.concat([it, it.iloc[:1]], ignore_index=True)),
        {"items: expect_column_values_to_be_unique(item_id)"},
    ),
    "null category": (
        lambda i, it: (i, _set(it, 0, CATEGORY_COL, None)),
        {"items: expect_column_values_to_not_be_null(category)"},
    ),
    "too few rows": (
        lambda i, it: (i.iloc[:5], it),
        {"interactions: expect_table_row_count_to_be_between"},
    ),
    "negative price": (
        lambda i, it: (i, _set(_set(it, 0, PRICE_COL, -1.0), 1, PRICE_COL, np.nan)),  # NaN is allowed
        {"items: expect_column_values_to_be_between(price)"},
    ),
    "extra column": (
        lambda i, it: (i.assign(extra=1), it),
        {"interactions: expect_table_columns_to_match_ordered_list"},
    ),
    "columns out of order": (
        lambda i, it: (i[[ITEM_COL, USER_COL, TS_COL, EVENT_COL, WEIGHT_COL]], it),
        {"interactions: expect_table_columns_to_match_ordered_list"},
    ),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_fails_and_is_named(name: str, small: Dataset, tmp_path: Path) -> None:
    corrupt, expected = CORRUPTIONS[name]
    interactions, items = corrupt(small.interactions, small.items)
    result = validate_dataset(interactions, items, tmp_path / "docs")
    assert not result.success
    assert checks(result) == expected, result.failed
    assert sum(s["unsuccessful"] for s in result.statistics.values()) == len(result.failed)


def test_failures_say_what_was_wrong(small: Dataset, tmp_path: Path) -> None:
    missing = validate_dataset(small.interactions.drop(columns=[EVENT_COL]), small.items, tmp_path / "a")
    assert "interactions: expect_table_columns_to_match_ordered_list: missing columns ['event']" in missing.failed
    assert "interactions: expect_column_values_to_be_in_set(event): column 'event' is missing" in missing.failed
    extra = validate_dataset(small.interactions.assign(extra=1), small.items, tmp_path / "b")
    assert extra.failed == ["interactions: expect_table_columns_to_match_ordered_list: unexpected columns ['extra']"]
    unknown = validate_dataset(_set(small.interactions, 0, ITEM_COL, "ghost"), small.items, tmp_path / "c")
    assert unknown.failed[0].endswith("1 of 500 rows, e.g. ['ghost']")
    few = validate_dataset(small.interactions.iloc[:5], small.items, tmp_path / "d")
    assert few.failed == ["interactions: expect_table_row_count_to_be_between: observed 5, expected 10..50000000"]


@pytest.mark.parametrize("frames", ["no rows", "no columns"])
def test_empty_frames_fail_without_crashing(frames: str, small: Dataset, tmp_path: Path) -> None:
    if frames == "no rows":
        interactions, items = small.interactions.iloc[:0], small.items.iloc[:0]
    else:
        interactions, items = pd.DataFrame(), pd.DataFrame()
    result = validate_dataset(interactions, items, tmp_path / "docs")
    assert not result.success and result.docs_index is not None
    assert "interactions: expect_table_row_count_to_be_between" in checks(result)
    assert "items: expect_table_row_count_to_be_between" in checks(result)
    if frames == "no columns":
        columns_check = "expect_table_columns_to_match_ordered_list: missing columns"
        assert f"interactions: {columns_check} {INTERACTION_COLUMNS}" in result.failed
        assert f"items: {columns_check} {ITEM_COLUMNS}" in result.failed
        assert "items: expect_column_values_to_be_unique(item_id): column 'item_id' is missing" in result.failed


def test_time_window_and_row_bounds_are_parameters(small: Dataset, tmp_path: Path) -> None:
    late = validate_dataset(small.interactions, small.items, tmp_path / "a", min_timestamp="2024-03-01")
    assert checks(late) == {"interactions: expect_column_values_to_be_between(timestamp)"}
    big = validate_dataset(small.interactions, small.items, tmp_path / "b", max_rows=100)
    assert checks(big) == {"interactions: expect_table_row_count_to_be_between"}
    # items table is bounded by max_rows too (40 items)
    assert validate_dataset(small.interactions, small.items, tmp_path / "c", min_rows=1, max_rows=600).success


def test_docs_show_the_failure(small: Dataset, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    result = validate_dataset(_set(small.interactions, 3, USER_COL, None), small.items, docs)
    index = result.docs_index
    assert index is not None and index.is_file() and index.parent == docs
    # GX's index lists the validation pages (with their status); each page names every check.
    pages = re.findall(r"validations/[^\"']+?\.html", index.read_text())
    assert {p.split("/")[1] for p in pages} == {"interactions", "items"}
    page = next(docs / p for p in pages if p.split("/")[1] == "interactions")
    html = page.read_text()
    assert "expect_column_values_to_not_be_null(user_id)" in html
    assert "Failed" in html and "1 unexpected values found" in html
    # Only the docs site is written: no GX project folder, here or in the repo.
    assert {p.name for p in docs.iterdir()} <= {"index.html", "static", "validations", "expectations"}
    assert not (REPO / "gx").exists() and not (REPO / "great_expectations").exists()


def test_gate_raises_with_the_failures_and_docs_path(small: Dataset, tmp_path: Path) -> None:
    interactions = _set(_set(small.interactions, 0, EVENT_COL, "hover"), 1, WEIGHT_COL, -1.0)
    result = validate_dataset(interactions, small.items, tmp_path / "docs")
    with pytest.raises(DataValidationError) as raised:
        gate(result)
    message = str(raised.value)
    assert "interactions: expect_column_values_to_be_in_set(event)" in message
    assert "interactions: expect_column_values_to_be_between(weight)" in message
    assert str(result.docs_index) in message and result.result_id in message
    assert raised.value.result is result


def test_result_id_digest_follows_the_data(small: Dataset, tmp_path: Path) -> None:
    first = validate_dataset(small.interactions, small.items, tmp_path / "a")
    again = validate_dataset(small.interactions, small.items, tmp_path / "b")
    other = validate_dataset(small.interactions.iloc[1:], small.items, tmp_path / "c")
    digest = lambda r: r.result_id.split("-")[1]  # noqa: E731
    assert digest(first) == digest(again) != digest(other)


def test_suite_files_are_gx_suites() -> None:
    """The versioned JSON is exactly what GX 1.x writes, and every expectation survives loading."""
    for table, suite in load_suites().items():
        assert suite["name"] == table
        assert gx.ExpectationSuite(**json.loads(json.dumps(suite))).to_json_dict() == suite
    params = {e["kwargs"][k]["$PARAMETER"] for s in load_suites().values() for e in s["expectations"] for k in e["kwargs"] if isinstance(e["kwargs"][k], dict)}
    assert params == {"min_rows", "max_rows", "min_timestamp", "max_timestamp", "unknown_item_ids"}


def test_suites_dir_override(small: Dataset, tmp_path: Path) -> None:
    suites = tmp_path / "suites"
    shutil.copytree(SUITES_DIR, suites)
    items = json.loads((suites / "items.json").read_text())
    items["expectations"] = [e for e in items["expectations"] if e["type"] != "expect_column_values_to_be_unique"]
    (suites / "items.json").write_text(json.dumps(items))
    dup = pd.concat([small.items, small.items.iloc[:1]], ignore_index=True)
    assert validate_dataset(small.interactions, dup, tmp_path / "docs", suites_dir=suites).success
    items["expectations"].append({"type": "expect_no_such_thing", "kwargs": {}})
    (suites / "items.json").write_text(json.dumps(items))
    with pytest.raises(ValueError, match="expectations are valid"):
        load_suites(suites)


def test_fast_path_keeps_mixed_type_columns_failing(small: Dataset, tmp_path: Path) -> None:
    """All-string object columns go to GX as Arrow strings (fast); a column mixing ints and strs
    stays object, so `expect_column_values_to_be_of_type(user_id)` still sees the int and fails."""
    from recsys.validation import _arrow_strings

    fast = _arrow_strings(small.interactions)
    assert str(fast[USER_COL].dtype) == "string" and small.interactions[USER_COL].dtype == object
    assert fast[USER_COL].tolist() == small.interactions[USER_COL].tolist()
    mixed = small.interactions.astype({USER_COL: object})
    mixed.loc[4, USER_COL] = 12
    assert _arrow_strings(mixed)[USER_COL].dtype == object
    result = validate_dataset(mixed, small.items, tmp_path / "docs")
    assert checks(result) == {"interactions: expect_column_values_to_be_of_type(user_id)"}, result.failed
    assert "1 of 500 rows, e.g. ['12']" in result.failed[0]
