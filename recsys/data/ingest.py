"""Read datasets as their publishers distribute them and return the canonical tables.

Canonical interactions: user_id, item_id (strings), timestamp (datetime64[ns]), event, weight.
Canonical items: item_id, title, category, price (NaN where unknown).

Online Retail cleaning rules (documented in recsys/data/ONLINE_RETAIL.md):
1. lines without a CustomerID are dropped (no user to learn from);
2. cancelled invoices (InvoiceNo starting with "C") and lines with Quantity <= 0
   (returns and stock adjustments) are dropped;
3. lines with UnitPrice <= 0 (free samples, write-offs) are dropped;
4. non-product stock codes (postage, fees, manual adjustments: codes without 5 leading
   digits, such as POST, DOT, M, BANK CHARGES) are dropped;
5. lines of the same customer, item and minute are one event whose weight is the summed quantity.
"""

from __future__ import annotations

import re
import shutil
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from recsys.data import store
from recsys.schemas import (
    CATEGORY_COL,
    EVENT_COL,
    INTERACTION_COLUMNS,
    ITEM_COL,
    ITEM_COLUMNS,
    PRICE_COL,
    TITLE_COL,
    TS_COL,
    USER_COL,
    WEIGHT_COL,
)
from recsys.settings import get_settings
from recsys.tombstones import Tombstones

BUNDLED_ONLINE_RETAIL = Path(__file__).with_name("online_retail.parquet")
DATASETS = ("online-retail", "ml-100k", "ml-latest-small")
DOWNLOADS = {
    "online-retail": "https://archive.ics.uci.edu/static/public/352/online+retail.zip",
    "ml-100k": "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    "ml-latest-small": "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
}
_PRODUCT_CODE = re.compile(r"^\d{5}")
_RETAIL_COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]


@dataclass(frozen=True)
class Dataset:
    """A dataset in canonical form, with a name that says where it came from."""

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame


def read_online_retail_raw(path: Path | None = None) -> pd.DataFrame:
    """The raw Online Retail lines from UCI's xlsx, a CSV(.gz) of it, or the bundled Parquet."""
    path = path or BUNDLED_ONLINE_RETAIL
    suffixes = "".join(path.suffixes)
    if suffixes.endswith(".parquet"):
        raw = pd.read_parquet(path)
    elif suffixes.endswith(".xlsx"):
        raw = pd.read_excel(path, dtype={"InvoiceNo": str, "StockCode": str})
    else:
        raw = pd.read_csv(
            path,
            dtype={"InvoiceNo": str, "StockCode": str},
            keep_default_na=False,
            na_values={"Description": [""], "CustomerID": [""]},
        )
    missing = set(_RETAIL_COLUMNS) - set(raw.columns)
    if missing:
        raise ValueError(f"{path}: not an Online Retail file, missing columns {sorted(missing)}")
    text = ["InvoiceNo", "StockCode", "Description", "Country"]
    raw[text] = raw[text].astype(object)  # the Parquet copy stores them as categoricals
    return raw


def _category_of(title: str) -> str:
    """The last word of a product description ('... T-LIGHT HOLDER' → 'HOLDER')."""
    words = re.findall(r"[A-Z]+", str(title).upper())
    return words[-1] if words else "OTHER"


def clean_online_retail(raw: pd.DataFrame, top_categories: int = 80) -> Dataset:
    """Apply the documented cleaning rules (module docstring) to raw Online Retail lines."""
    df = raw.copy()
    df["InvoiceNo"] = df["InvoiceNo"].astype(str)
    df["StockCode"] = df["StockCode"].astype(str).str.upper()
    df = df[df["CustomerID"].notna()]
    df = df[~df["InvoiceNo"].str.startswith("C") & (df["Quantity"] > 0)]
    df = df[df["UnitPrice"] > 0]
    df = df[df["StockCode"].str.match(_PRODUCT_CODE)]
    df = df.assign(
        user_id=df["CustomerID"].astype("int64").astype(str),
        timestamp=pd.to_datetime(df["InvoiceDate"]).astype("datetime64[ns]"),
    )
    interactions = (
        df.groupby([USER_COL, "StockCode", TS_COL], as_index=False, observed=True)["Quantity"]
        .sum()
        .rename(columns={"StockCode": ITEM_COL, "Quantity": WEIGHT_COL})
    )
    interactions[EVENT_COL] = "purchase"
    interactions[WEIGHT_COL] = interactions[WEIGHT_COL].astype("float64")

    desc = df.dropna(subset=["Description"])
    titles = desc.groupby("StockCode", observed=True)["Description"].agg(lambda s: s.mode().iat[0])
    prices = df.groupby("StockCode", observed=True)["UnitPrice"].median()
    items = pd.DataFrame({ITEM_COL: interactions[ITEM_COL].unique()})
    items[TITLE_COL] = items[ITEM_COL].map(titles).fillna("").astype(str).str.strip()
    category = items[TITLE_COL].map(_category_of)
    common = category.value_counts().index[:top_categories]
    items[CATEGORY_COL] = category.where(category.isin(common), "OTHER")
    items[PRICE_COL] = items[ITEM_COL].map(prices).astype("float64")
    return Dataset("online-retail", _canonical(interactions), items[ITEM_COLUMNS])


