"""`plan_session` before a sandbox is ready: expiry, failures, creation, drift, suspend.

Each test names one lifecycle rule of `core.plan` and checks what a user sees: the action
taken on the gateway, the phase, the conditions, and the Events (posted once, not per pass).
"""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest

from helmdeck_operator.core.conditions import Status
from helmdeck_operator.core.plan import (
    SOON,
    Action,
    Observed,
    plan_session,
)
from helmdeck_operator.gateway import models as gw
from helmdeck_operator.gateway.errors import (
    GatewayError,
    GatewayPermissionDenied,
    GatewayUnauthenticated,
)
from helmdeck_operator.vocabulary import PERMANENT_REASONS, Phase
from tests.support.builders import (
    NOW,
    OTHER_UID,
    REV_A,
    REV_B,
    SANDBOX,
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

# -- 1. expiry ---------------------------------------------------------------------------


def test_expiry_with_delete_removes_the_session() -> None:
    plan = plan_session(facts(expires_at=later(-1)), desired(), ready(), NOW)

    assert plan.action is Action.DELETE_SESSION
    assert plan.phase is Phase.EXPIRED
    assert [(e.type, e.reason) for e in plan.events] == [("Normal", "Expired")]
    assert "2025-06-01T11:59:59Z" in plan.events[0].message
    assert condition(plan, "Ready") == ("False", "Expired")
    assert plan.requeue_after == SOON


def test_expiry_time_is_reported_in_utc_whatever_the_input_zone() -> None:
    expiry = (NOW - timedelta(seconds=1)).astimezone(timezone(timedelta(hours=2)))

    plan = plan_session(facts(expires_at=expiry), desired(), ready(), NOW)

    assert plan.events[0].message == "lifetime ended at 2025-06-01T11:59:59Z"


def test_expiry_is_reached_at_the_exact_instant() -> None:
    assert plan_session(facts(expires_at=NOW), desired(), ready(), NOW).phase is Phase.EXPIRED
    assert plan_session(facts(expires_at=later(1)), desired(), ready(), NOW).phase is Phase.READY


def test_expiry_with_retain_deletes_the_sandbox_and_keeps_the_session() -> None:
    plan = plan_session(facts(expires_at=later(-1), on_expiry="Retain"), desired(), ready(), NOW)

    assert plan.action is Action.DELETE_SANDBOX
    assert not plan.rollout
    assert plan.phase is Phase.EXPIRED
    assert condition(plan, "Provisioned") == ("True", "Expired")


def test_expiry_with_retain_does_nothing_more_once_the_sandbox_is_gone() -> None:
    plan = plan_session(facts(expires_at=later(-1), on_expiry="Retain"), desired(), Observed(), NOW)

    assert plan.action is Action.NONE
    assert plan.phase is Phase.EXPIRED
    assert plan.requeue_after is None


def test_expiry_with_retain_follows_a_sandbox_being_deleted_until_it_is_gone() -> None:
    going = Observed(sandbox=sandbox(deleting=True))
    plan = plan_session(facts(expires_at=later(-1), on_expiry="Retain"), desired(), going, NOW)

    assert plan.action is Action.NONE  # deleted already: nothing to do but watch it go
    assert plan.phase is Phase.EXPIRED
    assert plan.requeue_after == SOON


def test_expiry_with_retain_reports_no_sandbox_once_it_is_gone() -> None:
    plan = plan_session(facts(expires_at=later(-1), on_expiry="Retain"), desired(), Observed(), NOW)

    assert condition(plan, "Provisioned") == ("False", "Expired")


def test_expired_event_is_posted_only_on_the_way_into_expired() -> None:
    session = facts(expires_at=later(-1), on_expiry="Retain")

    first, second, third = passes(
        session, desired(), [ready(), Observed(sandbox=sandbox(deleting=True)), Observed()]
    )

    assert reasons(first) == ["Expired"]
    assert reasons(second) == reasons(third) == []
    assert [p.action for p in (first, second, third)] == [
        Action.DELETE_SANDBOX,
        Action.NONE,
        Action.NONE,
    ]


@pytest.mark.parametrize(
    "obs",
    [
        Observed(error="GetSandbox: UNAVAILABLE"),
        Observed(failure=("GatewayNotConfigured", "no such gateway")),
        Observed(sandbox=sandbox(P.ERROR)),
    ],
    ids=["gateway-down", "permanent-failure", "sandbox-error"],
)
def test_expiry_comes_before_any_failure(obs: Observed) -> None:
    plan = plan_session(facts(expires_at=later(-1)), desired(), obs, NOW)

    assert plan.phase is Phase.EXPIRED
    assert plan.action is Action.DELETE_SESSION


# -- 2. a permanent failure stays reported for its generation ----------------------------


def _failed_status(reason: str, generation: int = 1) -> dict[str, object]:
    failed = plan_session(
        facts(), desired(), Observed(failure=(reason, "the gateway said no")), NOW
    )
    return status_after(failed, generation)


@pytest.mark.parametrize("reason", sorted(PERMANENT_REASONS))
def test_permanent_failure_stays_failed_for_the_same_generation(reason: str) -> None:
    session = facts(status=_failed_status(reason))

    plan = plan_session(session, desired(), ready(), NOW)

    assert plan.phase is Phase.FAILED
    assert plan.action is Action.NONE
    assert plan.events == ()
    assert condition(plan, "Ready") == ("False", reason)
    assert plan.conditions[0].message == "the gateway said no"


def test_permanent_failure_is_retried_when_the_spec_changes() -> None:
    session = facts(generation=2, status=_failed_status("SandboxError", generation=1))

    plan = plan_session(session, desired(), ready(), NOW)

    assert plan.phase is Phase.READY


def test_failed_with_a_reason_that_may_clear_is_not_held() -> None:
    session = facts(status=_failed_status("PolicyInvalid"))

    assert plan_session(session, desired(), ready(), NOW).phase is Phase.READY


# -- a refusal of our last action -----------------------------------------------------


def test_failure_of_the_last_action_fails_the_session_with_a_warning() -> None:
    obs = Observed(failure=("GatewayInvalidArgument", "image is not allowed"))

    plan = plan_session(facts(), desired(), obs, NOW)

    assert plan.phase is Phase.FAILED
    assert plan.action is Action.NONE
    assert [(e.type, e.reason, e.message) for e in plan.events] == [
        ("Warning", "GatewayInvalidArgument", "image is not allowed")
    ]
    assert condition(plan, "Ready") == ("False", "GatewayInvalidArgument")
    assert condition(plan, "Provisioned") == ("False", "GatewayInvalidArgument")
    assert condition(plan, "PolicyApplied") == ("Unknown", "GatewayInvalidArgument")


def test_failure_warning_is_posted_once() -> None:
    obs = Observed(failure=("GatewayInvalidArgument", "image is not allowed"))

    first, second = passes(facts(), desired(), [obs, obs])

    assert reasons(first) == ["GatewayInvalidArgument"]
    assert second.events == ()
    assert second.phase is Phase.FAILED


# -- the gateway could not be asked ---------------------------------------------------


def test_unreachable_gateway_keeps_the_phase_and_makes_ready_unknown() -> None:
    before = plan_session(facts(), desired(), ready(), NOW)
    session = facts(status=status_after(before))

    plan = plan_session(session, desired(), Observed(error="GetSandbox: UNAVAILABLE"), NOW)

    assert plan.phase is Phase.READY
    assert plan.action is Action.NONE
    assert plan.events == ()
    assert plan.conditions[0].reason == "GatewayUnavailable"
    assert plan.conditions[0].message == "GetSandbox: UNAVAILABLE"
    assert before.conditions[0].status is Status.TRUE
    assert plan.conditions[0].status is Status.UNKNOWN  # nobody can vouch for it now
    assert plan.conditions[1:] == before.conditions[1:3]  # EndpointsExposed stays as written
    assert plan.policy == before.policy


def test_a_gateway_problem_names_its_reason_in_the_ready_condition() -> None:
    obs = Observed(error="GetSandbox: PERMISSION_DENIED", error_reason="GatewayPermissionDenied")

    plan = plan_session(facts(), desired(), obs, NOW)

    assert condition(plan, "Ready") == ("Unknown", "GatewayPermissionDenied")
    assert plan.action is Action.NONE
    assert plan.events == ()


@pytest.mark.parametrize(
    ("cls", "code"),
    [(GatewayPermissionDenied, "PERMISSION_DENIED"), (GatewayUnauthenticated, "UNAUTHENTICATED")],
)
def test_an_auth_refusal_shows_the_tenant_no_word_of_the_gateways(
    cls: type[GatewayError], code: str
) -> None:
    said = "subject system:serviceaccount:helmdeck lacks role sandbox-admin (issuer idp.corp)"
    err = cls(said, gateway="pods", rpc="GetSandbox", code=code)
    # As the shell hands a failed read to the planner (reconcile/observe.py).
    obs = Observed(error=str(err), error_reason=err.reason)

    plan = plan_session(facts(), desired(), obs, NOW)

    assert condition(plan, "Ready")[1] == err.reason
    for c in plan.conditions:
        assert "sandbox-admin" not in c.message
        assert "idp.corp" not in c.message
    assert "gateway 'pods'" in plan.conditions[0].message
    assert "platform team" in plan.conditions[0].message


def test_unreachable_gateway_for_a_new_session_says_why_it_is_pending() -> None:
    plan = plan_session(facts(), desired(), Observed(error="GetSandbox: UNAVAILABLE"), NOW)

    assert plan.phase is Phase.PENDING
    assert [(c.type, c.status.value, c.reason) for c in plan.conditions] == [
        ("Ready", "Unknown", "GatewayUnavailable"),
        ("Provisioned", "Unknown", "GatewayUnavailable"),
        ("PolicyApplied", "Unknown", "GatewayUnavailable"),
    ]
    assert plan.policy == {"name": "web", "desiredRevision": REV_A}


# -- 3. no sandbox ----------------------------------------------------------------------


def test_missing_sandbox_is_created() -> None:
    plan = plan_session(facts(), desired(), Observed(), NOW)

    assert plan.action is Action.CREATE
    assert plan.phase is Phase.PROVISIONING
    assert plan.events == ()
    assert plan.requeue_after == 0.0
    assert condition(plan, "Ready") == ("False", "Creating")
    assert condition(plan, "Provisioned") == ("False", "Creating")
    assert condition(plan, "PolicyApplied") == ("Unknown", "Creating")
    assert SANDBOX in plan.conditions[0].message


def test_sandbox_lost_behind_our_back_is_recreated_with_a_warning() -> None:
    session = facts(status={"phase": "Ready", "sandbox": {"name": SANDBOX, "id": "sbx-1"}})

    plan = plan_session(session, desired(), Observed(), NOW)

    assert plan.action is Action.CREATE
    assert plan.phase is Phase.PROVISIONING
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "SandboxLost")]
    assert "disappeared from gateway pods" in plan.events[0].message


