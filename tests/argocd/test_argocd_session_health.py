"""The HelmdeckSession health check on every phase and condition combination.

The statuses are the operator's own: each case runs the functional core (`plan_session`)
on a situation and renders the status the reconciler would write (`render_status`), so
the reasons and messages are the ones a cluster shows. Hand-built objects cover only what the
planner never produces on its own: no status yet, a status older than the spec, the
finalizer's Terminating, and an unknown phase. The same check on objects written by the
running operator is tests/integration/operator/test_argocd_health.py.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from helmdeck_dev.objects import condition
from helmdeck_operator.core.plan import (
    DesiredPolicy,
    Observed,
    Plan,
    PolicyProblem,
    plan_session,
)
from helmdeck_operator.core.session_status import render_status
from helmdeck_operator.gateway import models as gw
from helmdeck_operator.policy.change import Blocker, ChangeClass
from helmdeck_operator.vocabulary import Phase, Reason
from tests.support import builders
from tests.support.argo_lua import assess
from tests.support.builders import (
    HEX_B,
    NOW,
    REV_A,
    REV_B,
    SANDBOX,
    UID,
    desired,
    facts,
    problem,
    ready,
    session,
)

P = gw.SandboxPhase
STATIC = ChangeClass((Blocker("process.run_as_user", "changed from '1000' to '2000'"),))


def sandbox(phase: gw.SandboxPhase = P.READY, **overrides: Any) -> gw.Sandbox:
    """Our sandbox, with the service URL the status shows as an endpoint."""
    overrides.setdefault("service_urls", {"cdp": "https://sbx-1.example/cdp"})
    return builders.sandbox(phase, **overrides)


def loaded(revision: str | None = REV_A, **overrides: Any) -> Observed:
    return ready(revision, **{"sandbox": sandbox(), **overrides})


class Pass:
    """One reconcile pass: plan, then the status the shell writes, as a whole object."""

    def __init__(
        self,
        policy: DesiredPolicy | PolicyProblem,
        obs: Observed,
        *,
        after: dict[str, Any] | None = None,
        **facts_overrides: Any,
    ) -> None:
        self.facts = facts(status=(after or {}).get("status", {}), **facts_overrides)
        self.plan: Plan = plan_session(self.facts, policy, obs, NOW)
        old = self.facts.status
        status = render_status(self.facts, self.plan, obs, old, "", NOW)
        status = {k: v for k, v in status.items() if v is not None}  # merge-patch removals
        self.obj = session(
            "s",
            "browser",
            policyRef={"name": "web"},
            suspend=self.facts.suspend,
            lifetime={"ttl": "1h", "onExpiry": self.facts.on_expiry},
        )
        self.obj["metadata"].update(namespace="team", uid=UID, generation=self.facts.generation)
        self.obj["status"] = status

    def condition(self, type_: str) -> dict[str, Any]:
        found = condition(self.obj, type_)
        assert found, f"no {type_} condition"
        return found


def ready_session(**facts_overrides: Any) -> Pass:
    """A session the operator has written Ready with REV_A loaded."""
    return Pass(desired(REV_A), loaded(REV_A), **facts_overrides)


# Each case: a pass, the expected health, and the condition whose message Argo shows.
Case = tuple[Callable[[], Pass], str, str]
EXPIRED_AT = NOW - timedelta(minutes=1)

CASES: dict[str, Case] = {
    # Pending: the policy cannot be resolved yet.
    "pending on a missing policy": (
        lambda: Pass(problem("PolicyNotFound"), Observed()),
        "Progressing",
        "Ready",
    ),
    "pending on an invalid policy": (
        lambda: Pass(problem("PolicyInvalid"), Observed()),
        "Degraded",
        "Ready",
    ),
    "pending on a policy the egress guard refuses": (
        lambda: Pass(problem("EgressGuarded"), Observed()),
        "Degraded",
        "Ready",
    ),
    # Provisioning: creating, booting, waiting for the first policy load, starting, recreating.
    "creating": (lambda: Pass(desired(), Observed()), "Progressing", "Ready"),
    "booting": (
        lambda: Pass(desired(), loaded(sandbox=sandbox(P.PROVISIONING))),
        "Progressing",
        "Ready",
    ),
    "waiting for the first policy load": (
        lambda: Pass(desired(), loaded(None)),
        "Progressing",
        "Ready",
    ),
    "the driver lost track (UNKNOWN)": (
        lambda: Pass(desired(), loaded(sandbox=sandbox(P.UNKNOWN))),
        "Progressing",
        "Ready",
    ),
    "starting after a suspend": (
        lambda: Pass(desired(), loaded(sandbox=sandbox(P.STOPPED))),
        "Progressing",
        "Ready",
    ),
    "shape changed: recreating": (
        lambda: Pass(desired(), loaded(sandbox=sandbox(annotations={"helmdeck.dev/shape": "old"}))),
        "Progressing",
        "Ready",
    ),
    "previous sandbox being deleted": (
        lambda: Pass(desired(), loaded(sandbox=sandbox(deleting=True))),
        "Progressing",
        "Ready",
    ),
    # Ready, with each PolicyApplied outcome.
    "ready with its policy loaded": (ready_session, "Healthy", "Ready"),
    "ready, pushing a new revision": (
        lambda: Pass(desired(REV_B), loaded(REV_A), after=ready_session().obj),
        "Progressing",
        "PolicyApplied",
    ),
    "ready, the gateway loading a new revision": (
        lambda: Pass(
            desired(REV_B),
            loaded(REV_A, latest=gw.PolicyRevision(2, HEX_B, gw.PolicyLoadState.PENDING)),
            after=ready_session().obj,
        ),
        "Progressing",
        "PolicyApplied",
    ),
    "ready, waiting for a recreate slot": (
        lambda: Pass(
            desired(REV_B, static_changes="Recreate"),
            loaded(REV_A, change=STATIC, may_recreate=False),
            after=ready_session().obj,
        ),
        "Progressing",
        "PolicyApplied",
    ),
    "ready, recreating for a static change": (
        lambda: Pass(
            desired(REV_B, static_changes="Recreate"),
            loaded(REV_A, change=STATIC),
            after=ready_session().obj,
        ),
        "Progressing",
        "PolicyApplied",
    ),
    "ready, its policy deleted": (
        lambda: Pass(problem("PolicyNotFound"), loaded(REV_A), after=ready_session().obj),
        "Progressing",
        "PolicyApplied",
    ),
    "ready, static change rejected": (
        lambda: Pass(desired(REV_B), loaded(REV_A, change=STATIC), after=ready_session().obj),
        "Degraded",
        "PolicyApplied",
    ),
    "ready, the gateway failed to load the revision": (
        lambda: Pass(
            desired(REV_B),
            loaded(
                REV_A,
                latest=gw.PolicyRevision(
                    2, HEX_B, gw.PolicyLoadState.FAILED, load_error="proxy refused rule files"
                ),
            ),
            after=ready_session().obj,
        ),
        "Degraded",
        "PolicyApplied",
    ),
    "ready, the gateway refused the revision": (
        lambda: Pass(
            desired(REV_B),
            loaded(REV_A, refusal="network_policies[0]: unknown protocol"),
            after=ready_session().obj,
        ),
        "Degraded",
        "PolicyApplied",
    ),
    "ready, its policy became invalid": (
        lambda: Pass(problem("PolicyInvalid"), loaded(REV_A), after=ready_session().obj),
        "Degraded",
        "PolicyApplied",
    ),
    "ready, the egress guard refuses its new policy": (
        lambda: Pass(problem("EgressGuarded"), loaded(REV_A), after=ready_session().obj),
        "Degraded",
        "PolicyApplied",
    ),
    # Suspended.
    "suspended, stopping": (
        lambda: Pass(desired(), loaded(sandbox=sandbox(P.STOPPING)), suspend=True),
        "Suspended",
        "Ready",
    ),
    "suspended, stopped": (
        lambda: Pass(desired(), loaded(sandbox=sandbox(P.STOPPED)), suspend=True),
        "Suspended",
        "Ready",
    ),
    "suspend asked while booting": (
        lambda: Pass(desired(), loaded(sandbox=sandbox(P.PROVISIONING)), suspend=True),
        "Progressing",
        "Ready",
    ),
    # Failed.
    "failed: sandbox in ERROR": (
        lambda: Pass(
            desired(),
            loaded(
                sandbox=sandbox(
                    P.ERROR, conditions=(gw.Condition("Ready", "False", "Crash", "exit 139"),)
                )
            ),
        ),
        "Degraded",
        "Ready",
    ),
    "failed: sandbox COMPLETED": (
        lambda: Pass(desired(), loaded(sandbox=sandbox(P.COMPLETED))),
        "Degraded",
        "Ready",
    ),
    "failed: create refused": (
        lambda: Pass(
            desired(),
            Observed(
                failure=(
                    "GatewayFailedPrecondition",
                    "provider 'gitlab' not found in workspace 'default'",
                )
            ),
        ),
        "Degraded",
        "Ready",
    ),
    "failed: name conflict": (
        lambda: Pass(
            desired(), loaded(sandbox=sandbox(labels={"helmdeck.dev/session-uid": "other"}))
        ),
        "Degraded",
        "Ready",
    ),
    # The gateway could not be asked: Ready Unknown, whatever the phase.
    "unreachable on a new session": (
        lambda: Pass(desired(), Observed(error="GetSandbox: UNAVAILABLE: connection refused")),
        "Degraded",
        "Ready",
    ),
    "unreachable on a ready session": (
        lambda: Pass(
            desired(),
            Observed(
                error="GetSandbox: PERMISSION_DENIED: token lacks sandbox:read",
                error_reason="GatewayPermissionDenied",
            ),
            after=ready_session().obj,
        ),
        "Degraded",
        "Ready",
    ),
    "unreachable on a suspended session": (
        lambda: Pass(
            desired(),
            Observed(error="GetSandbox: DEADLINE_EXCEEDED", error_reason="GatewayDeadlineExceeded"),
            after=Pass(desired(), loaded(sandbox=sandbox(P.STOPPED)), suspend=True).obj,
            suspend=True,
        ),
        "Degraded",
        "Ready",
    ),
    # Ready, its ports: a change on its way, a refusal by the gateway.
    "ready, ports being exposed": (
        lambda: Pass(
            desired(REV_A),
            loaded(exposed="an older set"),
            after={"status": {"phase": "Ready", "readyAt": "2025-06-01T11:00:00Z"}},
        ),
        "Progressing",
        "EndpointsExposed",
    ),
    "ready, a port refused": (
        lambda: Pass(
            desired(REV_A),
            loaded(
                exposed="an older set",
                exposure_failure=(Reason.GATEWAY_INVALID_ARGUMENT, "port 3000 not allowed"),
            ),
            after={"status": {"phase": "Ready", "readyAt": "2025-06-01T11:00:00Z"}},
        ),
        "Degraded",
        "EndpointsExposed",
    ),
    # Ready, its providers: a change on its way, a refusal by the gateway.
    "ready, providers being attached": (
        lambda: Pass(
            desired(REV_A),
            loaded(),
            after={"status": {"phase": "Ready", "readyAt": "2025-06-01T11:00:00Z"}},
            providers=("github",),
        ),
        "Progressing",
        "ProvidersAttached",
    ),
    "ready, a provider refused": (
        lambda: Pass(
            desired(REV_A),
            loaded(provider_failure=(Reason.GATEWAY_FAILED_PRECONDITION, "provider 'x' not found")),
            after={"status": {"phase": "Ready", "readyAt": "2025-06-01T11:00:00Z"}},
            providers=("x",),
        ),
        "Degraded",
        "ProvidersAttached",
    ),
    # Expired.
    "expired, retained": (
        lambda: Pass(desired(), Observed(), expires_at=EXPIRED_AT, on_expiry="Retain"),
        "Healthy",
        "Ready",
    ),
    "expired, retained, sandbox still being deleted": (
        lambda: Pass(desired(), loaded(), expires_at=EXPIRED_AT, on_expiry="Retain"),
        "Healthy",
        "Ready",
    ),
    "expired, to be deleted": (
        lambda: Pass(desired(), loaded(), expires_at=EXPIRED_AT, on_expiry="Delete"),
        "Progressing",
        "Ready",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_every_phase_and_condition_maps_to_a_health_with_the_objects_own_message(
    case: str,
) -> None:
    build, expected, source = CASES[case]
    session = build()

    health = assess(session.obj)

    assert health.status == expected, (session.plan.phase, session.obj["status"]["conditions"])
    assert health.message == session.condition(source)["message"]
    assert health.message


def test_the_cases_cover_every_phase_the_planner_writes() -> None:
    phases = {CASES[name][0]().plan.phase for name in CASES}
    assert phases == set(Phase) - {Phase.TERMINATING}  # written by the finalizer, below


def test_the_cases_cover_every_policy_applied_reason_of_a_ready_session() -> None:
    reasons = {
        session.condition("PolicyApplied")["reason"]
        for session in (CASES[name][0]() for name in CASES)
        if session.plan.phase is Phase.READY
    }
    assert reasons == {
        "PolicyLoaded",
        "PolicyPending",
        "RecreatePending",
        "Recreating",
        "PolicyNotFound",
        "StaticChangeRejected",
        "PolicyLoadFailed",
        "PolicyRejected",
        "PolicyInvalid",
        "EgressGuarded",
    }


# -- what the planner does not write ---------------------------------------------------


def test_no_status_yet_is_progressing() -> None:
    obj = copy.deepcopy(ready_session().obj)
    del obj["status"]

    health = assess(obj)

    assert health == type(health)("Progressing", "waiting for the operator to observe generation 1")


def test_a_status_without_a_phase_is_progressing() -> None:
    obj = copy.deepcopy(ready_session().obj)
    obj["status"] = {"conditions": []}

    assert assess(obj).status == "Progressing"


@pytest.mark.parametrize(
    "build", [ready_session, CASES["failed: sandbox COMPLETED"][0], CASES["suspended, stopped"][0]]
)
def test_a_status_older_than_the_spec_is_progressing_whatever_it_says(
    build: Callable[[], Pass],
) -> None:
    obj = copy.deepcopy(build().obj)
    obj["metadata"]["generation"] = 4
    obj["status"]["observedGeneration"] = 3

    health = assess(obj)

    assert (health.status, health.message) == (
        "Progressing",
        "waiting for the operator to observe generation 4",
    )


def test_a_status_without_observed_generation_is_stale() -> None:
    obj = copy.deepcopy(ready_session().obj)
    del obj["status"]["observedGeneration"]

    assert assess(obj).message == "waiting for the operator to observe generation 1"


def test_terminating_is_progressing_and_names_the_sandbox() -> None:
    obj = copy.deepcopy(ready_session().obj)
    obj["metadata"]["deletionTimestamp"] = "2025-06-01T12:00:00Z"
    obj["metadata"]["generation"] = 2  # the apiserver bumps it when deletion starts
    obj["status"]["phase"] = "Terminating"

    health = assess(obj)

    assert (health.status, health.message) == (
        "Progressing",
        f"being deleted; waiting for sandbox {SANDBOX} to be removed",
    )


def test_deletion_requested_before_the_finalizer_ran_is_progressing() -> None:
    obj = copy.deepcopy(CASES["failed: sandbox COMPLETED"][0]().obj)
    obj["metadata"]["deletionTimestamp"] = "2025-06-01T12:00:00Z"

    assert assess(obj).status == "Progressing"


def test_a_phase_this_check_does_not_know_is_unknown() -> None:
    obj = copy.deepcopy(ready_session().obj)
    obj["status"]["phase"] = "Hibernating"

    health = assess(obj)

    assert (health.status, health.message) == ("Unknown", "unknown phase Hibernating")


def test_a_condition_without_a_message_falls_back_to_its_reason() -> None:
    obj = copy.deepcopy(CASES["failed: sandbox COMPLETED"][0]().obj)
    for cond in obj["status"]["conditions"]:
        cond["message"] = ""

    assert assess(obj) == type(assess(obj))("Degraded", "SandboxCompleted")


def test_expiry_without_on_expiry_in_the_spec_means_the_default_delete() -> None:
    obj = copy.deepcopy(CASES["expired, retained"][0]().obj)
    del obj["spec"]["lifetime"]["onExpiry"]

    assert assess(obj).status == "Progressing"
