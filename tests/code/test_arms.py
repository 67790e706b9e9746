"""Challengers in the service's logic, without BentoML: sticky canary arms, a shadow that never
changes or delays an answer, a broken canary answered for by the champion, and the log line that carries both."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest

from recsys import tombstones
from recsys.models.base import EmbeddingModel
from recsys.schemas import RequestRecord
from recsys.serving import index
from recsys.serving.arms import Deployment, ShadowWriter, assign, record, score_shadow, serve, shadowed, unit
from recsys.serving.logic import Query, Recommendation, RequestLog, ServingModel, drop_lines, pseudonymise
from recsys.settings import Settings

KEY = b"k" * 32
N_USERS, N_ITEMS = 300, 400


def embedding(seed: int, dim: int = 16) -> EmbeddingModel:
    """The same users and items with vectors of their own: another family's view of one shop."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(3, 20, N_USERS)
    return EmbeddingModel(
        user_ids=np.array([f"u{i}" for i in range(N_USERS)]),
        item_ids=np.array([f"i{i}" for i in range(N_ITEMS)]),
        user_vectors=rng.normal(size=(N_USERS, dim)).astype(np.float32),
        item_vectors=rng.normal(size=(N_ITEMS, dim)).astype(np.float32),
        popularity=rng.integers(0, 50, N_ITEMS).astype(np.float32),
        seen_indptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        seen_indices=np.concatenate([np.sort(rng.choice(N_ITEMS, c, replace=False)) for c in counts]).astype(np.int32),
    )


def serving(seed: int, version: str) -> ServingModel:
    model = embedding(seed)
    return ServingModel(model, index.exact_index(model.item_vectors), {"version": version})


def broken(seed: int, version: str) -> ServingModel:
    """A model whose user vectors do not match its item vectors, as an export gone wrong would: every known user fails."""
    model = replace(embedding(seed), user_vectors=np.zeros((N_USERS, 8), dtype=np.float32))
    return ServingModel(model, index.exact_index(model.item_vectors), {"version": version})


@pytest.fixture(scope="module")
def champion() -> ServingModel:
    return serving(0, "1")


@pytest.fixture(scope="module")
def canary() -> ServingModel:
    return serving(1, "2")


@pytest.fixture(scope="module")
def shadow() -> ServingModel:
    return serving(2, "3")


def queries() -> list[Query]:
    return [Query(f"u{i}", 10, explain=i % 3 == 0) for i in range(N_USERS)] + [Query("stranger", 5), Query("u7", 10, forgotten=True)]


def pseudonyms(qs: list[Query]) -> list[str | None]:
    return [None if q.forgotten else pseudonymise(q.user_id, KEY) for q in qs]


def test_arm_assignment_is_sticky_and_matches_the_share() -> None:
    ids = [pseudonymise(f"user-{i}", KEY) for i in range(20_000)]
    arms = [assign(p, 0.1, "v2") for p in ids]
    assert abs(arms.count("canary") / len(ids) - 0.1) <= 0.01
    assert [assign(p, 0.1, "v2") for p in ids] == arms  # the same user, the same arm, every time
    wider = [assign(p, 0.3, "v2") for p in ids]  # a larger share keeps everyone already in the canary
    assert abs(wider.count("canary") / len(ids) - 0.3) <= 0.01
    assert all(w == "canary" for a, w in zip(arms, wider) if a == "canary")
    other = [assign(p, 0.1, "v3") for p in ids]  # another canary draws other users
    assert sum(a == o == "canary" for a, o in zip(arms, other)) < 0.2 * arms.count("canary")


def test_anonymous_users_and_a_zero_share_get_the_champion() -> None:
    assert assign(None, 1.0, "v2") == "champion"
    assert assign(pseudonymise("u1", KEY), 0.0, "v2") == "champion"
    assert assign(pseudonymise("u1", KEY), 1.0, "v2") == "canary"
    assert 0.0 <= unit("x") < 1.0 and unit("x") != unit("x", "salt")


def test_the_canary_answers_its_users_and_the_champion_the_others(champion: ServingModel, canary: ServingModel) -> None:
    qs = queries()
    ps = pseudonyms(qs)
    served = serve(Deployment(champion, canary=canary), qs, ps, 0.5)
    for q, p, s in zip(qs, ps, served):
        arm = assign(p, 0.5, canary.version)
        expected = (canary if arm == "canary" else champion).recommend([q])[0]
        assert (s.arm, s.model.version, [i for i, _ in s.recommendation.items]) == (arm, "2" if arm == "canary" else "1", [i for i, _ in expected.items])
        # scores to float32 rounding: a batch's matrix product may sum in another order than one row's
        assert [x for _, x in s.recommendation.items] == pytest.approx([x for _, x in expected.items], rel=1e-6)
        assert s.canary_error is None and s.latency_us > 0
    assert 0.4 < sum(s.arm == "canary" for s in served) / len(served) < 0.6
    assert served[-1].arm == "champion"  # forgotten: no pseudonym, no canary