def test_sandbox_without_an_id_in_status_was_never_seen_so_is_not_lost() -> None:
    session = facts(status={"phase": "Provisioning", "sandbox": {"name": SANDBOX}})

    plan = plan_session(session, desired(), Observed(), NOW)

    assert plan.action is Action.CREATE
    assert plan.events == ()


def test_sandbox_lost_fails_the_session_when_configured_to() -> None:
    session = facts(
        on_sandbox_lost="Fail", status={"phase": "Ready", "sandbox": {"name": SANDBOX, "id": "x"}}
    )

    first, second = passes(session, desired(), [Observed(), Observed()])

    assert first.phase is second.phase is Phase.FAILED
    assert first.action is second.action is Action.NONE
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "SandboxLost")]
    assert second.events == ()


@pytest.mark.parametrize("reason", ["PolicyNotFound", "PolicyInvalid"])
def test_unresolvable_policy_keeps_a_new_session_pending(reason: str) -> None:
    plan = plan_session(facts(), problem(reason), Observed(), NOW)

    assert plan.action is Action.NONE
    assert plan.phase is Phase.PENDING
    assert condition(plan, "PolicyApplied") == ("False", reason)
    assert plan.conditions[2].message == problem(reason).message
    assert plan.requeue_after is None
    assert plan.policy == {"name": "web"}


