"""The data gate: Great Expectations suites, versioned in `expectations/`, run on the canonical tables.

Why a gate: training on a broken table fails late (or worse, silently trains a bad model), so every
pipeline run validates interactions and items first and stops with a readable reason. The suites
are plain GX 1.x JSON next to the code, so a change to the data contract is reviewed like code.

Run-time facts the suites cannot know (the interacted item ids missing from this dataset's
items table, the plausible time range, row-count bounds) are GX suite parameters (`{"$PARAMETER": ...}`) filled in here.

GX runs in an ephemeral (in-memory) context, so no `gx/` project folder appears anywhere; the only
files written are the Data Docs site under `docs_dir`, built after every validation so a person
can open `docs_index` and see what failed. This module is a plain library: no Prefect here.

Two engines run the same suite JSON: pandas (default, fastest on one machine) and Spark (a local
`SparkSession` through GX's own Spark datasource, for data that outgrows one machine's pandas);
`validate_dataset(..., engine=...)`, `RECSYS_GX_ENGINE` in the flows.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from recsys.schemas import ITEM_COL

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
    from great_expectations.data_context import EphemeralDataContext
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import SparkSession

SUITES_DIR = Path(__file__).resolve().parents[1] / "expectations"
TABLES = ("interactions", "items")
DEFAULT_MIN_TIMESTAMP = pd.Timestamp("1990-01-01")
_SITE = "recsys"
Engine = Literal["pandas", "spark"]
# The suites name pandas/numpy types; GX's Spark engine compares `pyspark.sql.types` class names.
# A pandas datetime64 column arrives in Spark as TIMESTAMP_NTZ (the session prefers it, see `_spark`).
SPARK_TYPES = {"str": "StringType", "datetime64": "TimestampNTZType", "float64": "DoubleType", "int64": "LongType"}
# The type a mixed-type pandas column is "expected" to have on Spark: no column ever has it, so the
# check fails there as it does on pandas (Spark has no column type for, say, ints mixed with strs).
_NO_SPARK_TYPE = "NullType"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationResult:
    """What a validation found; `result_id` and `statistics` are small enough to log in MLflow."""

    success: bool
    failed: list[str]  # "interactions: expect_column_values_to_not_be_null(user_id): 1 of 500 rows ..."
    docs_index: Path | None  # the Data Docs index.html written for this validation
    result_id: str  # "<UTC time>-<hash of data fingerprints, suites and parameters>"
    statistics: dict[str, dict[str, int]] = field(default_factory=dict)  # per table


class DataValidationError(RuntimeError):
    """Raised by `gate`; the message lists every failed expectation and where the docs are."""

    def __init__(self, result: ValidationResult) -> None:
        self.result = result
        lines = "\n".join(f"  - {f}" for f in result.failed)
        super().__init__(
            f"data validation {result.result_id} failed, {len(result.failed)} expectation(s):\n{lines}\nData Docs: {result.docs_index or 'not written'}"
        )


def gate(result: ValidationResult) -> None:
    """Stop the pipeline (raise DataValidationError) unless the validation succeeded."""
    if not result.success:
        raise DataValidationError(result)


def check_name(kind: str, kwargs: dict[str, Any]) -> str:
    """'expect_x(col)' or 'expect_x(a, b, c)': one name for an expectation in `failed` and the docs."""
    if "column" in kwargs:
        return f"{kind}({kwargs['column']})"
    if "compound" in kind or "multicolumn" in kind:
        return f"{kind}({', '.join(kwargs.get('column_list', []))})"
    return kind


def load_suites(suites_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """The suite JSON of each table, checked to load in full (GX silently drops bad expectations)."""
    import great_expectations as gx

    suites = {}
    for table in TABLES:
        path = Path(suites_dir or SUITES_DIR) / f"{table}.json"
        raw = json.loads(path.read_text())
        kept = len(gx.ExpectationSuite(**copy.deepcopy(raw)).expectations)
        if kept != len(raw.get("expectations", [])):
            raise ValueError(f"{path}: only {kept} of {len(raw['expectations'])} expectations are valid")
        suites[table] = raw
    return suites


def _with_descriptions(suite: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Give every expectation a Data Docs description: its check name, resolved settings and why.

    GX renders a description instead of its own sentence, so the docs name each check exactly as
    `failed` does (GX's meta_properties columns would, but they crash the 1.x renderer).
    """
    suite = copy.deepcopy(suite)
    for exp in suite["expectations"]:
        shown = {k: v for k, v in exp["kwargs"].items() if k not in ("column", "column_list") or "table" in exp["type"]}
        settings = ", ".join(f"{k}={_setting(v, params)}" for k, v in shown.items())
        why = " ".join(exp.get("notes") or []) if isinstance(exp.get("notes"), list) else exp.get("notes") or ""
        exp["description"] = " ".join(p for p in (check_name(exp["type"], exp["kwargs"]), settings, "-", why) if p)
    return suite


