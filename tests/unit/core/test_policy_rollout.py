"""`next_rollout_step`: what a READY sandbox on another revision should do next.

The hot-reload semantics in one table: a revision the gateway already holds is waited for
or reported failed; a live change is pushed once; a refusal is announced once and never
pushed again; a static change is refused or rolled out by recreation within the bound.
"""

from __future__ import annotations

from typing import Any

import pytest

from helmdeck_operator.core.conditions import Status
from helmdeck_operator.core.policy_rollout import RolloutStep, next_rollout_step
from helmdeck_operator.gateway import models as gw
from helmdeck_operator.policy.change import Blocker, ChangeClass
from helmdeck_operator.vocabulary import PolicyState
from tests.support.builders import HEX_B, REV_A, REV_B

L = gw.PolicyLoadState
LANDLOCK = Blocker("landlock.compatibility", "changed from 'best_effort' to 'hard_requirement'")
RO_PATH = Blocker("filesystem.read_only", "path '/usr' removed")
STATIC = ChangeClass((LANDLOCK, RO_PATH))
LIVE = ChangeClass()
REFUSED_B = {"desiredRevision": REV_B, "state": "Failed", "message": "the gateway refused it"}


def step(**overrides: Any) -> RolloutStep:
    """Defaults: desired REV_B, Reject, nothing stored or classified, a slot free."""
    values: dict[str, Any] = {
        "desired_revision": REV_B,
        "static_changes": "Reject",
        "latest": None,
        "change": None,
        "may_recreate": True,
        "reported": {},
    }
    values.update(overrides)
    return next_rollout_step(**values)


def flags(result: RolloutStep) -> set[str]:
    """Which of push / recreate / poll / awaits_slot / warn the step asks for."""
    names = ("push", "recreate", "poll", "awaits_slot", "warn")
    return {name for name in names if getattr(result, name)}


def revision_b(status: gw.PolicyLoadState, load_error: str = "") -> gw.PolicyRevision:
    return gw.PolicyRevision(version=3, hash=HEX_B, status=status, load_error=load_error)


def test_a_failed_load_of_the_desired_revision_is_reported_with_the_gateway_error() -> None:
    result = step(latest=revision_b(L.FAILED, "unknown field 'foo'"))

    assert (result.status, result.reason, result.state) == (
        Status.FALSE,
        "PolicyLoadFailed",
        PolicyState.FAILED,
    )
    assert result.message == f"the gateway failed to load {REV_B}: unknown field 'foo'"
    assert flags(result) == {"warn"}


def test_a_failed_load_warns_only_the_first_time() -> None:
    assert not step(latest=revision_b(L.FAILED), reported=REFUSED_B).warn


def test_a_failed_load_of_another_revision_warns_again() -> None:
    reported = dict(REFUSED_B, desiredRevision=REV_A)

    assert step(latest=revision_b(L.FAILED), reported=reported).warn


@pytest.mark.parametrize("status", [L.PENDING, L.UNSPECIFIED, L.LOADED])
def test_a_stored_desired_revision_not_yet_active_is_polled(status: gw.PolicyLoadState) -> None:
    result = step(latest=revision_b(status))

    assert (result.reason, result.state) == ("PolicyPending", PolicyState.PENDING)
    assert flags(result) == {"poll"}
    assert "gateway version 3" in result.message


def test_a_superseded_desired_revision_is_pushed_again() -> None:
    result = step(latest=revision_b(L.SUPERSEDED), change=LIVE)

    assert result.push
    assert result.reason == "PolicyPending"


def test_a_stored_revision_with_another_hash_does_not_count() -> None:
    other = gw.PolicyRevision(version=2, hash="c" * 64, status=L.PENDING)

    assert step(latest=other).push


@pytest.mark.parametrize("change", [None, LIVE], ids=["unclassified", "live"])
def test_a_live_or_unclassified_change_is_pushed(change: ChangeClass | None) -> None:
    result = step(change=change)

    assert (result.status, result.reason, result.state) == (
        Status.FALSE,
        "PolicyPending",
        PolicyState.PENDING,
    )
    assert result.message == f"pushing {REV_B}"
    assert flags(result) == {"push"}


def test_a_refusal_is_reported_with_the_gateway_message_and_a_warning() -> None:
    result = step(change=LIVE, refusal="network_policies[a]: bad host")

    assert (result.reason, result.state) == ("PolicyRejected", PolicyState.FAILED)
    assert result.message == f"the gateway refused {REV_B}: network_policies[a]: bad host"
    assert flags(result) == {"warn"}


def test_a_repeated_refusal_does_not_warn_again() -> None:
    assert not step(change=LIVE, refusal="bad host", reported=REFUSED_B).warn


def test_a_refused_revision_is_not_pushed_on_later_passes() -> None:
    result = step(change=LIVE, reported=REFUSED_B)

    assert flags(result) == set()
    assert (result.reason, result.state) == ("PolicyRejected", PolicyState.FAILED)
    assert result.message == "the gateway refused it"


def test_a_refusal_of_an_older_revision_does_not_stop_a_new_push() -> None:
    assert step(change=LIVE, reported=dict(REFUSED_B, desiredRevision=REV_A)).push


def test_a_static_change_under_reject_is_refused_naming_every_blocker() -> None:
    result = step(change=STATIC)

    assert (result.status, result.reason, result.state) == (
        Status.FALSE,
        "StaticChangeRejected",
        PolicyState.FAILED,
    )
    assert str(LANDLOCK) in result.message
    assert str(RO_PATH) in result.message
    assert "staticChanges is Reject" in result.message
    assert flags(result) == {"warn"}


def test_a_static_change_under_reject_warns_once() -> None:
    assert not step(change=STATIC, reported=REFUSED_B).warn


def test_a_static_change_under_recreate_recreates_the_sandbox() -> None:
    result = step(change=STATIC, static_changes="Recreate")

    assert flags(result) == {"recreate"}
    assert (result.reason, result.state) == ("Recreating", PolicyState.PENDING)
    assert str(LANDLOCK) in result.message


def test_a_static_change_under_recreate_waits_for_a_slot() -> None:
    result = step(change=STATIC, static_changes="Recreate", may_recreate=False)

    assert (result.reason, result.state) == ("RecreatePending", PolicyState.PENDING)
    assert flags(result) == {"awaits_slot"}


def test_switching_a_rejected_policy_to_recreate_rolls_it_out() -> None:
    """staticChanges is not part of the revision, so the Failed report is for the same one."""
    assert step(change=STATIC, static_changes="Recreate", reported=REFUSED_B).recreate


def test_the_gateway_state_of_the_desired_revision_wins_over_a_refusal() -> None:
    result = step(latest=revision_b(L.PENDING), refusal="bad host", change=STATIC)

    assert result.reason == "PolicyPending"