# -- 4. name conflict -----------------------------------------------------------------


def test_sandbox_of_another_session_is_a_conflict() -> None:
    obs = ready(sandbox=sandbox(owner=OTHER_UID))

    plan = plan_session(facts(), desired(), obs, NOW)

    assert plan.phase is Phase.FAILED
    assert plan.action is Action.NONE
    assert condition(plan, "Ready") == ("False", "SandboxNameConflict")
    assert condition(plan, "Provisioned") == ("False", "SandboxNameConflict")
    assert "another session" in plan.conditions[0].message
    for c in plan.conditions:  # the other session, maybe another tenant's, is not named
        assert OTHER_UID not in c.message
    assert reasons(plan) == ["SandboxNameConflict"]


def test_a_conflicting_sandbox_policy_is_not_reported_as_ours() -> None:
    obs = ready(REV_A, sandbox=sandbox(owner=OTHER_UID, current_policy_version=7))

    plan = plan_session(facts(), desired(REV_B), obs, NOW)

    assert plan.policy == {"name": "web", "desiredRevision": REV_B}


def test_sandbox_without_an_owner_label_is_adopted() -> None:
    plan = plan_session(facts(), desired(), ready(sandbox=sandbox(owner=None)), NOW)

    assert plan.phase is Phase.READY


