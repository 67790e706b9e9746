"""Challengers in the registry: deploy a blessed version as the shadow or the canary, withdraw it, promote it.

An MLflow alias says which version holds each role (`champion`, `shadow`, `canary`; the last
two named by settings), and the BentoML store holds what the service loads for it: the champion
under the registered model's name, a challenger under `<name>-<alias>` (`Settings.challenger_model`),
one entry at most. Removing that entry is what takes a challenger out of service at the next
reload; the champion's entry and alias are never touched by a rollback.

Tags on the model version tell its story in the MLflow UI: `recsys.stage` (the furthest role it
reached: shadow, canary, champion), `recsys.<role>.deployed_at`, and the final word,
`recsys.decision` (promoted, rolled_back) with `recsys.decision_reason` and `recsys.decided_at`.
`recsys.arm_salt` is the version whose hash drew the canary's users (recsys.serving.arms): an
erasure re-registers the canary under a new version, and the same users must stay in its arm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from bentoml.exceptions import NotFound
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from recsys import registry
from recsys.models.base import EmbeddingModel
from recsys.serving import index
from recsys.settings import Settings

if TYPE_CHECKING:
    import faiss

    from recsys.serving.index import IndexReport

Role = Literal["shadow", "canary"]
ROLES: tuple[Role, ...] = ("shadow", "canary")
STAGES = ("shadow", "canary", "champion")  # in the order a challenger goes through them

STAGE = "recsys.stage"
DECISION = "recsys.decision"
REASON = "recsys.decision_reason"
DECIDED_AT = "recsys.decided_at"
ARM_SALT = "recsys.arm_salt"
MAX_TAG = 5000  # MLflow's limit on a tag value


def deployed_at_tag(role: Role) -> str:
    return f"recsys.{role}.deployed_at"


def alias_of(settings: Settings, role: Role) -> str:
    return settings.shadow_alias if role == "shadow" else settings.canary_alias


@dataclass(frozen=True)
class Challenger:
    """The version holding a role, and since when (kept through an erasure's re-registration)."""

    role: Role
    version: str
    deployed_at: str  # ISO, the server's clock: the request log's lines from here on are its experiment's


@dataclass(frozen=True)
class Deployed:
    role: Role
    version: str
    bento_tag: str
    index_recall: float | None


@dataclass(frozen=True)
class Withdrawn:
    """A challenger taken out of service: its alias and store entry gone, the champion untouched."""

    role: Role
    version: str
    removed: list[str]  # BentoML tags deleted from the store
    reason: str


@dataclass(frozen=True)
class Promoted:
    version: str
    previous_champion: str | None
    bento_tag: str
    withdrawn: list[Role]  # the roles it left (the canary's, and the shadow's when it was the same version)


def challenger(settings: Settings, role: Role) -> Challenger | None:
    """The version deployed in `role`, or None."""
    try:
        mv = MlflowClient().get_model_version_by_alias(settings.registered_model, alias_of(settings, role))
    except MlflowException:
        return None
    return Challenger(role, str(mv.version), mv.tags.get(deployed_at_tag(role), ""))


def deploy(
    settings: Settings,
    version: str,
    role: Role,
    model: EmbeddingModel | None = None,
    ann: faiss.Index | None = None,
    report: IndexReport | None = None,
    continues: bool = False,
) -> Deployed:
    """Put a registered version in `role`: export it under the role's store name, then move the alias.

    The ANN index is built (on the vectors the service searches: `registry.load_searched`) and checked
    unless given (`report`), as for a champion: a challenger
    whose index misses exact search would be judged on worse lists than it was blessed on, so it
    is refused. Any earlier entry under that name is removed once the new one is stored.
    `continues` (an erasure's copy of a deployed version, its tags copied) keeps the experiment's
    start and arm salt; otherwise this deployment starts a new experiment now.
    """
    searched = registry.load_searched(settings, version) if report is None or model is None else model
    if report is None:
        ann, report = index.build_checked(searched.item_vectors, searched.user_vectors)
    model = model if model is not None else searched
    if not report.passed:
        raise ValueError(f"version {version}: ANN recall@100 {report.recall:.3f} < {index.MIN_RECALL}; not deployed as {role}")
    client = MlflowClient()
    tags = client.get_model_version(settings.registered_model, version).tags
    salt = tags.get(ARM_SALT, version) if continues else version
    alias = alias_of(settings, role)
    tag = registry.export_to_bentoml(settings, version, model, ann, report, alias=alias, extra={"arm_salt": salt})
    _remove_entries(settings, alias, keep=tag)
    client.set_registered_model_alias(settings.registered_model, alias, version)
    new = {ARM_SALT: salt}
    if not continues:
        new[deployed_at_tag(role)] = datetime.now(UTC).isoformat()
    if tags.get(STAGE) not in STAGES or STAGES.index(role) > STAGES.index(tags[STAGE]):
        new[STAGE] = role  # a stage only moves forward: a version deployed as canary, then as shadow, reached the canary
    _tag(settings, version, new)
    return Deployed(role, version, tag, report.recall)


def withdraw(settings: Settings, role: Role, reason: str) -> Withdrawn | None:
    """Roll back the challenger in `role`: alias and store entry removed, the version tagged why; None if none.

    The champion's alias and store entry are not touched: the service's next reload serves the
    champion alone (or with the other challenger).
    """
    current = challenger(settings, role)
    if current is None:
        return None
    removed = _drop(settings, role)
    _tag(settings, current.version, {DECISION: "rolled_back", REASON: reason[:MAX_TAG], DECIDED_AT: datetime.now(UTC).isoformat()})
    return Withdrawn(role, current.version, removed, reason)


def rollback_canary(settings: Settings, reason: str) -> list[Withdrawn]:
    """Withdraw the canary, and the shadow too when it is the same version (it was judged with it)."""
    canary = challenger(settings, "canary")
    if canary is None:
        return []
    shadow = challenger(settings, "shadow")
    same = shadow is not None and shadow.version == canary.version
    return [w for w in (withdraw(settings, "canary", reason), withdraw(settings, "shadow", reason) if same else None) if w is not None]


def promote_canary(settings: Settings, reason: str) -> Promoted:
    """Make the canary champion through the one promotion path (`registry.make_champion`), then retire its roles.

    The champion's entry is stored before the canary's is removed, so a reload in between serves
    the new champion (beside its own canary) rather than nothing.
    """
    canary = challenger(settings, "canary")
    if canary is None:
        raise ValueError(f"no version holds the {settings.canary_alias!r} alias: nothing to promote")
    model = registry.load_searched(settings, canary.version)
    ann, report = index.build_checked(model.item_vectors, model.user_vectors)
    if not report.passed:
        raise ValueError(f"version {canary.version}: ANN recall@100 {report.recall:.3f} < {index.MIN_RECALL}; not promoted")
    previous = registry.champion(settings)
    tag = registry.make_champion(settings, canary.version, model, ann, report)
    left: list[Role] = [r for r in ROLES if (c := challenger(settings, r)) is not None and c.version == canary.version]
    for role in left:
        _drop(settings, role)
    _tag(settings, canary.version, {STAGE: "champion", DECISION: "promoted", REASON: reason[:MAX_TAG], DECIDED_AT: datetime.now(UTC).isoformat()})
    return Promoted(canary.version, previous, tag, left)


@dataclass(frozen=True)
class Applied:
    """What carrying out a canary decision changed: a promotion, or the challengers withdrawn (a hold changes nothing)."""

    promoted: Promoted | None = None
    withdrawn: list[Withdrawn] = field(default_factory=list)


def apply(settings: Settings, action: str, reason: str) -> Applied:
    """Carry out the canary rule's action (recsys.monitoring.canary): promote, roll back, or hold (nothing changes)."""
    if action == "promote":
        return Applied(promoted=promote_canary(settings, reason))
    if action == "rollback":
        return Applied(withdrawn=rollback_canary(settings, reason))
    return Applied()


def _drop(settings: Settings, role: Role) -> list[str]:
    """Remove a role's alias and its store entries; return the tags removed."""
    alias = alias_of(settings, role)
    MlflowClient().delete_registered_model_alias(settings.registered_model, alias)
    return _remove_entries(settings, alias)


def _remove_entries(settings: Settings, alias: str, keep: str | None = None) -> list[str]:
    """Delete every store entry under the alias's name but `keep`; return their tags."""
    store = registry.model_store(settings)
    try:
        stored = store.list(registry.bento_name(settings, alias))
    except NotFound:
        return []
    removed = [str(m.tag) for m in stored if str(m.tag) != keep]
    for tag in removed:
        store.delete(tag)
    return removed


def _tag(settings: Settings, version: str, tags: dict[str, str]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(settings.registered_model, version, key, value)
