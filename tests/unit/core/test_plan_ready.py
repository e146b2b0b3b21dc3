"""`plan_session` for a READY sandbox: first policy load, Ready, and policy changes.

A session is Ready only once the gateway reports READY and a policy loaded; after that a
new desired revision is pushed, refused or rolled out by recreation without leaving Ready.
Also: the three conditions come in the same order from every rule.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from helmdeck_operator.core.plan import (
    SOON,
    Action,
    DesiredPolicy,
    Observed,
    PolicyProblem,
    SessionFacts,
    plan_session,
)
from helmdeck_operator.gateway import models as gw
from helmdeck_operator.policy.change import Blocker, ChangeClass
from helmdeck_operator.vocabulary import Phase
from tests.support.builders import (
    HEX_B,
    NOW,
    OTHER_UID,
    REV_A,
    REV_B,
    desired,
    facts,
    later,
    problem,
    ready,
    sandbox,
    status_after,
)
from tests.support.plans import condition, passes, reasons

P = gw.SandboxPhase
LANDLOCK = Blocker("landlock.compatibility", "changed from 'best_effort' to 'hard_requirement'")


def _ready_on_a(**facts_overrides: object) -> SessionFacts:
    """A session whose status says Ready with REV_A loaded."""
    first = plan_session(facts(), desired(REV_A), ready(REV_A), NOW)
    return facts(status=status_after(first), **facts_overrides)


# -- first load -----------------------------------------------------------------------


def test_ready_sandbox_without_a_loaded_policy_is_still_provisioning() -> None:
    plan = plan_session(facts(), desired(), ready(None), NOW)

    assert plan.phase is Phase.PROVISIONING
    assert plan.action is Action.NONE
    assert condition(plan, "Ready") == ("False", "Provisioning")
    assert condition(plan, "Provisioned") == ("True", "SandboxCreated")
    assert "waiting for its policy to load" in plan.conditions[0].message
    assert plan.requeue_after == SOON


@pytest.mark.parametrize("phase", [P.PROVISIONING, P.STARTING, P.UNSPECIFIED])
def test_booting_sandbox_is_provisioning(phase: gw.SandboxPhase) -> None:
    plan = plan_session(facts(), desired(), ready(REV_A, sandbox=sandbox(phase)), NOW)

    assert plan.phase is Phase.PROVISIONING
    assert plan.action is Action.NONE
    assert phase.value.lower() in plan.conditions[0].message
    assert plan.requeue_after == SOON


def test_a_sandbox_the_driver_lost_track_of_is_looked_at_on_the_resync_pace() -> None:
    plan = plan_session(facts(), desired(), ready(REV_A, sandbox=sandbox(P.UNKNOWN)), NOW)

    assert plan.phase is Phase.PROVISIONING
    assert plan.requeue_after is None


def test_ready_with_the_desired_policy_loaded_is_ready() -> None:
    plan = plan_session(facts(), desired(REV_A), ready(REV_A), NOW)

    assert plan.phase is Phase.READY
    assert plan.action is Action.NONE
    assert plan.requeue_after is None
    assert [(c.type, c.status.value, c.reason) for c in plan.conditions] == [
        ("Ready", "True", "SandboxReady"),
        ("Provisioned", "True", "SandboxCreated"),
        ("PolicyApplied", "True", "PolicyLoaded"),
        ("EndpointsExposed", "True", "PortsExposed"),
        ("ProvidersAttached", "True", "ProvidersAttached"),
    ]
    assert plan.policy == {
        "name": "web",
        "desiredRevision": REV_A,
        "revision": REV_A,
        "gatewayVersion": 1,
        "state": "Loaded",
    }
    # One Event says both: usable, and running the policy asked for.
    assert [(e.type, e.reason) for e in plan.events] == [("Normal", "Ready")]
    assert f"policy web {REV_A} loaded (gateway version 1)" in plan.events[0].message


def test_the_ready_event_is_posted_once() -> None:
    first, second = passes(facts(), desired(), [ready(), ready()])

    assert reasons(first) == ["Ready"]
    assert second.events == ()
    assert second.phase is Phase.READY


def test_a_hot_reload_of_a_bound_policy_is_announced_on_the_policy_not_the_session() -> None:
    newer = ready(REV_B, sandbox=sandbox(current_policy_version=2))

    plan = plan_session(replace(_ready_on_a(), bound=True), desired(REV_B), newer, NOW)

    assert plan.events == ()
    assert condition(plan, "PolicyApplied") == ("True", "PolicyLoaded")


def test_a_new_revision_loaded_is_announced_without_a_new_ready_event() -> None:
    newer = ready(REV_B, sandbox=sandbox(current_policy_version=2))

    plan = plan_session(_ready_on_a(), desired(REV_B), newer, NOW)

    assert reasons(plan) == ["PolicyApplied"]
    assert plan.policy["gatewayVersion"] == 2


def test_policy_applied_is_announced_when_a_refused_revision_loads_after_all() -> None:
    session = facts(
        status={
            "phase": "Ready",
            "policy": {"revision": REV_A, "desiredRevision": REV_A, "state": "Failed"},
        }
    )

    assert reasons(plan_session(session, desired(REV_A), ready(REV_A), NOW)) == ["PolicyApplied"]


def test_unresolvable_policy_keeps_a_ready_sandbox_on_its_loaded_policy() -> None:
    plan = plan_session(_ready_on_a(), problem("PolicyInvalid"), ready(REV_A), NOW)

    assert plan.phase is Phase.READY
    assert plan.action is Action.NONE
    assert condition(plan, "Ready") == ("True", "SandboxReady")
    assert condition(plan, "PolicyApplied") == ("False", "PolicyInvalid")
    assert plan.conditions[2].message.endswith("the sandbox keeps its loaded policy")
    assert plan.policy == {"name": "web", "revision": REV_A, "gatewayVersion": 1}


# -- a different desired revision --------------------------------------------------


def test_a_live_policy_change_is_pushed() -> None:
    plan = plan_session(_ready_on_a(), desired(REV_B), ready(REV_A), NOW)

    assert plan.action is Action.PUSH_POLICY
    assert plan.phase is Phase.READY
    assert condition(plan, "Ready") == ("True", "SandboxReady")
    assert condition(plan, "PolicyApplied") == ("False", "PolicyPending")
    assert plan.policy["state"] == "Pending"
    assert plan.policy["revision"] == REV_A
    assert plan.policy["desiredRevision"] == REV_B
    assert plan.events == ()
    assert plan.requeue_after == 0.0


def test_a_pushed_revision_still_loading_is_polled() -> None:
    loading = gw.PolicyRevision(version=2, hash=HEX_B, status=gw.PolicyLoadState.PENDING)

    plan = plan_session(_ready_on_a(), desired(REV_B), ready(REV_A, latest=loading), NOW)

    assert plan.action is Action.NONE
    assert plan.requeue_after == SOON
    assert condition(plan, "PolicyApplied") == ("False", "PolicyPending")


def test_a_refused_revision_is_reported_once_and_not_pushed_again() -> None:
    refused = ready(REV_A, refusal="network_policies[x]: unknown protocol")

    first, second, third = passes(_ready_on_a(), desired(REV_B), [refused, ready(), ready()])

    assert [(e.type, e.reason) for e in first.events] == [("Warning", "PolicyRejected")]
    assert "unknown protocol" in first.events[0].message
    assert [p.action for p in (first, second, third)] == [Action.NONE] * 3
    assert second.events == third.events == ()
    assert condition(third, "PolicyApplied") == ("False", "PolicyRejected")
    assert third.policy["state"] == "Failed"
    assert "unknown protocol" in third.policy["message"]
    assert third.requeue_after is None


def test_a_failed_load_is_reported_once() -> None:
    failed = gw.PolicyRevision(
        version=2, hash=HEX_B, status=gw.PolicyLoadState.FAILED, load_error="bad rule"
    )
    obs = ready(REV_A, latest=failed)

    first, second = passes(_ready_on_a(), desired(REV_B), [obs, obs])

    assert reasons(first) == ["PolicyRejected"]
    assert second.events == ()
    assert condition(second, "PolicyApplied") == ("False", "PolicyLoadFailed")
    assert second.action is Action.NONE


def test_a_static_change_under_reject_keeps_the_old_revision_with_one_warning() -> None:
    obs = ready(REV_A, change=ChangeClass((LANDLOCK,)))

    first, second = passes(_ready_on_a(), desired(REV_B), [obs, obs])

    assert first.action is second.action is Action.NONE
    assert reasons(first) == ["PolicyRejected"]
    assert "landlock.compatibility" in first.events[0].message
    assert second.events == ()
    assert condition(second, "PolicyApplied") == ("False", "StaticChangeRejected")
    assert second.policy["revision"] == REV_A


def test_a_static_change_under_recreate_replaces_the_sandbox() -> None:
    obs = ready(REV_A, change=ChangeClass((LANDLOCK,)))

    plan = plan_session(_ready_on_a(), desired(REV_B, static_changes="Recreate"), obs, NOW)

    assert plan.action is Action.DELETE_SANDBOX
    assert plan.rollout
    assert [(e.type, e.reason) for e in plan.events] == [("Normal", "Recreating")]
    assert condition(plan, "PolicyApplied") == ("False", "Recreating")
    assert plan.requeue_after == 0.0


def test_a_static_change_under_recreate_waits_for_a_rollout_slot() -> None:
    obs = ready(REV_A, change=ChangeClass((LANDLOCK,)), may_recreate=False)

    plan = plan_session(_ready_on_a(), desired(REV_B, static_changes="Recreate"), obs, NOW)

    assert plan.action is Action.NONE
    assert plan.events == ()
    assert condition(plan, "PolicyApplied") == ("False", "RecreatePending")
    # Not a poll: the session is woken when a slot frees.
    assert plan.requeue_after is None
    assert plan.awaits_slot


# -- shape of every plan ------------------------------------------------------------

_SCENARIOS: dict[str, tuple[SessionFacts, DesiredPolicy | PolicyProblem, Observed]] = {
    "expired": (facts(expires_at=later(-1)), desired(), ready()),
    "failure": (facts(), desired(), Observed(failure=("GatewayInternal", "boom"))),
    "unreachable": (facts(), desired(), Observed(error="down")),
    "create": (facts(), desired(), Observed()),
    "policy-missing": (facts(), problem(), Observed()),
    "conflict": (facts(), desired(), ready(sandbox=sandbox(owner=OTHER_UID))),
    "deleting": (facts(), desired(), ready(sandbox=sandbox(deleting=True))),
    "shape": (facts(), desired(), ready(sandbox=sandbox(shape="x"))),
    "error": (facts(), desired(), ready(sandbox=sandbox(P.ERROR))),
    "stop": (facts(suspend=True), desired(), ready()),
    "stopped": (facts(suspend=True), desired(), ready(sandbox=sandbox(P.STOPPED))),
    "start": (facts(), desired(), ready(sandbox=sandbox(P.STOPPED))),
    "no-policy-yet": (facts(), desired(), ready(None)),
    "ready": (facts(), desired(), ready()),
    "push": (facts(), desired(REV_B), ready()),
    "ready-policy-invalid": (facts(), problem("PolicyInvalid"), ready()),
}


@pytest.mark.parametrize("scenario", list(_SCENARIOS))
def test_conditions_always_come_as_ready_provisioned_policy_applied(scenario: str) -> None:
    plan = plan_session(*_SCENARIOS[scenario], NOW)

    types = [c.type for c in plan.conditions]
    assert types[:3] == ["Ready", "Provisioned", "PolicyApplied"]
    # A READY sandbox also says whether its ports are exposed and its providers attached.
    assert types[3:] in ([], ["EndpointsExposed", "ProvidersAttached"])


@pytest.mark.parametrize("scenario", list(_SCENARIOS))
def test_status_policy_always_names_the_policy(scenario: str) -> None:
    plan = plan_session(*_SCENARIOS[scenario], NOW)

    assert plan.policy["name"] == "web"