# -- deleting, 5. shape, 6. error ------------------------------------------------------


@pytest.mark.parametrize(
    "gone",
    [sandbox(deleting=True), sandbox(P.DELETING)],
    ids=["delete-accepted", "phase-deleting"],
)
def test_sandbox_being_deleted_is_waited_for(gone: gw.Sandbox) -> None:
    plan = plan_session(facts(), desired(), Observed(sandbox=gone), NOW)

    assert plan.action is Action.NONE
    assert plan.phase is Phase.PROVISIONING
    assert condition(plan, "Ready") == ("False", "SandboxDeleting")
    assert plan.requeue_after == SOON


def test_changed_shape_recreates_the_sandbox() -> None:
    plan = plan_session(facts(), desired(), ready(sandbox=sandbox(shape="f" * 16)), NOW)

    assert plan.action is Action.DELETE_SANDBOX
    assert not plan.rollout  # a spec change is not a policy rollout: it takes no slot
    assert plan.phase is Phase.PROVISIONING
    assert [(e.type, e.reason) for e in plan.events] == [("Normal", "Recreating")]
    assert condition(plan, "Ready") == ("False", "Recreating")
    assert plan.requeue_after == 0.0


def test_sandbox_without_a_shape_annotation_is_adopted() -> None:
    plan = plan_session(facts(), desired(), ready(sandbox=sandbox(shape=None)), NOW)

    assert plan.action is Action.NONE
    assert plan.phase is Phase.READY


def test_sandbox_in_error_fails_with_the_gateway_reason() -> None:
    broken = sandbox(
        P.ERROR,
        conditions=(
            gw.Condition("Scheduled", "True"),
            gw.Condition("Ready", "False", "CrashLoop", "exec /bin/sidecar: no such file"),
        ),
    )

    plan = plan_session(facts(), desired(), Observed(sandbox=broken), NOW)

    assert plan.phase is Phase.FAILED
    assert plan.action is Action.NONE
    assert condition(plan, "Ready") == ("False", "SandboxError")
    assert plan.conditions[0].message == (
        f"the gateway reports sandbox {SANDBOX} in ERROR: exec /bin/sidecar: no such file"
    )
    assert condition(plan, "Provisioned") == ("True", "SandboxCreated")
    assert reasons(plan) == ["SandboxError"]


def test_sandbox_whose_main_process_exited_fails() -> None:
    first, second = passes(facts(), desired(), [ready(sandbox=sandbox(P.COMPLETED))] * 2)

    assert first.phase is second.phase is Phase.FAILED
    assert condition(first, "Ready") == ("False", "SandboxCompleted")
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "SandboxCompleted")]
    assert second.events == ()


def test_sandbox_in_error_without_details_still_says_so() -> None:
    plan = plan_session(facts(), desired(), Observed(sandbox=sandbox(P.ERROR)), NOW)

    assert plan.conditions[0].message == f"the gateway reports sandbox {SANDBOX} in ERROR"


# -- 7. suspend -------------------------------------------------------------------------


def test_suspending_a_ready_sandbox_stops_it() -> None:
    plan = plan_session(facts(suspend=True), desired(), ready(), NOW)

    assert plan.action is Action.STOP
    assert plan.phase is Phase.SUSPENDED
    assert plan.requeue_after == 0.0


def test_stopping_sandbox_is_suspended_and_waited_for() -> None:
    plan = plan_session(facts(suspend=True), desired(), ready(sandbox=sandbox(P.STOPPING)), NOW)

    assert plan.action is Action.NONE
    assert plan.phase is Phase.SUSPENDED
    assert condition(plan, "Ready") == ("False", "Stopping")
    assert plan.requeue_after == SOON


