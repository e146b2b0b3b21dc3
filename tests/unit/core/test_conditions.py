"""`merge_conditions` and `format_time`: conditions as the Kubernetes API conventions want.

`lastTransitionTime` moves only when a condition's status changes, so writing the same
verdict twice is a no-op (and the shell can skip the status write).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from helmdeck_operator.core.conditions import Condition, Status, format_time, merge_conditions
from tests.support.builders import NOW, later

READY = Condition("Ready", Status.TRUE, "SandboxReady", "sandbox is ready")
NOT_READY = Condition("Ready", Status.FALSE, "Provisioning", "sandbox is provisioning")
POLICY = Condition("PolicyApplied", Status.TRUE, "PolicyLoaded", "loaded")


def test_a_new_condition_gets_every_field() -> None:
    (merged,) = merge_conditions([], [READY], generation=3, now=NOW)

    assert merged == {
        "type": "Ready",
        "status": "True",
        "reason": "SandboxReady",
        "message": "sandbox is ready",
        "observedGeneration": 3,
        "lastTransitionTime": "2025-06-01T12:00:00Z",
    }


def test_an_unchanged_status_keeps_its_transition_time() -> None:
    first = merge_conditions([], [READY], generation=1, now=NOW)

    (again,) = merge_conditions(first, [READY], generation=1, now=later(300))

    assert again == first[0]


def test_a_new_reason_or_message_with_the_same_status_keeps_the_transition_time() -> None:
    first = merge_conditions([], [NOT_READY], generation=1, now=NOW)
    creating = Condition("Ready", Status.FALSE, "Creating", "creating the sandbox")

    (again,) = merge_conditions(first, [creating], generation=2, now=later(300))

    assert again["lastTransitionTime"] == "2025-06-01T12:00:00Z"
    assert (again["reason"], again["message"]) == ("Creating", "creating the sandbox")
    assert again["observedGeneration"] == 2


def test_a_changed_status_moves_the_transition_time() -> None:
    first = merge_conditions([], [NOT_READY], generation=1, now=NOW)

    (again,) = merge_conditions(first, [READY], generation=1, now=later(300))

    assert again["lastTransitionTime"] == "2025-06-01T12:05:00Z"
    assert again["status"] == "True"


def test_conditions_not_computed_now_are_kept_after_the_computed_ones() -> None:
    foreign = {
        "type": "ArgoHealthy",
        "status": "True",
        "reason": "X",
        "message": "",
        "lastTransitionTime": "2020-01-01T00:00:00Z",
    }
    existing = [foreign, *merge_conditions([], [NOT_READY], generation=1, now=NOW)]

    merged = merge_conditions(existing, [READY, POLICY], generation=2, now=later(1))

    assert [c["type"] for c in merged] == ["Ready", "PolicyApplied", "ArgoHealthy"]
    assert merged[2] == foreign


def test_merging_does_not_modify_the_existing_list() -> None:
    existing = merge_conditions([], [NOT_READY], generation=1, now=NOW)
    snapshot = [dict(c) for c in existing]

    merge_conditions(existing, [READY], generation=2, now=later(1))

    assert existing == snapshot


def test_every_merged_condition_carries_the_generation() -> None:
    existing = merge_conditions([], [READY, POLICY], generation=1, now=NOW)

    merged = merge_conditions(existing, [READY, POLICY], generation=7, now=NOW)

    assert [c["observedGeneration"] for c in merged] == [7, 7]


def test_format_time_writes_utc_to_the_second() -> None:
    moment = datetime(2025, 6, 1, 14, 30, 15, 999_999, tzinfo=timezone(timedelta(hours=2)))

    assert format_time(moment) == "2025-06-01T12:30:15Z"
    assert format_time(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2025-01-02T03:04:05Z"
