"""The SidecarPolicy health check on every Valid / Applied combination.

The statuses are the operator's own (`report_policy`, the pure function the policy daemon
writes), computed from a spec and the status.policy of its bound sessions. Hand-built
objects cover what the operator never writes itself: no status yet and a stale one.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from helmdeck_operator.core.policy_status import report_policy, tally
from helmdeck_operator.desired import resolve
from helmdeck_operator.policy import revision, translate
from helmdeck_operator.policy.guard import EgressGuard
from tests.support import builders, policies
from tests.support.argo_lua import Health, assess
from tests.support.builders import NOW

OLD = "sha256:" + "0" * 64
SPEC = policies.pypi_spec()
REV = revision.revision(translate.to_sandbox_policy(SPEC))
INVALID = copy.deepcopy(SPEC)
INVALID["network"][0]["endpoints"][0]["port"] = 70000  # translation refuses it

LOADED = {"name": "p", "revision": REV, "desiredRevision": REV, "state": "Loaded"}
PENDING = {"name": "p", "revision": OLD, "desiredRevision": REV, "state": "Pending"}
REFUSED = {"name": "p", "revision": OLD, "desiredRevision": REV, "state": "Failed"}


def policy(
    spec: dict[str, Any], bound: list[dict[str, Any]], generation: int = 1
) -> dict[str, Any]:
    obj = builders.policy("p", **spec)
    obj["metadata"].update(namespace="team", generation=generation)
    obj["status"] = report_policy(
        resolve("p", spec, EgressGuard()), generation, tally(bound), {}, NOW
    ).status
    return obj


def message(obj: dict[str, Any], type_: str) -> str:
    return str(next(c for c in obj["status"]["conditions"] if c["type"] == type_)["message"])


@pytest.mark.parametrize(
    ("spec", "bound", "expected", "source"),
    [
        pytest.param(SPEC, [], "Healthy", "Applied", id="no sessions"),
        pytest.param(SPEC, [LOADED, LOADED], "Healthy", "Applied", id="loaded everywhere"),
        pytest.param(SPEC, [LOADED, PENDING], "Progressing", "Applied", id="rolling out"),
        pytest.param(SPEC, [LOADED, PENDING, REFUSED], "Degraded", "Applied", id="refused"),
        pytest.param(INVALID, [PENDING], "Degraded", "Valid", id="invalid spec"),
        pytest.param(INVALID, [], "Degraded", "Valid", id="invalid spec, no sessions"),
    ],
)
def test_every_valid_and_applied_combination(
    spec: dict[str, Any], bound: list[dict[str, Any]], expected: str, source: str
) -> None:
    obj = policy(spec, bound)

    health = assess(obj)

    assert health == Health(expected, message(obj, source))


def test_the_cases_cover_every_applied_reason() -> None:
    reasons = {
        c["reason"]
        for spec, bound in [
            (SPEC, []),
            (SPEC, [LOADED]),
            (SPEC, [PENDING]),
            (SPEC, [REFUSED]),
            (INVALID, []),
        ]
        for c in policy(spec, bound)["status"]["conditions"]
        if c["type"] == "Applied"
    }
    assert reasons == {"NoSessions", "Loaded", "Progressing", "SessionsRefused", "Invalid"}


def test_an_applied_invalid_without_a_valid_condition_is_still_degraded() -> None:
    obj = policy(INVALID, [])
    obj["status"]["conditions"] = [c for c in obj["status"]["conditions"] if c["type"] != "Valid"]

    assert assess(obj) == Health("Degraded", "the spec does not translate")


def test_no_status_yet_is_progressing() -> None:
    obj = policy(SPEC, [])
    del obj["status"]

    assert assess(obj) == Health("Progressing", "waiting for the operator to observe generation 1")


def test_a_status_older_than_the_spec_is_progressing_even_if_it_was_degraded() -> None:
    obj = policy(INVALID, [], generation=2)
    obj["metadata"]["generation"] = 3

    assert assess(obj) == Health("Progressing", "waiting for the operator to observe generation 3")


def test_a_status_without_applied_is_progressing() -> None:
    obj = policy(SPEC, [])
    obj["status"]["conditions"] = [c for c in obj["status"]["conditions"] if c["type"] == "Valid"]

    assert assess(obj).status == "Progressing"


def test_a_policy_being_deleted_is_progressing() -> None:
    obj = policy(SPEC, [REFUSED])
    obj["metadata"]["deletionTimestamp"] = "2025-06-01T12:00:00Z"

    assert assess(obj) == Health("Progressing", "being deleted")