def load_online_retail(path: Path | None = None) -> Dataset:
    """Online Retail in canonical form (default: the compact copy bundled with recsys)."""
    return clean_online_retail(read_online_retail_raw(path))


def load_movielens_100k(folder: Path) -> Dataset:
    """MovieLens 100K from GroupLens's `ml-100k/` folder (u.data, u.item)."""
    ratings = pd.read_csv(folder / "u.data", sep="\t", names=[USER_COL, ITEM_COL, "rating", "unix"], dtype=str)
    genres = pd.read_csv(folder / "u.genre", sep="|", names=["genre", "idx"], encoding="latin-1")
    item_cols = ["id", "title", "release", "video", "url", *genres["genre"].tolist()]
    raw_items = pd.read_csv(folder / "u.item", sep="|", names=item_cols, encoding="latin-1", dtype={"id": str})
    genre_flags = raw_items[genres["genre"].tolist()].to_numpy()
    first_genre = [genres["genre"].iat[row.argmax()] if row.any() else "unknown" for row in genre_flags]
    items = pd.DataFrame({ITEM_COL: raw_items["id"], TITLE_COL: raw_items["title"].fillna(""), CATEGORY_COL: first_genre})
    return _movielens("ml-100k", ratings, items)


def load_movielens_latest_small(folder: Path) -> Dataset:
    """MovieLens latest-small from GroupLens's `ml-latest-small/` folder (ratings.csv, movies.csv)."""
    ratings = pd.read_csv(folder / "ratings.csv", dtype=str).rename(columns={"userId": USER_COL, "movieId": ITEM_COL, "timestamp": "unix"})
    movies = pd.read_csv(folder / "movies.csv", dtype=str)
    items = pd.DataFrame(
        {
            ITEM_COL: movies["movieId"],
            TITLE_COL: movies["title"].fillna(""),
            CATEGORY_COL: movies["genres"].str.split("|").str[0].fillna("unknown"),
        }
    )
    return _movielens("ml-latest-small", ratings, items)


def _movielens(name: str, ratings: pd.DataFrame, items: pd.DataFrame) -> Dataset:
    interactions = pd.DataFrame(
        {
            USER_COL: ratings[USER_COL].astype(str),
            ITEM_COL: ratings[ITEM_COL].astype(str),
            TS_COL: pd.to_datetime(ratings["unix"].astype("int64"), unit="s").astype("datetime64[ns]"),
            EVENT_COL: "rating",
            WEIGHT_COL: ratings["rating"].astype("float64"),
        }
    )
    items = items[items[ITEM_COL].isin(interactions[ITEM_COL])].copy()
    items[PRICE_COL] = float("nan")
    return Dataset(name, _canonical(interactions), items[ITEM_COLUMNS].reset_index(drop=True))


def load_interactions_file(path: Path, items_path: Path | None = None) -> Dataset:
    """A generic CSV or Parquet that already has the canonical interaction columns.

    The item table is `items_path`, else `<name>.items.<suffix>` beside it when present,
    else one derived from the interactions (no titles, categories or prices).
    """
    sibling = path.with_name(f"{path.stem}.items{path.suffix}")
    items_path = items_path or (sibling if sibling.exists() else None)
    reader = pd.read_parquet if path.suffix == ".parquet" else pd.read_csv
    interactions = reader(path)
    missing = set(INTERACTION_COLUMNS) - set(interactions.columns)
    if missing:
        raise ValueError(f"{path}: missing canonical columns {sorted(missing)}")
    interactions[USER_COL] = _ids_as_str(interactions[USER_COL])
    interactions[ITEM_COL] = _ids_as_str(interactions[ITEM_COL])
    interactions[TS_COL] = pd.to_datetime(interactions[TS_COL]).astype("datetime64[ns]")
    if items_path is not None:
        items = (pd.read_parquet if items_path.suffix == ".parquet" else pd.read_csv)(items_path)
        items[ITEM_COL] = _ids_as_str(items[ITEM_COL])
    else:
        items = pd.DataFrame({ITEM_COL: interactions[ITEM_COL].unique(), TITLE_COL: "", CATEGORY_COL: "unknown"})
        items[PRICE_COL] = float("nan")
    return Dataset(path.stem, _canonical(interactions), items[ITEM_COLUMNS].reset_index(drop=True))


