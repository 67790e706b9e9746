"""Nearest-neighbour search over item vectors, chosen, built and checked at promotion.

Scoring every item for every request is what dominates serving as a catalogue grows, so a
large catalogue's champion ships with a faiss HNSW index (inner product, the model's score).
It is built once at promotion, checked against exact search (recall@100 >= 0.99; a graph that
misses it even searched as deep as the catalogue is replaced by exact search) and written with
`faiss.write_index` into the BentoML model folder: no pickles. A small catalogue is served by
exact search instead (`EXACT_MAX_SCAN`): a matrix product and faiss's heap (`best_k`) cost less
than walking a graph there, and miss nothing. Exact search (a flat inner-product index) is
also the reference of the check and the fallback when no index was shipped or an approximate
search comes back short.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

INDEX_FILE = "items.hnsw.faiss"
RECALL_K = 100
MIN_RECALL = 0.99
HNSW_M = 32
EF_CONSTRUCTION = 200
EF_START = 64
RECALL_QUERIES = 2000
# Below this many dimensions the score is (nearly) a sort by one number: a graph has nothing
# to navigate (HNSW measured 0.95 recall@100 on 1-d popularity vectors), and exact is cheap.
MIN_HNSW_DIM = 4
# Exact search when one query's scan (items x dimensions) is at most this many multiply-adds.
# Measured on 2 cores, 64 dimensions, 30 seen items masked, k=10, per user: one query at a
# time, exact (matrix product + `best_k`) 28 us at 3,659 items, 67 at 20,000, 129 at 30,000,
# against HNSW (efSearch 64) 63, 97 and 121; in batches of 64 users, exact 8, 32 and 53 against
# 56, 93 and 142. So exact up to about 30,000 items at 64 dimensions, where one query's scan
# still costs no more than the graph and a batch's costs far less.
EXACT_MAX_SCAN = 2_000_000


@dataclass(frozen=True)
class IndexReport:
    """What the promotion check found: recall@k against exact search and the search depth used."""

    kind: str  # "hnsw" or "flat" (exact)
    recall: float
    k: int
    ef_search: int  # HNSW's search depth; for "flat" after HNSW failed, the depth it reached
    n_items: int

    @property
    def passed(self) -> bool:
        return self.recall >= MIN_RECALL


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def exact_index(item_vectors: np.ndarray) -> faiss.Index:
    """Flat inner-product index: exact top-k, the reference and the fallback."""
    index = faiss.IndexFlatIP(item_vectors.shape[1])
    index.add(_f32(item_vectors))
    return index


def best_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's `k` best (items, scores), best first, from a (users, items) score matrix.

    faiss's k-sized heap in one pass over each row (`float_minheap_array_t`, what its flat
    search uses): 2 us a row of 3,659 items for k=10, where numpy's argpartition and argsort
    took 35. An item scored -inf (seen, masked by the caller) never enters: a row with fewer
    than `k` others is padded with item -1, as a faiss search pads.
    """
    scores = _f32(scores)
    n_rows, n_items = scores.shape
    top_scores = np.empty((n_rows, k), dtype=np.float32)
    top = np.empty((n_rows, k), dtype=np.int64)
    heaps = faiss.float_minheap_array_t()  # a min-heap per row keeps the k largest
    heaps.nh, heaps.k, heaps.val, heaps.ids = n_rows, k, faiss.swig_ptr(top_scores), faiss.swig_ptr(top)
    heaps.heapify()
    heaps.addn(n_items, faiss.swig_ptr(scores))
    heaps.reorder()  # best first
    return top, top_scores


