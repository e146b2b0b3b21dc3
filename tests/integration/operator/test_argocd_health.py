"""The Argo CD health checks (argocd/health/*.lua) on objects the running operator wrote.

Sessions and policies are driven through their phases by the operator subprocess against
the emulator, fetched from the apiserver, and handed to the Lua exactly as Argo CD would
see them. Expired is the one phase not reached for real (the shortest ttl is 1m): that
object is a real session whose status is patched through the status subresource to what
the operator writes on expiry, and the object the apiserver returns is what is assessed.
Combinations that are slow or racy to reach here (a stale observedGeneration, each
PolicyApplied reason) are covered on the operator's own planner output in tests/argocd/.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from helmdeck_dev.emulator_process import EmulatorProcess
from helmdeck_dev.objects import condition, phase, policy, session
from helmdeck_operator.core.naming import sandbox_name
from tests.support import policies
from tests.support.argo_lua import assess

pytestmark = pytest.mark.usefixtures("operator")


BASE = policies.pypi_spec()
EXTRA_RULE = policies.files_rule()


def verdict(obj: dict[str, Any] | None) -> tuple[str, str]:
    assert obj is not None
    health = assess(obj)
    return health.status, health.message


def message(obj: dict[str, Any], type_: str) -> str:
    return str(condition(obj, type_)["message"])


def test_a_session_and_its_policy_through_their_phases(
    kube: Any, eventually: Any, gateway: EmulatorProcess
) -> None:
    # A slow boot keeps the session Provisioning (and its policy rolling out) long enough
    # to be seen.
    gateway.set_faults({"slow_boots": {"seconds": 3.0}})
    kube.apply(
        policy("p", **BASE),
        session(
            "s", "python", policyRef={"name": "p"}, lifetime={"ttl": "2h", "onExpiry": "Retain"}
        ),
    )

    provisioning = eventually(kube.in_phase("s", "Provisioning"), "Provisioning")
    assert verdict(provisioning) == ("Progressing", message(provisioning, "Ready"))
    rolling = eventually(
        kube.when("scp", "p", lambda o: condition(o, "Applied").get("reason") == "Progressing"),
        "policy waiting for its session",
    )
    assert verdict(rolling) == ("Progressing", message(rolling, "Applied"))
    assert "0 of 1 bound sessions" in message(rolling, "Applied")

    gateway.clear_faults()
    ready = eventually(kube.in_phase("s", "Ready"), "Ready")
    assert verdict(ready) == ("Healthy", message(ready, "Ready"))
    applied = eventually(
        kube.when("scp", "p", lambda o: condition(o, "Applied").get("status") == "True"),
        "policy applied",
    )
    assert verdict(applied) == (
        "Healthy",
        "all 1 bound sessions run " + applied["status"]["revision"],
    )

    kube.run("patch", "hds", "s", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    suspended = eventually(
        kube.when(
            "hds",
            "s",
            lambda o: phase(o) == "Suspended" and o["status"]["observedGeneration"] == 2,
        ),
        "Suspended",
    )
    assert verdict(suspended) == ("Suspended", message(suspended, "Ready"))

    # Expired, as the operator writes it on expiry (core.plan._expired), on this real object.
    expired = _patch_status(kube, suspended, _expired_status(suspended))
    assert phase(expired) == "Expired"
    assert verdict(expired) == ("Healthy", "lifetime ended at 2025-06-01T12:00:00Z")

    # Terminating: the gateway refuses the delete, so the finalizer writes the phase.
    gateway.set_faults(
        {"errors": {"DeleteSandbox": {"code": "PERMISSION_DENIED", "message": "no delete"}}}
    )
    kube.run("delete", "hds", "s", "--wait=false")
    terminating = eventually(kube.in_phase("s", "Terminating"), "Terminating")
    name = sandbox_name(terminating["metadata"]["uid"])
    assert verdict(terminating) == (
        "Progressing",
        f"being deleted; waiting for sandbox {name} to be removed",
    )
    gateway.clear_faults()
    eventually(lambda: kube.get("hds", "s") is None, "session deleted")


def test_failed_sessions_are_degraded_and_a_missing_policy_is_waited_for(
    kube: Any, eventually: Any, gateway: EmulatorProcess
) -> None:
    kube.apply(
        session("refused", "python", providers=["gitlab"]),
        session("crashy", "vision"),
        session("waiting", "node", policyRef={"name": "later"}),
    )

    refused = eventually(kube.in_phase("refused", "Failed"), "Failed")
    assert condition(refused, "Ready")["reason"] == "GatewayFailedPrecondition"
    assert verdict(refused) == ("Degraded", message(refused, "Ready"))
    assert "gitlab" in verdict(refused)[1]

    waiting = eventually(kube.in_phase("waiting", "Pending"), "Pending")
    assert condition(waiting, "Ready")["reason"] == "PolicyNotFound"
    assert verdict(waiting) == ("Progressing", message(waiting, "Ready"))

    ready = eventually(kube.in_phase("crashy", "Ready"), "Ready")
    gateway.error(
        "default", sandbox_name(ready["metadata"]["uid"]), "chromium exited with code 139"
    )
    crashed = eventually(kube.in_phase("crashy", "Failed"), "Failed")
    assert condition(crashed, "Ready")["reason"] == "SandboxError"
    assert verdict(crashed) == ("Degraded", message(crashed, "Ready"))
    assert "chromium exited with code 139" in verdict(crashed)[1]


def test_a_gateway_that_cannot_be_asked_degrades_a_ready_session_until_it_answers(
    kube: Any, eventually: Any, gateway: EmulatorProcess
) -> None:
    kube.apply(session("s", "browser"))
    eventually(kube.in_phase("s", "Ready"), "Ready")

    # The gateway's listing (how the operator keeps its view current) is refused.
    gateway.set_faults(
        {"errors": {"ListSandboxes": {"code": "PERMISSION_DENIED", "message": "token expired"}}}
    )
    unknown = eventually(
        kube.when("hds", "s", lambda o: condition(o, "Ready").get("status") == "Unknown"),
        "Ready Unknown",
    )
    assert phase(unknown) == "Ready"  # the phase is kept
    assert condition(unknown, "Ready")["reason"] == "GatewayPermissionDenied"
    assert verdict(unknown) == ("Degraded", message(unknown, "Ready"))
    # An auth refusal reaches the tenant as a fixed sentence, not the gateway's words.
    assert "token expired" not in verdict(unknown)[1]
    assert "refused the operator's identity" in verdict(unknown)[1]

    gateway.clear_faults()
    healthy = eventually(
        kube.when("hds", "s", lambda o: condition(o, "Ready").get("status") == "True"),
        "Ready again",
    )
    assert verdict(healthy)[0] == "Healthy"


def test_policies_the_sandbox_could_not_take_degrade_the_session_and_the_policy(
    kube: Any, eventually: Any, gateway: EmulatorProcess
) -> None:
    kube.apply(
        policy("hot", **BASE),
        policy("cold", **BASE),
        session("a", "python", policyRef={"name": "hot"}),
        session("b", "python", policyRef={"name": "cold"}),
    )
    for name in ("a", "b"):
        eventually(kube.in_phase(name, "Ready"), f"{name} Ready")

    # A live change the gateway fails to load.
    gateway.set_faults({"policy_load_failures": {"next": 1, "message": "proxy refused rule files"}})
    hot = copy.deepcopy(BASE)
    hot["network"].append(EXTRA_RULE)
    kube.apply(policy("hot", **hot))
    # A static change under staticChanges: Reject.
    cold = copy.deepcopy(BASE)
    cold["process"] = {"runAsUser": "2000", "runAsGroup": "2000"}
    kube.apply(policy("cold", **cold))

    for name, reason in (("a", "PolicyLoadFailed"), ("b", "StaticChangeRejected")):
        refused = eventually(
            kube.when(
                "hds",
                name,
                lambda o, r=reason: condition(o, "PolicyApplied").get("reason") == r,
            ),
            f"{name}: {reason}",
        )
        assert phase(refused) == "Ready"
        assert verdict(refused) == ("Degraded", message(refused, "PolicyApplied"))
    for name in ("hot", "cold"):
        degraded = eventually(
            kube.when(
                "scp",
                name,
                lambda o: (
                    condition(o, "Applied").get("reason") == "SessionsRefused"
                    and o["status"]["observedGeneration"] == o["metadata"]["generation"]
                ),
            ),
            f"{name}: SessionsRefused",
        )
        assert verdict(degraded) == ("Degraded", message(degraded, "Applied"))


def _expired_status(obj: dict[str, Any]) -> dict[str, Any]:
    text = "lifetime ended at 2025-06-01T12:00:00Z"
    conditions = []
    expired = {"Ready": "False", "Provisioned": "False", "PolicyApplied": "Unknown"}
    for cond in obj["status"]["conditions"]:
        if cond["type"] not in expired:  # as the operator does: EndpointsExposed stays as it was
            conditions.append(cond)
            continue
        status = expired[cond["type"]]
        conditions.append({**cond, "status": status, "reason": "Expired", "message": text})
    return {"phase": "Expired", "conditions": conditions, "endpoints": None}


def _patch_status(kube: Any, obj: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    out = kube.run(
        "patch",
        "hds",
        obj["metadata"]["name"],
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
        "-o",
        "json",
    )
    patched: dict[str, Any] = json.loads(out)
    return patched