def test_a_canary_re_registered_by_an_erasure_keeps_its_users(champion: ServingModel, canary: ServingModel) -> None:
    """A new version with the first one's arm salt (recsys.challengers) answers the same users."""
    qs = queries()[:200]
    ps = pseudonyms(qs)
    first = [s.arm for s in serve(Deployment(champion, canary=canary), qs, ps, 0.3)]
    again = ServingModel(canary.model, canary.index, {"version": "5", "arm_salt": "2"})
    assert [s.arm for s in serve(Deployment(champion, canary=again), qs, ps, 0.3)] == first
    unsalted = ServingModel(canary.model, canary.index, {"version": "5"})  # salted by its own version: other users
    assert [s.arm for s in serve(Deployment(champion, canary=unsalted), qs, ps, 0.3)] != first


def logged(log: RequestLog) -> dict[str, RequestRecord]:
    """The request log's lines by request id, as the monitor reads them back."""
    return {r.request_id: r for r in (RequestRecord.model_validate_json(line) for line in log.path.read_text().splitlines())}


def test_a_shadow_never_changes_an_answer_and_is_logged_beside_it(champion: ServingModel, canary: ServingModel, shadow: ServingModel, tmp_path: Path) -> None:
    qs = queries()
    ps = pseudonyms(qs)
    ids = [f"r{i}" for i in range(len(qs))]
    without = serve(Deployment(champion, canary=canary), qs, ps, 0.2)
    deployed = Deployment(champion, canary=canary, shadow=shadow)
    answers = serve(deployed, qs, ps, 0.2)
    assert [(s.arm, s.recommendation) for s in answers] == [(s.arm, s.recommendation) for s in without]
    log = RequestLog(tmp_path / "requests.jsonl")
    writer = ShadowWriter(log, 1.0, capacity=len(qs))
    assert writer.append(deployed, qs, [record(i, "2026-01-01T00:00:00+00:00", None, p, q, s, 1.0) for i, p, q, s in zip(ids, ps, qs, answers)]) == 0
    writer.close()
    lines = logged(log)
    assert sorted(lines) == sorted(ids)  # every answer once, each with the shadow's list beside it
    for i, answer, q in zip(ids, without, qs):
        line = lines[i]
        assert line.items == [i for i, _ in answer.recommendation.items] and line.arm == answer.arm
        assert line.shadow_items == [i for i, _ in shadow.recommend([q])[0].items] and line.shadow_version == "3" and line.shadow_us
    known = [line for line in lines.values() if line.history_len]
    assert sum(line.shadow_items != line.items for line in known) > 0.9 * len(known)  # the shadow's own lists, not copies


def test_the_shadow_scores_its_share_of_requests_only(champion: ServingModel, shadow: ServingModel, tmp_path: Path) -> None:
    qs = [Query(f"u{i % N_USERS}", 10) for i in range(2_000)]
    ids = [f"req-{i}" for i in range(len(qs))]
    sampled = [shadowed(i, 0.25) for i in ids]
    assert abs(sum(sampled) / len(qs) - 0.25) < 0.03
    assert [shadowed(i, 0.25) for i in ids] == sampled  # sampled by request id: every worker agrees
    answers = serve(Deployment(champion), qs, [None] * len(qs), 0.0)
    lines = [record(i, "2026-01-01T00:00:00+00:00", None, None, q, s, 1.0) for i, q, s in zip(ids, qs, answers)]
    for deployed, share in ((Deployment(champion, shadow=shadow), 0.25), (Deployment(champion), 1.0)):
        log = RequestLog(tmp_path / f"requests-{share}.jsonl")
        writer = ShadowWriter(log, share, capacity=len(qs))
        writer.append(deployed, qs, lines)
        writer.close()
        lines_back = logged(log)
        scored = [lines_back[i].shadow_items is not None for i in ids]
        assert scored == (sampled if deployed.shadow else [False] * len(qs))


