"""The dataset store: interactions as Parquet partitioned by month, appended to, rewritten only to erase.

Layout of a store folder (any dataset with this layout is a dataset name: its path):

    <root>/items.parquet                                   the catalogue (replaced as a whole)
    <root>/interactions/month=2011-12/part-<digest>.parquet one file per append and month

Why Parquet by month read with pyarrow: a retrain on a year of data reads only the columns and
months it needs (partition pruning and column projection happen in pyarrow's C++ reader, not in
pandas), new data lands as new files so history is never rewritten (a killed append leaves at
most a temporary file, never half a partition), and the validation gate can check each new
month once. pyarrow is already a dependency of pandas, MLflow and GX here; Polars or DuckDB
would add a second columnar engine for the same reads (see docs/scaling.md).

Strings come back as pandas' Arrow-backed `string[pyarrow]` dtype: 14 bytes an id instead of 63
as Python string objects (1M ids of up to six characters), and what lets GX check column types
by dtype instead of value by value.

The one rewrite is an erasure (`remove_users`, for recsys.privacy): only the files holding the
user are rewritten, each to a temporary name and renamed over itself, so a killed erasure
leaves every file whole (old or new) and running it again finishes the job.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pyarrow.parquet as pq

from recsys.schemas import EVENT_COL, INTERACTION_COLUMNS, ITEM_COL, ITEM_COLUMNS, TS_COL, USER_COL, WEIGHT_COL

INTERACTIONS_DIR = "interactions"
ITEMS_FILE = "items.parquet"
KEY = [USER_COL, ITEM_COL, TS_COL]  # one event: the store never holds the same key twice
SCHEMA = pa.schema([(USER_COL, pa.string()), (ITEM_COL, pa.string()), (TS_COL, pa.timestamp("ns")), (EVENT_COL, pa.string()), (WEIGHT_COL, pa.float64())])


@dataclass(frozen=True)
class AppendResult:
    """What one append wrote: new files (one per month touched) and rows kept or dropped as already stored."""

    files: list[Path]
    rows_written: int
    rows_duplicate: int


@dataclass(frozen=True)
class Snapshot:
    """A version of the store: its files at one moment, and a digest of them (names and sizes).

    Reading a snapshot reads only the columns and months asked for, and never files appended
    after it was taken (flows pass the store's path: each task takes its own snapshot).
    """

    root: Path
    files: tuple[str, ...]  # paths relative to root, sorted
    rows: int
    digest: str

    @property
    def months(self) -> list[str]:
        """The months present ('2011-12'), oldest first."""
        return sorted({_month_of(f) for f in self.files})

    def read(
        self,
        columns: list[str] | None = None,
        until: str | pd.Timestamp | None = None,
        months: list[str] | None = None,
        files: list[str] | None = None,
    ) -> pd.DataFrame:
        """The interactions (canonical columns), only of `months`/`files` and before `until` when given."""
        files = [self.root / f for f in self.files if (months is None or _month_of(f) in months) and (files is None or f in files)]
        if not files:
            return _empty(columns)
        dataset = pds.dataset([str(f) for f in files], schema=SCHEMA, format="parquet")
        where = pc.field(TS_COL) < pa.scalar(pd.Timestamp(until).as_unit("ns"), pa.timestamp("ns")) if until is not None else None
        table = dataset.to_table(columns=columns or INTERACTION_COLUMNS, filter=where)
        return table.to_pandas(types_mapper=_pandas_type, self_destruct=True)

    def items(self) -> pd.DataFrame:
        return pq.read_table(self.root / ITEMS_FILE).to_pandas(types_mapper=_pandas_type)


def is_store(path: Path) -> bool:
    """True for a folder laid out as a store (an items file and an interactions folder)."""
    return (path / ITEMS_FILE).is_file() and (path / INTERACTIONS_DIR).is_dir()


def snapshot(root: Path) -> Snapshot:
    """The store's current files, with a digest that changes when any file is added."""
    root = Path(root)
    files = sorted(str(p.relative_to(root)) for p in (root / INTERACTIONS_DIR).glob("month=*/*.parquet"))
    rows = sum(pq.ParquetFile(root / f).metadata.num_rows for f in files)
    listing = "\n".join(f"{f}:{(root / f).stat().st_size}" for f in files)
    items = (root / ITEMS_FILE).stat().st_size if (root / ITEMS_FILE).exists() else 0
    digest = hashlib.sha256(f"{listing}\nitems:{items}".encode()).hexdigest()[:16]
    return Snapshot(root, tuple(files), rows, digest)


def write_items(root: Path, items: pd.DataFrame) -> Path:
    """Replace the catalogue (it is small: one row per item)."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / ITEMS_FILE
    _atomic_write(pa.Table.from_pandas(items[ITEM_COLUMNS], preserve_index=False), path)
    return path


def append(root: Path, interactions: pd.DataFrame) -> AppendResult:
    """Add interactions to their months; events already stored (same user, item, time) are dropped.

    Each month touched gets one new file named by the digest of its rows, written to a temporary
    name and renamed, so an append interrupted midway leaves the stored months as they were and a
    repeated append of the same rows writes nothing.
    """
    root = Path(root)
    frame = interactions[INTERACTION_COLUMNS].astype({TS_COL: "datetime64[ns]"})
    written: list[Path] = []
    kept = 0
    for month, rows in frame.groupby(frame[TS_COL].to_numpy().astype("datetime64[M]"), sort=True):
        folder = root / INTERACTIONS_DIR / f"month={np.datetime_as_string(np.datetime64(month, 'M'))}"
        fresh = _drop_stored(rows.drop_duplicates(KEY), folder)
        if fresh.empty:
            continue
        fresh = fresh.sort_values([TS_COL, USER_COL, ITEM_COL], kind="stable")
        table = pa.Table.from_pandas(fresh, schema=SCHEMA, preserve_index=False)
        digest = hashlib.sha256(pd.util.hash_pandas_object(fresh, index=False).to_numpy().tobytes()).hexdigest()[:16]
        path = folder / f"part-{digest}.parquet"
        _atomic_write(table, path)
        written.append(path)
        kept += len(fresh)
    return AppendResult(written, kept, len(frame) - kept)


def remove_users(root: Path, user_ids: set[str]) -> int:
    """Delete every interaction of `user_ids` from the store; return how many rows went.

    Each file is first read for its user column only; a file without them is left as it is
    (name, bytes and the validation gate's record of it). A file left empty is deleted.
    """
    root, removed = Path(root), 0
    wanted = pa.array(sorted(user_ids), pa.string())
    for path in sorted((root / INTERACTIONS_DIR).glob("month=*/*.parquet")):
        hits = pc.sum(pc.is_in(pq.read_table(path, columns=[USER_COL])[USER_COL], value_set=wanted)).as_py() or 0
        if not hits:
            continue
        table = pq.read_table(path, schema=SCHEMA)
        kept = table.filter(pc.invert(pc.is_in(table[USER_COL], value_set=wanted)))
        if kept.num_rows:
            _atomic_write(kept, path)
        else:
            path.unlink()
        removed += hits
    return removed


def _drop_stored(rows: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """`rows` less the events this month already holds (only this month's key columns are read)."""
    files = sorted(folder.glob("*.parquet"))
    if not files:
        return rows
    stored = pds.dataset([str(f) for f in files], schema=SCHEMA, format="parquet").to_table(columns=KEY).to_pandas(types_mapper=_pandas_type)
    key = rows[KEY].astype({USER_COL: "string[pyarrow]", ITEM_COL: "string[pyarrow]"})
    seen = key.merge(stored.drop_duplicates(), on=KEY, how="left", indicator=True)["_merge"].to_numpy() == "both"
    return rows[~seen]


def _atomic_write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def _month_of(relative: str) -> str:
    return Path(relative).parent.name.removeprefix("month=")


def _pandas_type(arrow_type: pa.DataType) -> pd.api.extensions.ExtensionDtype | None:
    """Arrow strings stay Arrow-backed in pandas; other types take pandas' defaults."""
    return pd.StringDtype("pyarrow") if arrow_type in (pa.string(), pa.large_string()) else None


def _empty(columns: list[str] | None) -> pd.DataFrame:
    return SCHEMA.empty_table().select(columns or INTERACTION_COLUMNS).to_pandas(types_mapper=_pandas_type)
