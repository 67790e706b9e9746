"""Challengers in the registry, on a real MLflow (SQLite) and BentoML store under a tmp home:
deployed as shadow and canary, rolled back with the champion untouched, promoted, re-registered
by an erasure; and the canary flow deciding on hand-made windows of the request log."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from bentoml.exceptions import NotFound
from mlflow import MlflowClient
from prefect.settings import PREFECT_API_URL, temporary_settings

from recsys import challengers, registry
from recsys.data.ingest import Dataset
from recsys.data.split import Split
from recsys.privacy import forget
from recsys.promotion import bless_and_promote
from recsys.schemas import FeedbackRecord, RequestRecord
from recsys.serving import index
from recsys.settings import Settings, get_settings
from recsys.training import TrainResult, train
from tests.conftest import free_port, fresh_prefect_events

# iALS small enough to train in about a second (as in test_forget).
IALS = {"factors": 16, "iterations": 10, "alpha": 40.0, "regularization": 1.0}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, synthetic: Dataset, synthetic_split: Split) -> Iterator[tuple[Settings, list[TrainResult]]]:
    """One home for the module (creating MLflow's database costs seconds) and two trained iALS models (not registered)."""
    home = tmp_path_factory.mktemp("challengers") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECSYS_HOME", str(home))
        mp.setenv("BENTOML_HOME", str(home / "bentoml"))
        get_settings.cache_clear()
        settings = get_settings()
        yield settings, [train(synthetic, synthetic_split, settings, "ials", params=IALS, register=False) for _ in range(2)]
    get_settings.cache_clear()


@pytest.fixture
def settings(trained: tuple[Settings, list[TrainResult]]) -> Settings:
    """The module's settings, with no challenger deployed (an earlier test may have left one)."""
    settings = trained[0]
    for role in challengers.ROLES:
        challengers.withdraw(settings, role, "the next test starts without it")
    return settings


@pytest.fixture
def champion_and_candidate(settings: Settings, trained: tuple[Settings, list[TrainResult]]) -> tuple[str, str]:
    """Two new versions of the trained models: the first made champion, the second beside it (these tests judge online, not offline)."""
    champion, candidate = (registry.register(run.model_uri, settings, run.run_id, {}) for run in trained[1])
    model = registry.load_version(settings, champion)
    registry.make_champion(settings, champion, model, *index.build_checked(model.item_vectors, model.user_vectors))
    return champion, candidate


def stored(settings: Settings, role: challengers.Role) -> list:
    """The store's entries under a challenger's name (none once it is withdrawn)."""
    try:
        return registry.model_store(settings).list(registry.bento_name(settings, challengers.alias_of(settings, role)))
    except NotFound:
        return []


def tags(settings: Settings, version: str) -> dict[str, str]:
    return MlflowClient().get_model_version(settings.registered_model, version).tags


def deploy_both(settings: Settings, version: str) -> None:
    for role in challengers.ROLES:
        challengers.deploy(settings, version, role)


def test_deploy_as_shadow_and_canary_then_roll_back_keeps_the_champion(settings: Settings, champion_and_candidate) -> None:
    champion, candidate = champion_and_candidate
    champion_entries = [str(m.tag) for m in registry.model_store(settings).list(settings.registered_model)]
    deploy_both(settings, candidate)
    for role in challengers.ROLES:
        current = challengers.challenger(settings, role)
        assert current is not None and current.version == candidate and datetime.fromisoformat(current.deployed_at)
        (entry,) = stored(settings, role)
        assert entry.info.metadata["version"] == candidate and entry.info.metadata["arm_salt"] == candidate
        assert entry.info.labels["stage"] == role
    assert tags(settings, candidate)[challengers.STAGE] == "canary"  # the furthest it got
    challengers.deploy(settings, candidate, "shadow")  # deployed again: still one entry, the newer
    assert len(stored(settings, "shadow")) == 1 and tags(settings, candidate)[challengers.STAGE] == "canary"

    withdrawn = challengers.rollback_canary(settings, "worse online")
    assert [(w.role, w.version) for w in withdrawn] == [("canary", candidate), ("shadow", candidate)]
    assert challengers.challenger(settings, "canary") is None and challengers.challenger(settings, "shadow") is None
    assert stored(settings, "canary") == [] and stored(settings, "shadow") == []
    assert registry.champion(settings) == champion
    assert [str(m.tag) for m in registry.model_store(settings).list(settings.registered_model)] == champion_entries
    assert tags(settings, candidate)[challengers.DECISION] == "rolled_back"
    assert tags(settings, candidate)[challengers.REASON] == "worse online"
    assert challengers.DECISION not in tags(settings, champion)


def test_promoting_the_canary_makes_it_champion_and_retires_its_roles(settings: Settings, champion_and_candidate) -> None:
    champion, candidate = champion_and_candidate
    deploy_both(settings, candidate)
    promoted = challengers.promote_canary(settings, "not worse over 2 windows")
    assert (promoted.version, promoted.previous_champion, promoted.withdrawn) == (candidate, champion, ["shadow", "canary"])
    assert registry.champion(settings) == candidate
    newest = registry.model_store(settings).get(f"{settings.registered_model}:latest")
    assert str(newest.tag) == promoted.bento_tag and newest.info.metadata["version"] == candidate
    assert stored(settings, "canary") == [] and stored(settings, "shadow") == []
    assert {k: tags(settings, candidate)[k] for k in (challengers.STAGE, challengers.DECISION)} == {
        challengers.STAGE: "champion",
        challengers.DECISION: "promoted",
    }


def test_online_mode_deploys_a_blessed_candidate_as_shadow_and_canary(
    settings: Settings, champion_and_candidate, synthetic: Dataset, synthetic_split: Split
) -> None:
    champion, candidate = champion_and_candidate
    online = settings.model_copy(update={"promotion_mode": "online"})
    run_id = registry.version_run_id(settings, candidate)
    result = bless_and_promote(online, candidate, run_id, synthetic_split, synthetic.items)
    assert result.blessing.blessed and not result.promoted and result.deployed_as == ["shadow", "canary"]
    assert registry.champion(settings) == champion
    assert [challengers.challenger(settings, role).version for role in challengers.ROLES] == [candidate, candidate]


def test_an_erasure_re_registers_deployed_challengers_without_the_user(settings: Settings, champion_and_candidate) -> None:
    champion, candidate = champion_and_candidate
    gone = "u1"
    assert gone in registry.load_version(settings, candidate).user_index
    deploy_both(settings, candidate)
    started = challengers.challenger(settings, "canary").deployed_at
    erasure = forget(settings, gone)
    scrubbed_champion, scrubbed = str(int(candidate) + 1), str(int(candidate) + 2)  # the champion first, then one version for both roles
    assert (erasure.previous_champion, erasure.model_version) == (champion, scrubbed_champion)
    assert erasure.challengers == {"shadow": scrubbed, "canary": scrubbed} and erasure.model_vectors == 2
    canary = challengers.challenger(settings, "canary")
    assert canary.version == scrubbed and canary.deployed_at == started  # the same experiment goes on
    assert gone not in registry.load_version(settings, scrubbed).user_index
    assert tags(settings, scrubbed)["derived_from_version"] == candidate and tags(settings, scrubbed)[challengers.ARM_SALT] == candidate
    for role in challengers.ROLES:
        (entry,) = stored(settings, role)
        assert entry.info.metadata["version"] == scrubbed and entry.info.metadata["arm_salt"] == candidate  # the same users in its arm


def write_window(settings: Settings, arm_hits: dict[str, tuple[int, int]], window: int) -> None:
    """Append one window of answers, `users` each with one request per arm and `hits` of them followed by feedback."""
    now = datetime.now(UTC).isoformat()
    settings.request_log.parent.mkdir(parents=True, exist_ok=True)
    with settings.request_log.open("a") as requests, settings.events_log.open("a") as events:
        for arm, (users, hits) in arm_hits.items():
            for u in range(users):
                rid = f"w{window}-{arm}-{u}"
                line = RequestRecord(
                    request_id=rid,
                    served_at=now,
                    event_time=now,
                    user_id=f"{arm}-user-{u}",
                    k=10,
                    items=["i1"],
                    scores=[1.0],
                    fallback=False,
                    model_version="x",
                    history_len=3,
                    rec_popularity=0.5,
                    arm=arm,
                    latency_us=800.0,
                )
                requests.write(line.model_dump_json() + "\n")
                if u < hits:
                    click = FeedbackRecord(
                        request_id=f"f-{rid}", served_at=now, user_id=line.user_id, item_id="i1", event="click", answer_request_id=rid, model_version="x"
                    )
                    events.write(click.model_dump_json() + "\n")


def canary_events(api: str, expected: int, since: datetime) -> list[dict]:
    """The recsys.canary.* events since `since` (the session's server holds other tests' too), once it holds `expected` (it persists them in batches)."""
    fresh_prefect_events()
    body = {
        "filter": {"event": {"prefix": ["recsys.canary."]}, "any_resource": {"id_prefix": ["recsys.model."]}, "occurred": {"since": since.isoformat()}},
        "limit": 50,
    }
    deadline, found = time.monotonic() + 20, []
    while len(found) < expected and time.monotonic() < deadline:
        time.sleep(0.5)
        found = httpx.post(f"{api}/events/filter", json=body, timeout=10).json()["events"]
    return found


def test_the_canary_flow_rolls_a_worse_canary_back_and_promotes_a_better_one(
    prefect_api, settings: Settings, champion_and_candidate, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.canary import canary

    api, _ = prefect_api
    began = datetime.now(UTC)
    monkeypatch.setenv("RECSYS_SERVE_PORT", str(free_port()))  # no service there: the reload is only reported
    get_settings.cache_clear()
    champion, candidate = champion_and_candidate
    deploy_both(settings, candidate)
    with temporary_settings({PREFECT_API_URL: api}):
        write_window(settings, {"champion": (60, 30), "canary": (60, 30)}, 1)
        held = canary(window=120)  # one counting window of two: hold
        assert (held.decision.action, held.windows, held.champion) == ("hold", 1, champion)
        write_window(settings, {"champion": (60, 30), "canary": (60, 3)}, 2)
        worse = canary(window=120)
    assert (worse.decision.action, worse.decision.rolled_back_by, worse.windows) == ("rollback", ["hit_rate"], 2)
    assert worse.champion == champion == registry.champion(settings)
    assert [w.role for w in worse.withdrawn] == ["canary", "shadow"] and stored(settings, "canary") == []
    assert tags(settings, candidate)[challengers.DECISION] == "rolled_back"
    assert "worse by more than the margin" in tags(settings, candidate)[challengers.REASON]
    assert worse.service.startswith("no service answered")
    events = canary_events(api, 2, began)
    assert sorted(e["event"] for e in events) == ["recsys.canary.held", "recsys.canary.rolled_back"]
    rolled = next(e for e in events if e["event"] == "recsys.canary.rolled_back")
    assert rolled["payload"]["version"] == candidate and rolled["payload"]["reasons"] == worse.decision.reasons

    challengers.deploy(settings, candidate, "canary")  # a fresh experiment: the windows before it are not its own
    with temporary_settings({PREFECT_API_URL: api}):
        for window in (3, 4):
            write_window(settings, {"champion": (60, 30), "canary": (60, 54)}, window)
        better = canary(window=120)
    assert (better.decision.action, better.windows, better.decision.counting_windows) == ("promote", 2, 2)
    assert better.champion == candidate == registry.champion(settings) and better.promoted.previous_champion == champion
    assert challengers.challenger(settings, "canary") is None and tags(settings, candidate)[challengers.DECISION] == "promoted"
    fresh_prefect_events()  # sent while the server is up, not retried against a stopped one at exit


def test_no_canary_is_nothing_to_judge(prefect_api, settings: Settings, champion_and_candidate) -> None:
    from flows.canary import canary

    api, _ = prefect_api
    champion, _ = champion_and_candidate
    with temporary_settings({PREFECT_API_URL: api}):
        outcome = canary()
    assert (outcome.canary, outcome.decision, outcome.windows, outcome.champion) == (None, None, 0, champion)