def _setting(value: Any, params: dict[str, Any]) -> str:
    """A kwarg as the docs show it: parameters resolved, long lists summarised, no '$' (templates)."""
    if isinstance(value, dict) and "$PARAMETER" in value:
        name = value["$PARAMETER"]
        return f"{name} ({len(params[name])} values)" if isinstance(params.get(name), list) else f"{params.get(name)}"
    return f"{value}" if not isinstance(value, list) or len(value) <= 10 else f"{len(value)} values"


def _context(docs_dir: Path) -> EphemeralDataContext:
    """An in-memory GX context whose only Data Docs site is `docs_dir` (no temp site, no progress bars)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        data_docs_sites={_SITE: site},
        progress_bars=ProgressBarsConfig(globally=False),
        analytics_enabled=False,
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _exception(evr: ExpectationValidationResult) -> str | None:
    """GX's message when an expectation could not be evaluated (flat, or keyed by metric in 1.x)."""
    info = evr.exception_info or {}
    found = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    messages = [str(i.get("exception_message") or "error") for i in found if i.get("raised_exception")]
    return messages[0].splitlines()[0][:200] if messages else None


def _describe(table: str, evr: ExpectationValidationResult, columns: list[str]) -> str:
    """One readable line for a failed expectation: its name, then what was observed."""
    config = evr.expectation_config
    kwargs, result = config.kwargs, evr.result or {}
    name = f"{table}: {check_name(config.type, kwargs)}"
    if config.type == "expect_table_columns_to_match_ordered_list":
        want, seen = list(kwargs["column_list"]), [str(c) for c in columns]
        missing, extra = [c for c in want if c not in seen], [c for c in seen if c not in want]
        parts = [f"missing columns {missing}" if missing else "", f"unexpected columns {extra}" if extra else ""]
        return f"{name}: {'; '.join(p for p in parts if p) or f'columns out of order {seen}'}"
    used = [kwargs["column"]] if "column" in kwargs else list(kwargs.get("column_list", []))
    absent = [c for c in used if c not in columns]
    if absent:
        return f"{name}: column {absent[0]!r} is missing"
    error = _exception(evr)
    if error:
        return f"{name}: could not be evaluated ({error})"
    if "unexpected_count" in result:
        sample = [str(v)[:80] for v in (result.get("partial_unexpected_list") or [])[:3]]
        return f"{name}: {result['unexpected_count']} of {result.get('element_count')} rows, e.g. {sample}"
    bounds = f", expected {kwargs['min_value']}..{kwargs['max_value']}" if "max_value" in kwargs else ""
    return f"{name}: observed {result.get('observed_value')!r}{bounds}"


