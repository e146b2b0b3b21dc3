"""The session contract in the planner: the idle clock, and the ports a READY sandbox exposes."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from helmdeck_operator.core.conditions import Condition, Status
from helmdeck_operator.core.plan import Action, SessionFacts, plan_session
from helmdeck_operator.gateway import models as gw
from helmdeck_operator.vocabulary import ConditionType, Phase, Reason
from tests.support.builders import (
    NOW,
    PORTS,
    REV_A,
    desired,
    facts,
    later,
    ready,
    sandbox,
    status_after,
)
from tests.support.plans import condition, passes, reasons

TIMEOUT = timedelta(minutes=5)
#: A session Ready since ten minutes ago whose idle clock started then.
RUNNING = {
    "phase": "Ready",
    "readyAt": "2025-06-01T11:50:00Z",
    "policy": {"name": "web", "revision": REV_A, "state": "Loaded"},
    "conditions": [
        {"type": "Ready", "status": "True", "reason": "SandboxReady", "observedGeneration": 1}
    ],
}


def idle_session(activity_minutes_ago: float, **overrides: Any) -> SessionFacts:
    values: dict[str, Any] = {
        "idle_timeout": TIMEOUT,
        "activity": NOW - timedelta(minutes=activity_minutes_ago),
        "status": RUNNING,
    }
    values.update(overrides)
    return facts(**values)


def test_a_session_goes_idle_at_its_deadline_and_not_a_second_before() -> None:
    before = plan_session(idle_session(5, activity=later(-299)), desired(), ready(), NOW)
    at = plan_session(idle_session(5), desired(), ready(), NOW)

    assert before.phase is Phase.READY
    assert before.action is Action.NONE
    assert before.idle_at == later(1)
    assert at.phase is Phase.SUSPENDED
    assert at.action is Action.STOP
    assert reasons(at) == ["Idle"]
    assert "idle since 2025-06-01T12:00:00Z" in at.events[0].message


def test_an_idle_stopped_sandbox_is_suspended_with_the_reason_idle() -> None:
    stopped = ready(sandbox=sandbox(gw.SandboxPhase.STOPPED))
    [stopping, held] = passes(idle_session(8), desired(), [ready(), stopped])

    assert stopping.action is Action.STOP
    assert held.phase is Phase.SUSPENDED
    assert held.action is Action.NONE
    assert condition(held, "Ready") == ("False", "Idle")
    assert reasons(held) == []  # announced once, with the stop


def test_sandbox_activity_seen_at_the_deadline_keeps_the_session_running() -> None:
    active = ready(activity=NOW - timedelta(seconds=30))

    plan = plan_session(idle_session(6), desired(), active, NOW)

    assert plan.phase is Phase.READY
    assert plan.action is Action.NONE
    assert plan.activity == NOW - timedelta(seconds=30)
    assert plan.idle_at == NOW - timedelta(seconds=30) + TIMEOUT


def test_a_renewal_resumes_an_idle_session_and_restarts_its_clock() -> None:
    idled = {
        **RUNNING,
        "phase": "Suspended",
        "conditions": [{"type": "Ready", "status": "False", "reason": "Idle"}],
    }
    stopped = ready(sandbox=sandbox(gw.SandboxPhase.STOPPED))

    still = plan_session(idle_session(8, status=idled), desired(), stopped, NOW)
    renewed = plan_session(idle_session(0.1, status=idled), desired(), stopped, NOW)

    assert still.action is Action.NONE
    assert still.phase is Phase.SUSPENDED
    assert renewed.action is Action.START
    assert reasons(renewed) == ["Resumed"]
    assert renewed.activity == NOW
    assert renewed.idle_at == NOW + TIMEOUT


def test_letting_go_of_spec_suspend_restarts_the_idle_clock() -> None:
    held = {
        **RUNNING,
        "phase": "Suspended",
        "conditions": [{"type": "Ready", "status": "False", "reason": "Suspended"}],
    }
    stopped = ready(sandbox=sandbox(gw.SandboxPhase.STOPPED))

    plan = plan_session(idle_session(60, status=held), desired(), stopped, NOW)

    assert plan.action is Action.START
    assert plan.activity == NOW


def test_spec_suspend_wins_over_idleness() -> None:
    plan = plan_session(idle_session(60, suspend=True), desired(), ready(), NOW)

    assert plan.action is Action.STOP
    assert reasons(plan) == ["Suspended"]


def test_idle_with_delete_removes_the_session() -> None:
    plan = plan_session(idle_session(6, on_idle="Delete"), desired(), ready(), NOW)

    assert plan.action is Action.DELETE_SESSION
    assert reasons(plan) == ["Idle"]
    assert condition(plan, "Ready") == ("False", "Idle")


def test_the_idle_clock_starts_when_the_session_is_first_ready() -> None:
    plan = plan_session(facts(idle_timeout=TIMEOUT), desired(), ready(), NOW)

    assert plan.phase is Phase.READY
    assert plan.activity == NOW
    assert plan.idle_at == NOW + TIMEOUT


def test_a_session_without_an_idle_timeout_never_goes_idle() -> None:
    plan = plan_session(
        facts(activity=NOW - timedelta(days=30), status=RUNNING), desired(), ready(), NOW
    )

    assert plan.phase is Phase.READY
    assert plan.idle_at is None


def test_ports_not_exposed_yet_are_synchronised_before_the_first_ready() -> None:
    plan = plan_session(facts(), desired(), ready(exposed="other-digest"), NOW)

    assert plan.action is Action.SYNC_PORTS
    assert plan.requeue_after == 0.0
    assert plan.phase is Phase.PROVISIONING
    assert condition(plan, "Ready") == ("False", "Exposing")
    assert condition(plan, "EndpointsExposed") == ("Unknown", "Exposing")


def test_a_port_change_on_a_running_session_is_synchronised_while_it_stays_ready() -> None:
    plan = plan_session(facts(status=RUNNING), desired(), ready(exposed="other-digest"), NOW)

    assert plan.action is Action.SYNC_PORTS
    assert plan.phase is Phase.READY
    assert condition(plan, "Ready") == ("True", "SandboxReady")


def test_a_policy_push_comes_before_the_port_synchronisation() -> None:
    plan = plan_session(
        facts(status=RUNNING), desired("sha256:" + "b" * 64), ready(exposed="x"), NOW
    )

    assert plan.action is Action.PUSH_POLICY


def test_ports_refused_before_the_first_ready_fail_the_session() -> None:
    refused = ready(exposed=None, exposure_failure=(Reason.GATEWAY_INVALID_ARGUMENT, "bad port"))

    plan = plan_session(facts(), desired(), refused, NOW)

    assert plan.phase is Phase.FAILED
    assert condition(plan, "Ready") == ("False", "GatewayInvalidArgument")


def test_ports_refused_on_a_running_session_warn_once_and_are_not_retried() -> None:
    refused = ready(exposed="old", exposure_failure=(Reason.GATEWAY_INVALID_ARGUMENT, "bad port"))
    [first, again] = passes(facts(status=RUNNING), desired(), [refused, ready(exposed="old")])

    assert first.phase is Phase.READY
    assert condition(first, "EndpointsExposed") == ("False", "GatewayInvalidArgument")
    assert reasons(first) == ["EndpointFailed"]
    assert again.action is Action.NONE  # the same generation is not retried
    assert condition(again, "EndpointsExposed") == ("False", "GatewayInvalidArgument")
    assert reasons(again) == []


def test_a_refusal_of_an_older_generation_is_retried() -> None:
    refused = ready(exposed="old", exposure_failure=(Reason.GATEWAY_INVALID_ARGUMENT, "bad port"))
    [first] = passes(facts(status=RUNNING), desired(), [refused])
    status = {**RUNNING, **status_after(first, 1)}

    plan = plan_session(facts(status=status, generation=2), desired(), ready(exposed="old"), NOW)

    assert plan.action is Action.SYNC_PORTS


def test_exposed_ports_are_reported() -> None:
    plan = plan_session(facts(status=RUNNING), desired(), ready(exposed=PORTS), NOW)

    assert condition(plan, "EndpointsExposed") == ("True", "PortsExposed")
    [exposed] = [c for c in plan.conditions if c.type == "EndpointsExposed"]
    assert exposed.message == "cdp exposed"


def test_the_extension_condition_is_carried_on_every_plan() -> None:
    extension = Condition(
        ConditionType.LIFETIME_EXTENDED, Status.FALSE, Reason.EXTENSION_REFUSED, "too late"
    )
    for obs in (ready(), replace(ready(), sandbox=None, active_revision=None)):
        plan = plan_session(facts(extension=extension), desired(), obs, NOW)
        assert condition(plan, "LifetimeExtended") == ("False", "ExtensionRefused")
