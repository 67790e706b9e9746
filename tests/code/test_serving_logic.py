"""Serving logic without BentoML: ANN answers match exact ones, seen items stay out, the
index check refuses a bad index, the log pseudonymises and loses nothing under threads."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from recsys.models.base import EmbeddingModel
from recsys.serving import index, logic
from recsys.serving.logic import Query, RequestLog, ServingModel, TopLists, pseudonymise, recommend_one
from tests.conftest import log_record


@pytest.fixture(scope="module")
def model() -> EmbeddingModel:
    """600 items in 16 clustered dimensions, 200 users with 5..40 seen items each."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 16))
    items = (centres[rng.integers(0, 12, 600)] + 0.3 * rng.normal(size=(600, 16))).astype(np.float32)
    users = (centres[rng.integers(0, 12, 200)] + 0.3 * rng.normal(size=(200, 16))).astype(np.float32)
    counts = rng.integers(5, 40, 200)
    seen = [np.sort(rng.choice(600, c, replace=False)) for c in counts]
    return EmbeddingModel(
        user_ids=np.array([f"u{i}" for i in range(200)]),
        item_ids=np.array([f"i{i}" for i in range(600)]),
        user_vectors=users,
        item_vectors=items,
        popularity=rng.integers(0, 50, 600).astype(np.float32),
        seen_indptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        seen_indices=np.concatenate(seen).astype(np.int32),
    )


@pytest.fixture(scope="module")
def served(model: EmbeddingModel, tmp_path_factory: pytest.TempPathFactory) -> ServingModel:
    ann, report = index.build_checked(model.item_vectors, model.user_vectors, max_exact_scan=0)  # a graph, though the catalogue is small
    assert report.kind == "hnsw" and report.passed and report.k == 100
    folder = tmp_path_factory.mktemp("bento")
    index.write(ann, folder)
    model.save(folder / "export")
    return ServingModel.load(folder, folder / "export", {"version": "7"})


def test_shipped_index_is_read_back_from_faiss_format(served: ServingModel) -> None:
    assert served.index.__class__.__name__ == "IndexHNSWFlat" and served.version == "7"


def test_ann_answers_match_exact_search_and_exclude_seen(model: EmbeddingModel, served: ServingModel) -> None:
    queries = [Query(f"u{u}", 20) for u in range(0, 200, 5)]
    overlap = []
    for q, rec in zip(queries, served.recommend(queries)):
        exact = recommend_one(model, q.user_id, q.k)
        got = [i for i, _ in rec.items]
        assert len(got) == 20 and not rec.fallback and rec.history_len == len(model.seen(model.user_index[q.user_id]))
        assert not set(got) & set(model.item_ids[model.seen(model.user_index[q.user_id])].tolist())
        scores = [s for _, s in rec.items]
        assert scores == sorted(scores, reverse=True)
        overlap.append(len(set(got) & {i for i, _ in exact.items}) / 20)
    assert np.mean(overlap) >= 0.98


def test_exclude_seen_false_may_return_seen_items(model: EmbeddingModel, served: ServingModel) -> None:
    user = "u3"
    seen = set(model.item_ids[model.seen(3)].tolist())
    with_seen = served.recommend([Query(user, 100, exclude_seen=False)])[0]
    exact = recommend_one(model, user, 100, exclude_seen=False)
    assert {i for i, _ in with_seen.items} & seen == {i for i, _ in exact.items} & seen != set()


def test_batch_mixes_known_unknown_and_different_k(served: ServingModel) -> None:
    recs = served.recommend([Query("u1", 3), Query("nobody", 5), Query("u2", 50, explain=True)])
    assert [len(r.items) for r in recs] == [3, 5, 50]
    assert [r.fallback for r in recs] == [False, True, False]
    assert recs[0].because is None and recs[2].because is not None and all(recs[2].because)


def test_a_batch_answers_each_user_as_alone_whatever_their_history(model: EmbeddingModel, tmp_path: Path) -> None:
    """Users with 5..40 seen items and k of 1..60 in one batch (one matrix product, each row's own k):
    each gets the list it gets alone."""
    model.save(tmp_path / "export")
    exact = ServingModel.load(tmp_path, tmp_path / "export", {"version": "1"})
    queries = [Query(f"u{u}", 1 + u % 60) for u in range(0, 200, 3)] + [Query("nobody", 4), Query("u7", 9, exclude_seen=False)]
    alone = [[i for i, _ in exact.recommend([q])[0].items] for q in queries]
    assert [[i for i, _ in r.items] for r in exact.recommend(queries)] == alone
    assert [len(items) for items in alone] == [q.k for q in queries]