def validate_dataset(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    docs_dir: Path,
    *,
    min_rows: int = 10,
    max_rows: int = 50_000_000,
    min_timestamp: pd.Timestamp | str | None = None,
    max_timestamp: pd.Timestamp | str | None = None,
    suites_dir: Path | None = None,
    engine: Engine | str = "pandas",
) -> ValidationResult:
    """Validate both canonical tables against their suites, build Data Docs, never raise on bad data.

    Time bounds default to 1990-01-01 and now + 1 day. A table GX cannot evaluate at all (or a
    failure inside GX) becomes a failed entry, not a traceback, so callers always get a result.
    `docs_dir` shows this validation only: GX's index builder deletes pages whose results are not
    in the (in-memory) store, so keep history by giving each run its own folder.

    `engine="pandas"` validates the frames in process (all-string object columns become Arrow
    strings first, see `_arrow_strings`); `engine="spark"` copies them into a local Spark session
    and validates them through GX's Spark datasource: same suites, same parameters, same verdict
    and failure names, slower on one machine. Spark has no pandas fingerprint batch marker, so its
    data fingerprint is a digest of row count, schema and per-column sums of Spark's row hash.
    """
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    if engine not in ("pandas", "spark"):
        raise ValueError(f"unknown GX engine {engine!r}: use 'pandas' or 'spark'")
    docs_dir = Path(docs_dir).resolve()
    docs_dir.mkdir(parents=True, exist_ok=True)
    params: dict[str, Any] = {
        "min_rows": min_rows,
        "max_rows": max_rows,
        "min_timestamp": pd.Timestamp(min_timestamp if min_timestamp is not None else DEFAULT_MIN_TIMESTAMP),
        "max_timestamp": pd.Timestamp(max_timestamp) if max_timestamp is not None else pd.Timestamp.now().floor("s") + pd.Timedelta(days=1),
        "unknown_item_ids": _unknown_item_ids(interactions, items),
    }
    raw_suites = load_suites(suites_dir)
    suites = {t: _with_descriptions(s, params) for t, s in raw_suites.items()}
    now = datetime.now(UTC)
    run_id = RunIdentifier(run_name=f"recsys-{now:%Y%m%dT%H%M%SZ}", run_time=now)
    ctx = _context(docs_dir)
    if engine == "spark":
        _spark()  # before GX's datasource, which would otherwise start a default session (local[*], UI on)
        source = ctx.data_sources.add_spark("recsys")
    else:
        source = ctx.data_sources.add_pandas("recsys")
    failed: list[str] = []
    statistics: dict[str, dict[str, int]] = {}
    fingerprints: dict[str, str] = {}
    for table, frame in (("interactions", interactions), ("items", items)):
        spark_df = None
        try:
            suite_json = suites[table]
            if engine == "spark":
                spark_df, pinned = _to_spark(frame)
                data: Any = spark_df
                suite_json = _for_spark(suite_json, pinned)
            else:
                data = _arrow_strings(frame)
            batch = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe("all")
            suite = ctx.suites.add(gx.ExpectationSuite(**suite_json))
            definition = ctx.validation_definitions.add(gx.ValidationDefinition(name=table, data=batch, suite=suite))
            run = definition.run(
                batch_parameters={"dataframe": data},
                expectation_parameters=params,
                result_format="SUMMARY",
                run_id=run_id,
            )
            marker = _spark_fingerprint(spark_df) if spark_df is not None else run.meta.get("batch_markers", {}).get("pandas_data_fingerprint")
        except Exception as exc:
            log.warning("GX could not validate %s: %s", table, exc, exc_info=True)
            failed.append(f"{table}: validation could not run: {type(exc).__name__}: {exc}")
            statistics[table] = {"evaluated": 0, "successful": 0, "unsuccessful": 0}
            continue
        finally:
            if spark_df is not None:
                spark_df.unpersist()  # GX's Spark datasource persists (caches) each batch
        order = {check_name(e["type"], e["kwargs"]): i for i, e in enumerate(suites[table]["expectations"])}
        failures = [evr for evr in run.results if not evr.success]  # GX returns them in graph order
        failures.sort(key=lambda r: order.get(check_name(r.expectation_config.type, r.expectation_config.kwargs), 0))
        failed += [_describe(table, evr, list(frame.columns)) for evr in failures]
        statistics[table] = _statistics(run)
        fingerprints[table] = f"{marker}:{list(map(str, frame.columns))}:{list(map(str, frame.dtypes))}"
    docs_index = _build_docs(ctx, docs_dir)
    # Same data, suites and bounds give the same digest; the time prefix makes each run unique.
    skipped = {"unknown_item_ids"} if max_timestamp is not None else {"unknown_item_ids", "max_timestamp"}
    bounds = {k: str(v) for k, v in params.items() if k not in skipped}
    digest = hashlib.sha256(json.dumps([fingerprints, raw_suites, bounds], sort_keys=True).encode()).hexdigest()[:12]
    return ValidationResult(
        success=not failed,
        failed=failed,
        docs_index=docs_index,
        result_id=f"{now:%Y%m%dT%H%M%SZ}-{digest}",
        statistics=statistics,
    )