def build_hnsw(item_vectors: np.ndarray) -> faiss.IndexHNSWFlat:
    """HNSW graph over the item vectors, scored by inner product like the model."""
    faiss.omp_set_num_threads(1)  # deterministic insertion order: same graph on every build
    index = faiss.IndexHNSWFlat(item_vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    index.add(_f32(item_vectors))
    index.hnsw.efSearch = EF_START
    return index


def kth_exact_score(item_vectors: np.ndarray, queries: np.ndarray, k: int = RECALL_K) -> np.ndarray:
    """Each query's k-th best exact score, shape (n, 1): the bar a found item must reach."""
    k = min(k, len(item_vectors))
    return exact_index(item_vectors).search(_f32(queries), k)[0][:, -1:]


def recall_at_k(index: faiss.Index, item_vectors: np.ndarray, queries: np.ndarray, k: int = RECALL_K, kth_exact: np.ndarray | None = None) -> float:
    """Share of the exact top-k found by `index`, counting ties with the k-th score as found.

    Ties matter: popularity-like vectors give many items the same score, and any of them is
    an equally right answer, so an item counts when its exact score reaches the k-th best.
    Our indexes keep the full vectors (flat storage), so the scores a search returns are the
    true inner products. `kth_exact` (from `kth_exact_score`) saves the exact search when
    several settings of one index are checked against the same queries.
    """
    k = min(k, len(item_vectors))
    queries = _f32(queries)
    if kth_exact is None:
        kth_exact = kth_exact_score(item_vectors, queries, k)
    scores, found = index.search(queries, k)
    threshold = kth_exact - 1e-5 * np.maximum(1.0, np.abs(kth_exact))
    hits = (found >= 0) & (scores >= threshold)
    return float(hits.sum() / (len(queries) * k))


def build_checked(item_vectors: np.ndarray, queries: np.ndarray, seed: int = 0, max_exact_scan: int = EXACT_MAX_SCAN) -> tuple[faiss.Index, IndexReport]:
    """The exact index for a catalogue of at most `max_exact_scan` items x dimensions
    (`EXACT_MAX_SCAN`), else an HNSW index with the smallest efSearch (doubling from 64) whose
    recall passes.

    `queries` are the vectors the index will really be asked with (a sample of user vectors).
    If recall still fails at efSearch >= n_items, the exact (flat) index is checked and
    returned instead: a graph searched that deep visits about every item anyway, so a flat scan
    costs no more and is exact. (EASE's and item-kNN's vectors, one dimension per item, are
    such a case on small catalogues: refusing their promotion for an index they do not rank
    with, recall 0.94 on the test shop, stopped a blessed model.) The caller refuses only an
    index whose report does not pass, which an exact one does unless MIN_RECALL is above 1.
    Vectors of fewer than MIN_HNSW_DIM dimensions get the exact index too (checked all the same).
    """
    rng = np.random.default_rng(seed)
    if len(queries) > RECALL_QUERIES:
        queries = queries[rng.choice(len(queries), RECALL_QUERIES, replace=False)]
    k = min(RECALL_K, len(item_vectors))
    if item_vectors.shape[1] < MIN_HNSW_DIM or item_vectors.size <= max_exact_scan:
        index = exact_index(item_vectors)
        return index, IndexReport("flat", recall_at_k(index, item_vectors, queries, k), k, 0, len(item_vectors))
    index, kth_exact = build_hnsw(item_vectors), kth_exact_score(item_vectors, queries, k)
    while True:
        recall = recall_at_k(index, item_vectors, queries, k, kth_exact)
        if recall >= MIN_RECALL:
            return index, IndexReport("hnsw", recall, k, index.hnsw.efSearch, len(item_vectors))
        if index.hnsw.efSearch >= len(item_vectors):
            exact = exact_index(item_vectors)
            return exact, IndexReport("flat", recall_at_k(exact, item_vectors, queries, k, kth_exact), k, index.hnsw.efSearch, len(item_vectors))
        index.hnsw.efSearch *= 2


def write(index: faiss.Index, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / INDEX_FILE
    faiss.write_index(index, str(path))
    return path


def read(folder: Path) -> faiss.Index | None:
    """The shipped index (faiss's own format, not a pickle), or None when there is none."""
    path = folder / INDEX_FILE
    return faiss.read_index(str(path)) if path.is_file() else None