@dataclass(frozen=True)
class Gated(ServingModel):
    """A shadow that ranks only once the test opens its gate, and says when it is waiting there."""

    waiting: threading.Event = field(default_factory=threading.Event)
    gate: threading.Event = field(default_factory=threading.Event)

    def recommend(self, queries: Sequence[Query]) -> list[Recommendation]:
        self.waiting.set()
        assert self.gate.wait(30), "the test never opened the gate"
        return super().recommend(queries)


def test_the_answer_does_not_wait_for_the_shadow_and_a_full_queue_drops_only_its_list(champion: ServingModel, shadow: ServingModel, tmp_path: Path) -> None:
    """With the shadow stuck in its search, appending answers returns at once: the one it holds
    is not logged yet, the next one waits in the queue (capacity 1), the one after is logged at
    once without the shadow's list and counted as dropped. Closing writes the held ones."""
    gated = Gated(shadow.model, shadow.index, {"version": "3"})
    deployed = Deployment(champion, shadow=gated)
    qs = [Query(f"u{i}", 10) for i in range(3)]
    lines = [record(f"r{i}", "2026-01-01T00:00:00+00:00", None, None, q, s, 1.0) for i, (q, s) in enumerate(zip(qs, serve(deployed, qs, [None] * 3, 0.0)))]
    log = RequestLog(tmp_path / "requests.jsonl")
    writer = ShadowWriter(log, 1.0, capacity=1)
    assert writer.append(deployed, qs[:1], lines[:1]) == 0
    assert gated.waiting.wait(30)  # the shadow's thread holds r0 and waits at the gate
    assert writer.append(deployed, qs[1:], lines[1:]) == 1  # r1 queued, r2 refused: returned without waiting
    assert list(logged(log)) == ["r2"] and logged(log)["r2"].shadow_items is None
    gated.gate.set()
    writer.close()
    after = logged(log)
    assert sorted(after) == ["r0", "r1", "r2"]  # each answer once
    assert [after[i].shadow_items is not None for i in ("r0", "r1", "r2")] == [True, True, False]


def test_a_line_waiting_for_the_shadow_when_its_user_is_erased_lands_without_them(champion: ServingModel, shadow: ServingModel, tmp_path: Path) -> None:
    """The erasure lists the user, then rewrites the log while their answer waits for the shadow:
    the line written afterwards must not bring their pseudonym back (recsys.privacy)."""
    settings = Settings(home=tmp_path / "home")
    gated = Gated(shadow.model, shadow.index, {"version": "3"})
    deployed = Deployment(champion, shadow=gated)
    qs = [Query("u1", 10), Query("u2", 10)]
    ps = pseudonyms(qs)
    lines = [record(f"r{i}", "2026-01-01T00:00:00+00:00", None, p, q, s, 1.0) for i, (p, q, s) in enumerate(zip(ps, qs, serve(deployed, qs, ps, 0.0)))]
    log = RequestLog(tmp_path / "requests.jsonl")
    writer = ShadowWriter(log, 1.0, capacity=2, forgotten=tombstones.TombstoneWatch(settings).now)
    writer.append(deployed, qs, lines)
    assert gated.waiting.wait(30)  # both lines wait for the shadow
    tombstones.bury(settings, "u1")  # recsys.privacy.forget, in its order: list them, then rewrite the log
    assert drop_lines(log.path, ps[0].encode()) == 0  # nothing of theirs was written yet
    gated.gate.set()
    writer.close()
    after = logged(log)
    assert sorted(after) == ["r0", "r1"] and after["r0"].shadow_items and after["r1"].shadow_items
    assert after["r0"].user_id is None and after["r1"].user_id == ps[1]  # the erased user's line kept, without them
    assert ps[0] not in log.path.read_text()


def test_a_failing_canary_is_answered_for_by_the_champion(champion: ServingModel) -> None:
    canary = broken(1, "2")
    qs = queries()
    ps = pseudonyms(qs)
    served = serve(Deployment(champion, canary=canary), qs, ps, 0.5)
    alone = champion.recommend(qs)
    assert [s.recommendation for s in served] == alone and {s.arm for s in served} == {"champion"}
    failed = [s for s, p in zip(served, ps) if assign(p, 0.5, "2") == "canary"]
    assert failed and all(s.canary_error for s in failed)
    assert all(s.canary_error is None for s, p in zip(served, ps) if assign(p, 0.5, "2") == "champion")


def test_a_failing_shadow_leaves_its_error_not_an_exception() -> None:
    shadow = broken(2, "3")
    scored = score_shadow(shadow, [Query("u1", 10)])
    assert scored[0].items is None and scored[0].error