def _ids_as_str(ids: pd.Series) -> pd.Series:
    """Ids as strings, keeping missing ones missing so the validation gate sees them."""
    return ids.astype(object).where(ids.isna(), ids.astype(str))


def _canonical(interactions: pd.DataFrame) -> pd.DataFrame:
    return interactions[INTERACTION_COLUMNS].sort_values([TS_COL, USER_COL, ITEM_COL]).reset_index(drop=True)


def load_dataset(name: str, data_dir: Path | None = None, until: str | None = None) -> Dataset:
    """A dataset by name, with only the interactions before `until` when it is given.

    `data_dir` holds the publishers' folders (e.g. ../shared/data); Online Retail falls back
    to the copy bundled with recsys. A path to a dataset store (recsys.data.store: Parquet
    partitioned by month) is read with the time filter pushed down to the files.

    Users who were forgotten (this install's tombstones: recsys.tombstones) are dropped here,
    so no training, evaluation or monitoring load brings them back, whichever source holds them.
    """
    forgotten = Tombstones.of(get_settings())
    if store.is_store(Path(name)):  # a partitioned store reads only the months before `until`
        snap = store.snapshot(Path(name))
        return Dataset(Path(name).name, forgotten.drop(snap.read(until=until)), snap.items())
    dataset = _load_by_name(name, data_dir)
    interactions = dataset.interactions
    if until is not None:
        interactions = interactions[interactions[TS_COL] < pd.Timestamp(until)].reset_index(drop=True)
    return Dataset(dataset.name, forgotten.drop(interactions), dataset.items)


def _load_by_name(name: str, data_dir: Path | None) -> Dataset:
    if name == "online-retail":
        return load_online_retail()  # the bundled copy (same lines as UCI's, see ONLINE_RETAIL.md)
    if data_dir is None:
        raise ValueError(f"dataset {name!r} needs a data folder (MovieLens is never bundled)")
    if name == "ml-100k":
        return load_movielens_100k(data_dir / "ml-100k")
    if name == "ml-latest-small":
        return load_movielens_latest_small(data_dir / "ml-latest-small")
    path = Path(name)
    if path.suffix in {".csv", ".parquet"}:
        return load_interactions_file(path)
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}, a .csv/.parquet path or a dataset store folder")


def download(name: str, data_dir: Path) -> Path:
    """Download a dataset from its publisher into `data_dir/<name>/` (needs the internet)."""
    if name not in DOWNLOADS:
        raise ValueError(f"no download for {name!r}; known: {', '.join(DOWNLOADS)}")
    target = data_dir / name
    target.mkdir(parents=True, exist_ok=True)
    archive = data_dir / f"{name}.zip"
    urllib.request.urlretrieve(DOWNLOADS[name], archive)
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            if member.is_dir():
                continue
            (target / Path(member.filename).name).write_bytes(zf.read(member))
    archive.unlink()
    return target


def as_store(name: str, data_dir: Path | None, stores_dir: Path) -> store.Snapshot | None:
    """The snapshot of the dataset store behind `name`, ingesting a named dataset on first use.

    A store path is taken as it is. A named dataset (online-retail, ml-100k, ml-latest-small) is
    cleaned once into `stores_dir/<name>` (built beside it and renamed, so a killed ingest leaves
    nothing half-written), and every later task reads its Parquet instead of cleaning the
    publisher's files again. A plain .csv/.parquet file has no store (None): it is read whole,
    so a malformed file still reaches the validation gate as it is. To re-ingest after a change
    to the cleaning rules, delete the folder. Forgotten users (recsys.tombstones) never
    enter the store.
    """
    path = Path(name)
    if store.is_store(path):
        return store.snapshot(path)
    if name not in DATASETS:
        return None
    target = stores_dir / name
    if not store.is_store(target):
        data = _load_by_name(name, data_dir)
        forgotten = Tombstones.of(get_settings())
        building = stores_dir / f".{name}.building"
        shutil.rmtree(building, ignore_errors=True)
        store.write_items(building, data.items)
        store.append(building, forgotten.drop(data.interactions))
        shutil.rmtree(target, ignore_errors=True)
        building.rename(target)
    return store.snapshot(target)
