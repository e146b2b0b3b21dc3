"""The platform egress guard end to end: what the gateway receives is the narrowed policy, and
a policy the guard refuses never reaches it.

The operator runs as a subprocess against the real apiserver with `egress_guard.service_cidrs`
configured; the gateway is the emulator, and the policy it received is read back over its
gRPC API (GetSandboxPolicyStatus), as any OpenShell client would read it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from openshell._proto import datamodel_pb2, openshell_pb2, openshell_pb2_grpc, sandbox_pb2

from helmdeck_dev.emulator_process import EmulatorProcess
from helmdeck_dev.objects import condition, phase, policy, session
from helmdeck_dev.operator_process import write_config
from tests.support import policies

pytestmark = pytest.mark.usefixtures("operator")

SERVICES = ipaddress.ip_network("10.96.0.0/12")
METADATA = ipaddress.ip_address("169.254.169.254")


@pytest.fixture(scope="module")
def operator_config(gateway: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(
        tmp_path_factory.mktemp("operator") / "config.yaml",
        gateway.address,
        egress_guard={"service_cidrs": [str(SERVICES)]},
    )


@pytest.fixture(scope="module")
def openshell(gateway: EmulatorProcess) -> Iterator[openshell_pb2_grpc.OpenShellStub]:
    with grpc.insecure_channel(gateway.address) as channel:
        yield openshell_pb2_grpc.OpenShellStub(channel)  # type: ignore[no-untyped-call]


def received(
    stub: openshell_pb2_grpc.OpenShellStub, gateway: EmulatorProcess, namespace: str, name: str
) -> sandbox_pb2.SandboxPolicy:
    """The latest policy the gateway holds for the session's sandbox."""
    (sandbox,) = [
        s
        for s in gateway.snapshot()["sandboxes"]
        if s["annotations"].get("helmdeck.dev/session") == f"{namespace}/{name}"
    ]
    request = openshell_pb2.GetSandboxPolicyStatusRequest(
        workspace_scope=datamodel_pb2.WorkspaceSelector(workspace="default"),
        sandbox=sandbox["name"],
    )
    response: openshell_pb2.GetSandboxPolicyStatusResponse = stub.GetSandboxPolicyStatus(
        request, timeout=10
    )
    policy: sandbox_pb2.SandboxPolicy = response.revision.policy
    return policy


def reaches(endpoint: sandbox_pb2.NetworkEndpoint, address: Any) -> bool:
    """Whether the endpoint lets a connection to `address` through the gateway's proxy: its
    host is that address, or its allowedIps cover it (the proxy refuses internal addresses
    otherwise)."""
    if endpoint.host == str(address):
        return True
    return any(address in ipaddress.ip_network(ip, strict=False) for ip in endpoint.allowed_ips)


def test_the_gateway_receives_the_narrowed_allowed_ips(
    kube: Any,
    eventually: Any,
    gateway: EmulatorProcess,
    openshell: openshell_pb2_grpc.OpenShellStub,
) -> None:
    wide = policies.rest("internal.example.com", allowedIps=["10.0.0.0/8"])
    kube.apply(policy("wide", network=[policies.rule("internal", wide)]))
    kube.apply(session("s", "python", policyRef={"name": "wide"}))

    def loaded() -> dict[str, Any] | None:
        found = kube.get("hds", "s")
        state = ((found or {}).get("status") or {}).get("policy") or {}
        return found if phase(found) == "Ready" and state.get("state") == "Loaded" else None

    ready = eventually(loaded, "session s Ready with its policy loaded")

    sent = received(openshell, gateway, kube.namespace, "s")
    (endpoint,) = sent.network_policies["internal"].endpoints
    kept = [ipaddress.ip_network(ip) for ip in endpoint.allowed_ips]
    print("allowed_ips received:", list(endpoint.allowed_ips))
    assert sorted(str(n) for n in kept) == sorted(
        ["10.0.0.0/10", "10.64.0.0/11", "10.112.0.0/12", "10.128.0.0/9"]
    )
    assert not any(n.overlaps(SERVICES) for n in kept)
    assert sum(n.num_addresses for n in kept) == 2**24 - SERVICES.num_addresses
    every = [e for rule in sent.network_policies.values() for e in rule.endpoints]
    assert not any(reaches(e, METADATA) for e in every)

    status = kube.get("scp", "wide")["status"]
    print("policy status.egressGuard:", status["egressGuard"])
    assert ready["status"]["policy"]["revision"] == status["revision"]
    (narrowed,) = status["egressGuard"]["narrowed"]
    assert narrowed["field"] == "spec.network[0].endpoints[0].allowedIps[0]"
    assert narrowed["guard"] == ["10.96.0.0/12 (serviceCidrs)"]
    assert sorted(narrowed["kept"]) == sorted(str(n) for n in kept)


def test_a_policy_with_the_metadata_address_is_refused_and_never_sent(
    kube: Any, eventually: Any, gateway: EmulatorProcess
) -> None:
    metadata = policies.rest(str(METADATA), port=80)
    kube.apply(policy("imds", network=[policies.rule("imds", metadata)]))
    kube.apply(session("t", "python", policyRef={"name": "imds"}))

    def refused() -> dict[str, Any] | None:
        found = kube.get("scp", "imds")
        valid = condition(found, "Valid")
        return valid if valid.get("reason") == "EgressGuarded" else None

    valid = eventually(refused, "SidecarPolicy imds refused by the egress guard")
    print("Valid:", valid)
    assert valid["status"] == "False"
    assert valid["message"].startswith(
        "SidecarPolicy imds: spec.network[0].endpoints[0].host: 169.254.169.254 is inside "
        "169.254.0.0/16 (linkLocal)"
    )
    waiting = eventually(
        lambda: (s := kube.get("hds", "t")) and condition(s, "Ready").get("reason") and s,
        "session t reports why it waits",
    )
    assert phase(waiting) == "Pending"
    assert condition(waiting, "Ready")["reason"] == "EgressGuarded"
    assert "spec.network[0].endpoints[0].host" in condition(waiting, "Ready")["message"]
    assert not any(
        s["annotations"].get("helmdeck.dev/session") == f"{kube.namespace}/t"
        for s in gateway.snapshot()["sandboxes"]
    )