def test_explanations_name_seen_items(model: EmbeddingModel, served: ServingModel) -> None:
    rec = served.recommend([Query("u4", 5, explain=True)])[0]
    assert set(rec.because) <= set(model.item_ids[model.seen(4)].tolist())


def test_similar_items_excludes_itself_and_unknown_is_none(served: ServingModel) -> None:
    similar = served.similar("i10", 8)
    assert len(similar) == 8 and "i10" not in [i for i, _ in similar]
    assert served.similar("no-such-item", 8) is None


def test_missing_index_falls_back_to_exact(model: EmbeddingModel, tmp_path: Path) -> None:
    model.save(tmp_path / "export")
    exact = ServingModel.load(tmp_path, tmp_path / "export", {"version": "1"})
    assert exact.info["index_kind"] == "flat"
    rec = exact.recommend([Query("u5", 10)])[0]
    assert [i for i, _ in rec.items] == [i for i, _ in recommend_one(model, "u5", 10).items]


def test_recall_check_refuses_an_index_that_misses(model: EmbeddingModel, monkeypatch: pytest.MonkeyPatch) -> None:
    weak = index.build_hnsw(model.item_vectors)
    weak.hnsw.efSearch = 1
    rng = np.random.default_rng(1)
    random_users = rng.normal(size=(300, 16)).astype(np.float32)
    assert index.recall_at_k(weak, model.item_vectors, random_users) < index.MIN_RECALL
    # with a bar no index can reach, build_checked searches up to the whole catalogue, then checks exact search: it fails too, and says so
    monkeypatch.setattr(index, "MIN_RECALL", 1.01)
    _, refused = index.build_checked(model.item_vectors, random_users, max_exact_scan=0)
    assert refused.kind == "flat" and not refused.passed and refused.ef_search >= model.n_items


def test_a_graph_that_fails_at_full_depth_gives_way_to_exact_search(model: EmbeddingModel, monkeypatch: pytest.MonkeyPatch) -> None:
    # a graph over other vectors finds the wrong items at any depth
    lost = index.build_hnsw(np.random.default_rng(2).normal(size=model.item_vectors.shape).astype(np.float32))
    monkeypatch.setattr(index, "build_hnsw", lambda vectors: lost)
    ann, report = index.build_checked(model.item_vectors, model.user_vectors, max_exact_scan=0)
    assert report.kind == "flat" and report.passed and report.recall == 1.0 and report.ef_search >= model.n_items
    queries = model.user_vectors[:20]
    assert (ann.search(queries, 10)[1] == index.exact_index(model.item_vectors).search(queries, 10)[1]).all()


def test_a_small_catalogue_gets_exact_search_and_a_large_one_a_graph(model: EmbeddingModel) -> None:
    small, report = index.build_checked(model.item_vectors, model.user_vectors)  # 600 items x 16 dimensions
    assert model.item_vectors.size <= index.EXACT_MAX_SCAN and report.kind == "flat" and report.recall == 1.0 and small.ntotal == 600
    _, large = index.build_checked(model.item_vectors, model.user_vectors, max_exact_scan=model.item_vectors.size - 1)
    assert large.kind == "hnsw" and large.passed


def test_exact_serving_ranks_as_full_scoring_does(model: EmbeddingModel, tmp_path: Path) -> None:
    """The exact paths (lists ranked at load; one product per request, seen items masked, faiss's
    heap) give exactly the lists and scores of scoring every item, and fewer than k when fewer
    items are left unseen."""
    model.save(tmp_path / "export")
    exact = ServingModel.load(tmp_path, tmp_path / "export", {"version": "1"})
    assert exact.top_lists is not None and exact.top_lists.depth == 100
    queries = [Query(f"u{u}", 10 + u % 30, exclude_seen=u % 4 != 0) for u in range(200)] + [Query("u9", 600)]
    for served in (exact, replace(exact, top_lists=None)):
        recs = served.recommend(queries)
        for q, rec in zip(queries, recs):
            reference = [(i, s) for i, s in recommend_one(model, q.user_id, q.k, q.exclude_seen).items if np.isfinite(s)]  # full scoring pads with -inf
            assert [i for i, _ in rec.items] == [i for i, _ in reference]
            assert [s for _, s in rec.items] == pytest.approx([s for _, s in reference], rel=1e-5, abs=1e-5)
        assert len(recs[-1].items) == 600 - len(model.seen(9))