def test_stopped_sandbox_is_suspended_until_the_next_resync() -> None:
    plan = plan_session(facts(suspend=True), desired(), ready(sandbox=sandbox(P.STOPPED)), NOW)

    assert plan.action is Action.NONE
    assert plan.phase is Phase.SUSPENDED
    assert condition(plan, "Ready") == ("False", "Suspended")
    assert condition(plan, "Provisioned") == ("True", "SandboxCreated")
    assert plan.requeue_after is None


def test_suspended_event_is_posted_once_across_an_asynchronous_stop() -> None:
    """The gateway answers StopSandbox with STOPPING; STOPPED comes on a later pass."""
    observed = [ready(), ready(sandbox=sandbox(P.STOPPING)), ready(sandbox=sandbox(P.STOPPED))]

    plans = passes(facts(suspend=True), desired(), [*observed, observed[-1]])

    assert [reasons(p) for p in plans] == [["Suspended"], [], [], []]
    assert [p.phase for p in plans] == [Phase.SUSPENDED] * 4


def test_suspended_event_is_posted_when_the_stop_completes_at_once() -> None:
    plan = plan_session(facts(suspend=True), desired(), ready(sandbox=sandbox(P.STOPPED)), NOW)

    assert reasons(plan) == ["Suspended"]


@pytest.mark.parametrize("phase", [P.PROVISIONING, P.STARTING])
def test_suspend_waits_for_a_booting_sandbox(phase: gw.SandboxPhase) -> None:
    plan = plan_session(facts(suspend=True), desired(), Observed(sandbox=sandbox(phase)), NOW)

    assert plan.action is Action.NONE
    assert plan.phase is Phase.PROVISIONING
    assert condition(plan, "Ready") == ("False", "Stopping")


def test_resuming_starts_a_stopped_sandbox_with_an_event() -> None:
    suspended = plan_session(facts(suspend=True), desired(), ready(sandbox=sandbox(P.STOPPED)), NOW)
    session = facts(status=status_after(suspended))

    plan = plan_session(session, desired(), ready(sandbox=sandbox(P.STOPPED)), NOW)

    assert plan.action is Action.START
    assert plan.phase is Phase.PROVISIONING
    assert [(e.type, e.reason) for e in plan.events] == [("Normal", "Resumed")]
    assert plan.requeue_after == 0.0


def test_starting_a_stopped_sandbox_that_was_not_suspended_posts_no_resumed_event() -> None:
    plan = plan_session(facts(), desired(), ready(sandbox=sandbox(P.STOPPED)), NOW)

    assert plan.action is Action.START
    assert plan.events == ()


def test_resuming_waits_for_a_stop_in_progress() -> None:
    plan = plan_session(facts(), desired(), ready(sandbox=sandbox(P.STOPPING)), NOW)

    assert plan.action is Action.NONE
    assert plan.phase is Phase.PROVISIONING
    assert condition(plan, "Ready") == ("False", "Starting")


# -- the order of the rules -----------------------------------------------------------


def test_a_conflict_is_reported_before_a_shape_change_or_an_error() -> None:
    foreign = sandbox(P.ERROR, owner=OTHER_UID, shape="f" * 16)

    plan = plan_session(facts(), desired(), Observed(sandbox=foreign), NOW)

    assert condition(plan, "Ready") == ("False", "SandboxNameConflict")


@pytest.mark.parametrize(
    ("phase", "suspend"), [(P.ERROR, False), (P.STOPPED, True), (P.PROVISIONING, False)]
)
def test_a_shape_change_recreates_the_sandbox_whatever_its_phase(
    phase: gw.SandboxPhase, suspend: bool
) -> None:
    obs = Observed(sandbox=sandbox(phase, shape="f" * 16))

    plan = plan_session(facts(suspend=suspend), desired(), obs, NOW)

    assert plan.action is Action.DELETE_SANDBOX


def test_the_gateway_error_is_reported_before_a_missing_sandbox_is_created() -> None:
    plan = plan_session(facts(), desired(), Observed(error="GetSandbox: UNAVAILABLE"), NOW)

    assert plan.action is Action.NONE


def test_a_failed_session_is_not_recreated_when_its_sandbox_is_missing() -> None:
    session = facts(status=_failed_status("SandboxError"))

    plan = plan_session(session, desired(), Observed(), NOW)

    assert plan.action is Action.NONE
    assert plan.phase is Phase.FAILED