def _arrow_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with every all-string object column as `string[pyarrow]`: the fast path of the gate.

    On an object column GX checks `type_` value by value (a Python `isinstance` per row) and
    `isna` walks Python objects; on an Arrow string column it checks the dtype once and nulls are a
    bitmap (1M interactions: about 5x faster in all). Only columns whose values are all `str`
    (nulls aside) change, so a column mixing ints and strings stays object and still fails its
    `str` type check; an all-null column stays object too (GX passes any `type_` on it, as
    before). Values, nulls and the pandas data fingerprint are unchanged; the caller's frame is not
    modified.
    """
    if not isinstance(frame, pd.DataFrame):
        return frame
    strings = [
        i for i, dtype in enumerate(frame.dtypes) if pd.api.types.is_object_dtype(dtype) and pd.api.types.infer_dtype(frame.iloc[:, i], skipna=True) == "string"
    ]
    if not strings:
        return frame
    out = frame.copy(deep=False)
    for i in strings:
        out.isetitem(i, _to_arrow_string(frame.iloc[:, i]))
    return out


def _to_arrow_string(column: pd.Series) -> pd.Series:
    """An object column of strs as `string[pyarrow]` (pyarrow directly: faster than `astype`)."""
    import pyarrow as pa

    try:
        array = pa.array(column.to_numpy(), type=pa.large_string(), from_pandas=True)
        return pd.Series(pd.arrays.ArrowStringArray(array), index=column.index, name=column.name)
    except (pa.ArrowException, TypeError, ValueError):
        return column.astype("string[pyarrow]")


def _spark() -> SparkSession:
    """The process's local Spark session (2 cores, no UI), created on first use and then reused.

    Naive timestamps stay naive (TIMESTAMP_NTZ), like pandas, so the time bounds mean the same in
    any time zone; Arrow makes `createDataFrame` from pandas columnar instead of row by row.
    """
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master("local[2]")
        .appName("recsys-gx")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.default.parallelism", "4")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.pyspark.fallback.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.timestampType", "TIMESTAMP_NTZ")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )


def _to_spark(frame: pd.DataFrame) -> tuple[SparkDataFrame, dict[str, str]]:
    """`frame` as a Spark DataFrame, and the Spark type its odd columns' type checks must expect.

    All-string columns become StringType, datetime64 TIMESTAMP_NTZ, float64 DoubleType; NaN and
    NaT become Spark nulls (Arrow masks them), as pandas counts them null. Two kinds of pandas
    object column have no faithful Spark type, so they go as strings (nulls kept) and their type
    check is pinned to keep the pandas verdict: one mixing value types (ints and strs: pandas
    fails any type check on it) expects a type it cannot have, one with no values at all (pandas
    passes any type check on it) expects StringType.
    """
    import pyarrow as pa

    frame = _arrow_strings(frame)
    pinned: dict[str, str] = {}
    fixed = {}
    for i, dtype in enumerate(frame.dtypes):
        if not pd.api.types.is_object_dtype(dtype):
            continue
        column = frame.iloc[:, i]
        if pd.api.types.infer_dtype(column, skipna=True) == "empty":
            pinned[str(frame.columns[i])] = "StringType"
        else:
            try:
                pa.array(column, from_pandas=True)
                continue
            except (pa.ArrowException, TypeError, ValueError):
                pinned[str(frame.columns[i])] = _NO_SPARK_TYPE
        fixed[i] = column.map(str, na_action="ignore").astype("string[pyarrow]")
    if fixed:
        frame = frame.copy(deep=False)
        for i, column in fixed.items():
            frame.isetitem(i, column)
    if not all(isinstance(c, str) for c in frame.columns):
        frame = frame.rename(columns=str)
    if frame.empty:  # no rows or no columns: Spark cannot infer a schema, so give it pandas' own
        from pyspark.sql.pandas.types import from_arrow_schema

        schema = from_arrow_schema(pa.Schema.from_pandas(frame, preserve_index=False), prefer_timestamp_ntz=True)
        return _spark().createDataFrame([], schema), pinned
    return _spark().createDataFrame(frame), pinned


def _for_spark(suite: dict[str, Any], pinned: dict[str, str]) -> dict[str, Any]:
    """The suite with its pandas type names (`type_`) as Spark type names; the JSON stays one file."""
    suite = copy.deepcopy(suite)
    for exp in suite["expectations"]:
        kwargs = exp["kwargs"]
        if exp["type"] == "expect_column_values_to_be_of_type" and isinstance(kwargs.get("type_"), str):
            kwargs["type_"] = pinned.get(kwargs.get("column"), SPARK_TYPES.get(kwargs["type_"], kwargs["type_"]))
    return suite


def _spark_fingerprint(df: SparkDataFrame) -> str:
    """Digest of a Spark DataFrame's row count, schema and per-column sums of `hash(value)`.

    Stands in for GX's `pandas_data_fingerprint` marker (pandas only): one aggregation job, order
    independent, so the same rows give the same digest however Spark partitions them.
    """
    from pyspark.sql import functions as F

    sums = [F.sum(F.hash(F.col(f"`{c}`")).cast("decimal(38,0)")).alias(f"h{i}") for i, c in enumerate(df.columns)]
    row = df.agg(F.count(F.lit(1)).alias("rows"), *sums).collect()[0]
    text = json.dumps([df.schema.simpleString(), list(row)], default=str)
    return hashlib.md5(text.encode()).hexdigest()


def _unknown_item_ids(interactions: pd.DataFrame, items: pd.DataFrame) -> list[Any]:
    """The item ids of `interactions` that `items` lacks: the referential check's value set.

    The suite expects item_id values *not* in this set, which is the same verdict as "in the
    catalogue" but hands GX the handful of offending ids instead of the whole catalogue: GX copies
    and serialises an expectation's kwargs many times per run, and a 100k-id value set cost 75 of
    94 s validating 20M rows (docs/scaling.md). Arrow string columns make both `unique` calls
    cheap. Unusable items (no item_id column, not a frame) make every interacted id unknown, so
    every interaction fails; unhashable interaction ids give an empty set (their type check fails).
    """
    try:
        seen = pd.Index(interactions[ITEM_COL].dropna().unique())
    except (KeyError, TypeError, AttributeError):  # no item_id column (reported by GX), unhashable values
        return []
    try:
        known = items[ITEM_COL].dropna().unique()
    except (KeyError, TypeError, AttributeError):
        known = []
    return seen[~seen.isin(known)].tolist()


def _statistics(run: ExpectationSuiteValidationResult) -> dict[str, int]:
    stats = run.statistics
    return {
        "evaluated": int(stats["evaluated_expectations"]),
        "successful": int(stats["successful_expectations"]),
        "unsuccessful": int(stats["unsuccessful_expectations"]),
    }


def _build_docs(ctx: EphemeralDataContext, docs_dir: Path) -> Path | None:
    """Render the results of this call into the site; a docs failure must not hide the verdict."""
    try:
        ctx.build_data_docs(site_names=[_SITE])
    except Exception:
        log.exception("could not build Data Docs in %s", docs_dir)
        return None
    index = docs_dir / "index.html"
    return index if index.is_file() else None