def test_lists_ranked_at_load_drop_their_padding() -> None:
    lists = TopLists(np.array([[4, 2, -1, -1]], np.int32), np.array([[0.9, 0.5, -np.inf, -np.inf]], np.float32))
    top, scores = lists.best(0, 3)
    assert top.tolist() == [4, 2] and scores.tolist() == pytest.approx([0.9, 0.5])


def test_lists_are_ranked_at_load_only_for_exact_search_within_budget(
    model: EmbeddingModel, served: ServingModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert served.top_lists is None  # a graph: its catalogue is too large to rank every user
    model.save(tmp_path / "export")
    monkeypatch.setattr(logic, "TOP_LISTS_MAX_SCAN", len(model.user_ids) * model.item_vectors.size - 1)
    assert ServingModel.load(tmp_path, tmp_path / "export", {"version": "1"}).top_lists is None


def test_a_graph_that_comes_back_short_is_made_up_by_exact_scoring(model: EmbeddingModel) -> None:
    partial = index.build_hnsw(model.item_vectors[:50])  # finds at most 50 items, fewer than asked
    served = ServingModel(model, partial, {"version": "1"})
    rec = served.recommend([Query("u5", 60)])[0]
    assert [i for i, _ in rec.items] == [i for i, _ in recommend_one(model, "u5", 60).items]


def test_best_k_keeps_each_rows_best_and_pads_what_is_masked() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [1.0, -np.inf, -np.inf, -np.inf]], np.float32)
    top, top_scores = index.best_k(scores, 3)
    assert top.tolist() == [[1, 3, 2], [0, -1, -1]]
    assert top_scores[0].tolist() == pytest.approx([0.9, 0.7, 0.5])


def test_one_dimensional_vectors_get_the_exact_index() -> None:
    popularity = np.arange(300, dtype=np.float32)[:, None] % 7
    ann, report = index.build_checked(popularity, np.ones((10, 1), np.float32))
    assert report.kind == "flat" and report.recall == 1.0 and ann.ntotal == 300


def test_a_line_is_scrubbed_of_a_user_listed_by_the_time_it_is_written() -> None:
    lines = [("gone", log_record("r0", "x")), ("kept", log_record("r1", "x"))]
    listed: set[str] = set()
    build = partial(logic.scrubbed, lines, lambda: listed)
    assert [line.user_id for line in build()] == [line.user_id for _, line in lines]  # nobody listed yet
    listed.add("gone")  # an erasure lists them after the lines were made, before they are written
    assert [line.user_id is None for line in build()] == [True, False]


def test_log_pseudonymises_with_hmac_and_loses_no_line_under_threads(tmp_path: Path) -> None:
    key = b"k"
    assert pseudonymise("u1", key) == hmac.new(key, b"u1", hashlib.sha256).hexdigest() != pseudonymise("u1", b"other")
    log = RequestLog(tmp_path / "log.jsonl")

    def write(t: int) -> None:
        for n in range(500):
            log.append(log_record(f"{t}-{n}", "x" * 300))

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(lines) == 4000 and len({r["request_id"] for r in lines}) == 4000


@pytest.mark.parametrize("family", ["ease", "item_knn"])
def test_item_item_models_are_served_exactly_from_the_history(family: str, tmp_path: Path) -> None:
    """EASE and item-kNN rank from the rows of the user's seen items, not the index: the lists
    are the exact ones of the exported model, with and without the seen items."""
    from recsys.data.synthetic import make_synthetic
    from recsys.models.ease import EASEModel
    from recsys.models.item_knn import ItemKNNModel

    data = make_synthetic(n_users=150, n_items=120, seed=3)
    fitted = (EASEModel(l2=50.0) if family == "ease" else ItemKNNModel(neighbours=20)).fit(data.interactions, data.items).export()
    fitted.save(tmp_path / "export")
    index.write(index.exact_index(np.zeros_like(fitted.item_vectors)), tmp_path)  # an index that knows nothing: it must not be asked
    served = ServingModel.load(tmp_path, tmp_path / "export", {"version": "1"})
    assert served.model.item_vectors.flags.f_contiguous  # the rows the service sums are contiguous: no second copy
    users = np.arange(len(fitted.user_ids))
    for exclude_seen in (True, False):
        top, scores = fitted.recommend(users, 10, exclude_seen)
        answers = served.recommend([Query(str(u), 10, exclude_seen) for u in fitted.user_ids])
        assert [[i for i, _ in a.items] for a in answers] == fitted.item_ids[top].tolist()
        np.testing.assert_allclose([[s for _, s in a.items] for a in answers], scores, rtol=1e-5, atol=1e-6)
