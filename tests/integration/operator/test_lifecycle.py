"""A session's life as a user sees it, per family: Ready, status, columns, Events, delete."""

from __future__ import annotations

import time
from typing import Any

import pytest

from helmdeck_dev.emulator_process import EmulatorProcess
from helmdeck_dev.objects import condition, phase, policy, session
from helmdeck_operator.config import FAMILY_PORTS
from helmdeck_operator.core.naming import sandbox_name
from helmdeck_operator.policy import revision, translate
from tests.support import policies
from tests.support.expectations import assert_ready_status

pytestmark = pytest.mark.usefixtures("operator")

NODE_POLICY = policies.node_spec()


def sandboxes_of(gateway: EmulatorProcess, uid: str) -> list[dict[str, Any]]:
    return [
        s
        for s in gateway.snapshot()["sandboxes"]
        if s.get("labels", {}).get("helmdeck.dev/session-uid") == uid
    ]


@pytest.mark.parametrize(
    ("family", "gateway_name", "policy_name"),
    [
        ("browser", None, None),
        ("python", "pods", "tight"),
        ("node", "microvm", "tight"),
        ("vision", "microvm", None),
    ],
)
def test_a_session_becomes_ready_then_deletes_without_a_trace(
    kube: Any,
    eventually: Any,
    gateway: EmulatorProcess,
    family: str,
    gateway_name: str | None,
    policy_name: str | None,
) -> None:
    spec: dict[str, Any] = {"lifetime": {"ttl": "2h"}}
    if gateway_name:
        spec["gateway"] = gateway_name
    if policy_name:
        spec["policyRef"] = {"name": policy_name}
        kube.apply(policy(policy_name, **NODE_POLICY))
    kube.apply(session("s1", family, **spec))

    ready = eventually(kube.in_phase("s1", "Ready"), "session Ready")
    uid = ready["metadata"]["uid"]
    status = ready["status"]
    expected_policy = policy_name or f"helmdeck-default-{family}"
    assert status["sandbox"]["name"] == sandbox_name(uid)
    assert status["sandbox"]["gateway"] == (gateway_name or "pods")
    assert status["sandbox"]["workspace"] == ("microvm" if gateway_name == "microvm" else "default")
    # The family's ports (browser and vision serve some, python and node none by default).
    assert set(status["endpoints"]) == {p.name for p in FAMILY_PORTS[family]}
    assert_ready_status(status, expected_policy)
    if policy_name:
        assert status["policy"]["revision"] == revision.revision(
            translate.to_sandbox_policy(NODE_POLICY)
        )
    assert status["observedGeneration"] == ready["metadata"]["generation"]
    assert "helmdeck.dev/sandbox-cleanup" in ready["metadata"]["finalizers"]

    columns = kube.run("get", "hds", "s1").splitlines()[1].split()
    assert columns[:6] == ["s1", family, "Ready", expected_policy, "1", sandbox_name(uid)]

    [sandbox] = sandboxes_of(gateway, uid)
    assert sandbox["phase"] == "READY"
    assert sandbox["labels"]["helmdeck.dev/family"] == family
    assert sandbox["labels"]["helmdeck.dev/managed-by"] == "helmdeck-test"
    assert sandbox["annotations"]["helmdeck.dev/session"] == f"{kube.namespace}/s1"

    reasons = eventually(
        lambda: (r := [reason for _, reason in kube.events("s1")]) and "Ready" in r and r,
        "Events posted",
    )
    assert reasons == ["Provisioned", "Ready"]
    # The Ready Event also says which policy the sandbox runs (no separate PolicyApplied).
    [ready_event] = [
        e
        for e in kube.plane.kubectl_json(
            "get", "events", "-n", kube.namespace, "--field-selector=involvedObject.name=s1"
        )["items"]
        if e["reason"] == "Ready"
    ]
    assert f"{expected_policy} sha256:" in ready_event["message"]

    kube.run("delete", "hds", "s1", "--wait=true", "--timeout=60s")
    assert kube.get("hds", "s1") is None
    assert sandboxes_of(gateway, uid) == []


def test_a_missing_policy_waits_then_recovers(kube: Any, eventually: Any) -> None:
    kube.apply(session("waiting", "node", policyRef={"name": "later"}))
    pending = eventually(
        kube.in_phase("waiting", "Pending"),
        "session Pending on its missing policy",
    )
    assert condition(pending, "PolicyApplied")["reason"] == "PolicyNotFound"
    assert "SidecarPolicy" in condition(pending, "PolicyApplied")["message"]

    kube.apply(policy("later", **NODE_POLICY))
    eventually(
        lambda: phase(kube.get("hds", "waiting")) == "Ready", "session Ready once the policy exists"
    )


def test_a_refused_create_fails_once_without_a_retry_loop(
    kube: Any, eventually: Any, gateway: EmulatorProcess
) -> None:
    kube.apply(session("unknown-provider", "python", providers=["gitlab"]))
    failed = eventually(
        kube.in_phase("unknown-provider", "Failed"),
        "session Failed",
    )
    ready = condition(failed, "Ready")
    assert ready["reason"] == "GatewayFailedPrecondition"
    assert "gitlab" in ready["message"]
    assert ("Warning", "GatewayFailedPrecondition") in kube.events("unknown-provider")

    def creates() -> int:
        return sum(1 for r in gateway.snapshot()["requests"] if r["method"] == "CreateSandbox")

    before = creates()
    time.sleep(4)  # longer than the resync interval: a hot loop would show here
    assert creates() == before

    # Fixing the spec (a new generation) retries.
    kube.run(
        "patch",
        "hds",
        "unknown-provider",
        "--type=merge",
        "-p",
        '{"spec":{"providers":["github"]}}',
    )
    eventually(lambda: phase(kube.get("hds", "unknown-provider")) == "Ready", "Ready after the fix")


def test_a_policy_finalizer_left_by_an_earlier_build_is_released(
    kube: Any, eventually: Any
) -> None:
    # Builds before 0.2 let kopf put the sessions' finalizer on every SidecarPolicy.
    old = policy("legacy", network=[])
    old["metadata"]["finalizers"] = ["helmdeck.dev/sandbox-cleanup"]
    kube.apply(old)

    eventually(
        lambda: not ((kube.get("scp", "legacy") or {}).get("metadata", {}).get("finalizers")),
        "the old finalizer removed",
    )
    kube.run("delete", "scp", "legacy", "--wait=true", "--timeout=30s")
    assert kube.get("scp", "legacy") is None
