"""The canary as a flow: judge the deployed canary on its live traffic, then promote, hold or roll back.

The windows are the request log's lines since the canary was deployed (recsys.challengers
records when), `window` requests each; the rule (recsys.monitoring.canary, `RECSYS_CANARY_*`)
decides on all of them. A promotion makes the canary champion, a rollback takes it (and a
shadow of the same version) out of the store, the champion untouched; either is recorded on
the model version's tags, and the running service is asked to reload. Every decision, hold
included, is emitted as a Prefect event (`recsys.canary.promoted|held|rolled_back`) with its
reasons, so the Prefect UI shows the experiment window by window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from recsys import challengers, platform, registry
from recsys.challengers import Applied, Challenger, Promoted, Withdrawn
from recsys.monitoring.canary import CanaryDecision, CanaryRule, CanaryWindow, decide_canary, windows_since
from recsys.settings import get_settings

CANARY_EVENTS = {"promote": "recsys.canary.promoted", "hold": "recsys.canary.held", "rollback": "recsys.canary.rolled_back"}


@dataclass(frozen=True)
class CanaryOutcome:
    """What the canary flow found and did: the decision with its reasons, and its effect."""

    canary: str | None  # the version judged; None when no canary is deployed
    windows: int  # log windows read since it was deployed
    decision: CanaryDecision | None
    champion: str | None  # the champion after the decision
    promoted: Promoted | None = None
    withdrawn: list[Withdrawn] = field(default_factory=list)
    service: str = ""  # what the running service answered to the reload


@task(cache_policy=NO_CACHE)
def deployed_canary() -> Challenger | None:
    settings = get_settings()
    registry.configure(settings)
    return challengers.challenger(settings, "canary")


@task(cache_policy=NO_CACHE)
def read_windows(since: str, window: int) -> list[CanaryWindow]:
    settings = get_settings()
    return windows_since(settings.request_log, settings.events_log, since, window)


@task(cache_policy=NO_CACHE)
def apply_decision(decision: CanaryDecision) -> Applied:
    return challengers.apply(get_settings(), decision.action, "; ".join(decision.reasons))


@task(cache_policy=NO_CACHE)
def reload_service() -> str:
    return platform.reload_service(get_settings())


@flow(name="canary")
def canary(window: int | None = None) -> CanaryOutcome:
    """Decide on the deployed canary from its windows of live traffic, and carry the decision out.

    Args:
        window: requests per window; empty for the configured size (RECSYS_WINDOW_SIZE)
    """
    settings = get_settings()
    logger = get_run_logger()
    current = deployed_canary()
    if current is None:
        logger.info("no version holds the %r alias: nothing to judge", settings.canary_alias)
        return CanaryOutcome(None, 0, None, registry.champion(settings))
    windows = read_windows(current.deployed_at, window or settings.window_size)
    decision = decide_canary(windows, CanaryRule.from_settings(settings))
    logger.info("canary version %s over %d window(s): %s (%s)", current.version, len(windows), decision.action, "; ".join(decision.reasons))
    applied = apply_decision(decision)
    service = reload_service() if decision.action != "hold" else ""
    if service:
        logger.info("service reload: %s", service)
    emit_event(
        event=CANARY_EVENTS[decision.action],
        resource={"prefect.resource.id": f"recsys.model.{settings.registered_model}"},
        payload={"version": current.version, "windows": len(windows), "counting_windows": decision.counting_windows, "reasons": decision.reasons},
    )
    return CanaryOutcome(current.version, len(windows), decision, registry.champion(settings), applied.promoted, applied.withdrawn, service)
