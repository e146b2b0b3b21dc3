"""`plan_session` for a session its namespace's tenancy rules hold back (`SessionFacts.held`).

The shell decides `held` (core/tenancy.py, quota.py) only for a session without a sandbox;
the plan turns it into what the user sees: QuotaExceeded waits in Pending (woken when room
frees, never polled), TenancyRefused is Failed until the spec or the rules change. Neither
creates anything, and neither outlasts the reason: a later pass without `held` creates.
"""

from __future__ import annotations

import pytest

from helmdeck_operator.core.plan import Action, Observed, plan_session
from helmdeck_operator.vocabulary import Phase, Reason
from tests.support.builders import (
    NOW,
    SANDBOX,
    desired,
    facts,
    later,
    problem,
    ready,
    status_after,
)
from tests.support.plans import condition, passes, reasons

QUOTA = (
    Reason.QUOTA_EXCEEDED,
    "waiting for room: the namespace's sessions would take 4 sessions, more than "
    "TenantPolicy default allows (perNamespace.sessions: 3); it proceeds when another "
    "session of the namespace ends",
)
REFUSED = (
    Reason.TENANCY_REFUSED,
    "spec.image: image ghcr.io/x/tool:1 is not allowed by TenantPolicy default "
    "(imagePrefixes: none; leave the image out for the family's default image)",
)


def test_over_quota_waits_in_pending_without_polling() -> None:
    plan = plan_session(facts(held=QUOTA), desired(), Observed(), NOW)

    assert plan.action is Action.NONE
    assert plan.phase is Phase.PENDING
    assert condition(plan, "Ready") == ("False", "QuotaExceeded")
    assert condition(plan, "Provisioned") == ("False", "QuotaExceeded")
    assert condition(plan, "PolicyApplied") == ("Unknown", "QuotaExceeded")
    (ready_condition,) = [c for c in plan.conditions if c.type == "Ready"]
    assert ready_condition.message == QUOTA[1]
    assert plan.events == ()
    assert plan.requeue_after is None  # the ledger wakes it when room frees


def test_waiting_for_room_stays_quiet_pass_after_pass() -> None:
    first, second = passes(facts(held=QUOTA), desired(), [Observed(), Observed()])

    assert first.phase is second.phase is Phase.PENDING
    assert first.action is second.action is Action.NONE
    assert reasons(first) == reasons(second) == []


def test_a_refusal_fails_the_session_naming_the_field_and_the_rule() -> None:
    plan = plan_session(facts(held=REFUSED), desired(), Observed(), NOW)

    assert plan.action is Action.NONE
    assert plan.phase is Phase.FAILED
    assert condition(plan, "Ready") == ("False", "TenancyRefused")
    assert condition(plan, "Provisioned") == ("False", "TenancyRefused")
    (ready_condition,) = [c for c in plan.conditions if c.type == "Ready"]
    assert ready_condition.message == REFUSED[1]
    assert [(e.type, e.reason, e.message) for e in plan.events] == [
        ("Warning", "TenancyRefused", REFUSED[1])
    ]


def test_a_refusal_is_announced_once() -> None:
    first, second = passes(facts(held=REFUSED), desired(), [Observed(), Observed()])

    assert first.phase is second.phase is Phase.FAILED
    assert reasons(first) == ["TenancyRefused"]
    assert reasons(second) == []


@pytest.mark.parametrize("held", [QUOTA, REFUSED], ids=["room-freed", "rules-changed"])
def test_once_nothing_holds_it_back_the_session_is_created(
    held: tuple[Reason, str],
) -> None:
    """TenancyRefused is not a permanent failure: the rules may change, and then it runs."""
    before = plan_session(facts(held=held), desired(), Observed(), NOW)

    plan = plan_session(facts(status=status_after(before)), desired(), Observed(), NOW)

    assert plan.action is Action.CREATE
    assert plan.phase is Phase.PROVISIONING
    assert condition(plan, "Ready") == ("False", "Creating")
    assert SANDBOX in plan.conditions[0].message


def test_a_session_nothing_holds_back_is_created() -> None:
    plan = plan_session(facts(held=None), desired(), Observed(), NOW)

    assert plan.action is Action.CREATE
    assert plan.phase is Phase.PROVISIONING


@pytest.mark.parametrize("held", [QUOTA, REFUSED], ids=["quota", "refused"])
def test_a_session_with_its_sandbox_ignores_held(held: tuple[Reason, str]) -> None:
    """The rules decide new sandboxes: a running one is never stopped by them."""
    kept = plan_session(facts(held=held), desired(), ready(), NOW)

    assert kept == plan_session(facts(), desired(), ready(), NOW)
    assert kept.phase is Phase.READY
    assert kept.action is Action.NONE


@pytest.mark.parametrize("held", [QUOTA, REFUSED], ids=["quota", "refused"])
def test_an_unresolvable_policy_is_reported_first(held: tuple[Reason, str]) -> None:
    """Nothing could be created without a policy anyway: that is what the user must fix."""
    plan = plan_session(facts(held=held), problem("PolicyNotFound"), Observed(), NOW)

    assert plan.phase is Phase.PENDING
    assert plan.action is Action.NONE
    assert condition(plan, "Ready") == ("False", "PolicyNotFound")


@pytest.mark.parametrize("held", [QUOTA, REFUSED], ids=["quota", "refused"])
def test_expiry_comes_before_held(held: tuple[Reason, str]) -> None:
    plan = plan_session(facts(held=held, expires_at=later(-1)), desired(), Observed(), NOW)

    assert plan.phase is Phase.EXPIRED
    assert plan.action is Action.DELETE_SESSION
