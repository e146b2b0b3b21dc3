"""The SessionPool health check on every branch of its mapping (docs/argocd.md).

Pools are built by hand with the conditions the operator writes on a pool (Ready with
PoolFilled, PoolFilling, PolicyNotFound, PolicyInvalid, GatewayNotConfigured or a Gateway*
code), the status a current pass leaves (observedGeneration equal to the generation), and
the states the operator never writes itself: no status yet, a stale one, a deletion.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from helmdeck_dev.objects import pool
from tests.support.argo_lua import Health, assess
from tests.support.repo import CRD_DIR

NOW = "2025-06-01T12:00:00Z"


def ready(status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": 1,
        "lastTransitionTime": NOW,
    }


def warm(
    *conditions: dict[str, Any],
    desired: int = 3,
    generation: int = 1,
    observed: int | None = 1,
    **status: Any,
) -> dict[str, Any]:
    """A browser pool of `desired` replicas at `generation`, its status written at
    `observed`; `status` overrides the counts of a filled pool."""
    obj = pool("warm", replicas=desired, maxProvisioning=10)
    obj["metadata"].update(namespace="team", generation=generation, uid="uid-1")
    body: dict[str, Any] = {
        "replicas": 3,
        "readyReplicas": 3,
        "provisioning": 0,
        "claimed": 0,
        "selector": "helmdeck.dev/pool-uid=uid-1",
        "conditions": list(conditions),
        **status,
    }
    if observed is not None:
        body["observedGeneration"] = observed
    obj["status"] = body
    return obj


FILLED = ready("True", "PoolFilled", "3 of 3 idle sandboxes ready")
FILLING = ready("False", "PoolFilling", "1 of 3 idle sandboxes ready, 2 booting")


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(warm(FILLED), Health("Healthy", FILLED["message"]), id="filled"),
        pytest.param(
            warm(FILLING, readyReplicas=1, provisioning=2),
            Health("Progressing", FILLING["message"]),
            id="filling",
        ),
        pytest.param(
            warm(ready("False", "PolicyNotFound", "SidecarPolicy team/base not found")),
            Health("Degraded", "SidecarPolicy team/base not found"),
            id="baseline not found",
        ),
        pytest.param(
            warm(ready("False", "PolicyInvalid", "spec.network[0]: port 70000 out of range")),
            Health("Degraded", "spec.network[0]: port 70000 out of range"),
            id="baseline invalid",
        ),
        pytest.param(
            warm(ready("False", "GatewayNotConfigured", "gateway 'gpu' is not configured")),
            Health("Degraded", "gateway 'gpu' is not configured"),
            id="gateway not configured",
        ),
        pytest.param(
            warm(ready("False", "GatewayUnavailable", "CreateSandbox: UNAVAILABLE")),
            Health("Progressing", "CreateSandbox: UNAVAILABLE"),
            id="gateway unavailable",
        ),
        pytest.param(
            warm(ready("False", "GatewayResourceExhausted", "")),
            Health("Progressing", "GatewayResourceExhausted"),
            id="gateway code without a message",
        ),
        pytest.param(
            warm(ready("Unknown", "GatewayDeadlineExceeded", "ListSandboxes timed out")),
            Health("Progressing", "ListSandboxes timed out"),
            id="ready unknown",
        ),
    ],
)
def test_a_current_status_follows_its_ready_condition(
    obj: dict[str, Any], expected: Health
) -> None:
    assert assess(obj) == expected


def test_every_reason_that_needs_an_edit_is_degraded_and_only_those() -> None:
    degraded = {
        reason
        for reason in (
            "PoolFilled",
            "PoolFilling",
            "PolicyNotFound",
            "PolicyInvalid",
            "EgressGuarded",
            "GatewayNotConfigured",
            "GatewayUnavailable",
            "GatewayPermissionDenied",
        )
        if assess(warm(ready("False", reason, "m"))).status == "Degraded"
    }
    assert degraded == {
        "PolicyNotFound",
        "PolicyInvalid",
        "EgressGuarded",
        "GatewayNotConfigured",
    }


def test_no_status_yet_is_progressing() -> None:
    obj = warm(FILLED)
    del obj["status"]

    assert assess(obj) == Health("Progressing", "waiting for the operator to observe generation 1")


def test_a_status_without_observed_generation_is_progressing() -> None:
    assert assess(warm(FILLED, observed=None)) == Health(
        "Progressing", "waiting for the operator to observe generation 1"
    )


def test_a_status_older_than_the_spec_is_progressing_even_if_it_was_healthy() -> None:
    """A scale (kubectl scale, an HPA) bumps the generation: Progressing until observed."""
    assert assess(warm(FILLED, generation=2)) == Health(
        "Progressing", "waiting for the operator to observe generation 2"
    )


def test_a_status_older_than_the_spec_is_progressing_even_if_it_was_degraded() -> None:
    stuck = ready("False", "PolicyNotFound", "SidecarPolicy team/base not found")
    assert assess(warm(stuck, generation=3, observed=2)).status == "Progressing"


def test_a_current_status_without_ready_is_progressing() -> None:
    assert assess(warm()) == Health(
        "Progressing", "waiting for the operator to observe generation 1"
    )


def test_scaled_to_zero_and_current_is_healthy() -> None:
    obj = warm(desired=0, replicas=0, readyReplicas=0)

    assert assess(obj) == Health("Healthy", "scaled to zero: no idle sandboxes kept")


def test_scaled_to_zero_is_healthy_whatever_ready_says() -> None:
    """Nothing to boot: a missing baseline or gateway keeps no idle sandbox from existing."""
    for condition in (
        ready("True", "PoolFilled", "0 of 0 idle sandboxes ready"),
        ready("False", "PolicyNotFound", "SidecarPolicy team/base not found"),
    ):
        obj = warm(condition, desired=0, replicas=0, readyReplicas=0)
        assert assess(obj) == Health("Healthy", condition["message"])


def test_scaled_to_zero_but_not_yet_observed_is_progressing() -> None:
    obj = warm(FILLED, desired=0, generation=2)

    assert assess(obj) == Health("Progressing", "waiting for the operator to observe generation 2")


def test_a_pool_being_deleted_is_progressing() -> None:
    obj = warm(FILLED)
    obj["metadata"]["deletionTimestamp"] = NOW

    assert assess(obj) == Health(
        "Progressing", "being deleted; waiting for its idle sandboxes to be removed"
    )


def test_the_objects_here_fit_the_crd() -> None:
    """The hand-built statuses use only fields the CRD has (the check reads no others)."""
    crd = yaml.safe_load((CRD_DIR / "sessionpools.helmdeck.dev.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    obj = warm(FILLED)
    assert set(obj["status"]) <= set(schema["status"]["properties"])
    assert set(obj["spec"]) <= set(schema["spec"]["properties"])
    condition_fields = schema["status"]["properties"]["conditions"]["items"]["properties"]
    assert set(FILLED) <= set(condition_fields)
