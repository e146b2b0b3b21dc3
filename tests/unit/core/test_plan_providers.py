"""Providers on a live sandbox: `provider_changes`, and how `plan_session` attaches and
detaches them (SyncProviders, ProvidersAttached) instead of recreating the sandbox."""

from __future__ import annotations

from typing import Any

from helmdeck_operator.core.plan import Action, Observed, plan_session
from helmdeck_operator.core.providers import ProviderChanges, provider_changes
from helmdeck_operator.vocabulary import Phase, Reason
from tests.support.builders import NOW, REV_A, REV_B, desired, facts, ready, sandbox, status_after
from tests.support.plans import condition, passes, reasons

#: A session Ready on REV_A, as its status says.
RUNNING: dict[str, Any] = {
    "phase": "Ready",
    "readyAt": "2025-06-01T11:50:00Z",
    "policy": {"name": "web", "revision": REV_A, "state": "Loaded"},
    "conditions": [
        {"type": "Ready", "status": "True", "reason": "SandboxReady", "observedGeneration": 1}
    ],
}
UNKNOWN = (Reason.GATEWAY_FAILED_PRECONDITION, "provider 'bogus' not found")


def attached(*providers: str, **overrides: Any) -> Observed:
    """A READY sandbox on REV_A, its ports exposed, with `providers` attached."""
    return ready(sandbox=sandbox(providers=providers), **overrides)


# -- provider_changes ------------------------------------------------------------------------


def test_changes_attach_the_missing_and_detach_the_extra_sorted() -> None:
    changes = provider_changes(["npm", "github", "anthropic"], ["openai", "github", "gitlab"])

    assert changes == ProviderChanges(attach=("anthropic", "npm"), detach=("gitlab", "openai"))
    assert changes.describe() == "detaching gitlab, openai; attaching anthropic, npm"


def test_no_changes_when_the_same_providers_are_attached_in_another_order() -> None:
    changes = provider_changes(["github", "gitlab"], ["gitlab", "github"])

    assert changes == ProviderChanges(attach=(), detach=())
    assert changes.describe() == ""


# -- the plan --------------------------------------------------------------------------------


def test_a_providers_change_on_a_running_session_is_synchronised_while_it_stays_ready() -> None:
    plan = plan_session(facts(status=RUNNING, providers=("github",)), desired(), attached(), NOW)

    assert plan.action is Action.SYNC_PROVIDERS
    assert plan.requeue_after == 0.0
    assert plan.phase is Phase.READY
    assert condition(plan, "Ready") == ("True", "SandboxReady")
    assert condition(plan, "ProvidersAttached") == ("Unknown", "AttachingProviders")
    assert _message(plan, "ProvidersAttached") == "attaching github"
    assert plan.events == ()  # nothing recreated, nothing announced


def test_a_provider_attached_behind_the_operators_back_is_detached() -> None:
    plan = plan_session(facts(status=RUNNING), desired(), attached("gitlab"), NOW)

    assert plan.action is Action.SYNC_PROVIDERS
    assert _message(plan, "ProvidersAttached") == "detaching gitlab"


def test_attached_providers_are_reported_whatever_their_order() -> None:
    session = facts(status=RUNNING, providers=("github", "gitlab"))

    plan = plan_session(session, desired(), attached("gitlab", "github"), NOW)

    assert plan.action is Action.NONE
    assert condition(plan, "ProvidersAttached") == ("True", "ProvidersAttached")
    assert _message(plan, "ProvidersAttached") == "github, gitlab attached"


def test_a_session_without_providers_says_so() -> None:
    plan = plan_session(facts(status=RUNNING), desired(), attached(), NOW)

    assert _message(plan, "ProvidersAttached") == "no providers to attach"


def test_a_providers_change_never_recreates_the_sandbox() -> None:
    """Providers are no part of the shape: the sandbox's shape annotation still matches."""
    plan = plan_session(facts(providers=("github", "gitlab")), desired(), attached("npm"), NOW)

    assert plan.action is Action.SYNC_PROVIDERS
    assert "Recreating" not in reasons(plan)


def test_providers_are_attached_before_the_first_ready() -> None:
    """A claimed pool sandbox booted with the template's providers, say."""
    plan = plan_session(facts(providers=("github",)), desired(), attached(), NOW)

    assert plan.action is Action.SYNC_PROVIDERS
    assert plan.phase is Phase.PROVISIONING
    assert condition(plan, "Ready") == ("False", "AttachingProviders")


def test_a_policy_push_and_the_ports_come_before_the_providers() -> None:
    session = facts(status=RUNNING, providers=("github",))

    push = plan_session(session, desired(REV_B), attached(), NOW)
    ports = plan_session(session, desired(), attached(exposed="other-digest"), NOW)

    assert push.action is Action.PUSH_POLICY
    assert ports.action is Action.SYNC_PORTS
    assert condition(ports, "ProvidersAttached") == ("Unknown", "AttachingProviders")


def test_a_refused_provider_on_a_running_session_warns_once_and_is_not_retried() -> None:
    session = facts(status=RUNNING, providers=("bogus",))

    [first, again] = passes(session, desired(), [attached(provider_failure=UNKNOWN), attached()])

    assert first.phase is Phase.READY  # it keeps serving with what it had
    assert condition(first, "Ready") == ("True", "SandboxReady")
    assert condition(first, "ProvidersAttached") == ("False", "GatewayFailedPrecondition")
    assert _message(first, "ProvidersAttached") == "provider 'bogus' not found"
    assert reasons(first) == ["ProviderFailed"]
    assert again.action is Action.NONE  # the same generation is not retried
    assert condition(again, "ProvidersAttached") == ("False", "GatewayFailedPrecondition")
    assert reasons(again) == []


def test_a_refusal_of_an_older_generation_is_retried() -> None:
    session = facts(status=RUNNING, providers=("bogus",))
    [first] = passes(session, desired(), [attached(provider_failure=UNKNOWN)])
    status = {**RUNNING, **status_after(first, 1)}

    plan = plan_session(facts(status=status, generation=2), desired(), attached("bogus"), NOW)

    assert plan.action is Action.SYNC_PROVIDERS
    assert _message(plan, "ProvidersAttached") == "detaching bogus"


def test_a_provider_refused_before_the_first_ready_fails_the_session() -> None:
    plan = plan_session(
        facts(providers=("bogus",)), desired(), attached(provider_failure=UNKNOWN), NOW
    )

    assert plan.phase is Phase.FAILED
    assert condition(plan, "Ready") == ("False", "GatewayFailedPrecondition")


def _message(plan: Any, type_: str) -> str:
    [found] = [c for c in plan.conditions if c.type == type_]
    return str(found.message)
