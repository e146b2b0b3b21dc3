"""Namespaces as OpenShell workspaces end to end: the operator (a subprocess, against the real
apiserver) drives a gateway in mode PerNamespace, so each namespace's sandboxes live in a
workspace of its own, named as docs/gateway.md says, and a client of one workspace cannot
see another's. The gateway is the emulator, read back over its gRPC API with the official
stubs, as any OpenShell client would read it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from openshell._proto import datamodel_pb2, openshell_pb2, openshell_pb2_grpc

from helmdeck_dev.controlplane import ControlPlane
from helmdeck_dev.emulator_process import EmulatorProcess
from helmdeck_dev.objects import session
from helmdeck_dev.operator_process import write_config
from helmdeck_operator.core.naming import (
    namespace_workspace,
    sandbox_annotations,
    sandbox_labels,
)
from tests.support.cluster import Kube, create_namespace, delete_namespace

pytestmark = pytest.mark.usefixtures("operator")

Stub = openshell_pb2_grpc.OpenShellStub
INSTANCE = "helmdeck-test"
PREFIX = "ns-"  # the default workspace prefix


@pytest.fixture(scope="module")
def operator_config(gateway: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(
        tmp_path_factory.mktemp("operator") / "config.yaml",
        gateway.address,
        gateway_fields={"pods": {"workspaces": "PerNamespace"}},
    )


@pytest.fixture(scope="module")
def openshell(gateway: EmulatorProcess) -> Iterator[Stub]:
    with grpc.insecure_channel(gateway.address) as channel:
        yield Stub(channel)  # type: ignore[no-untyped-call]


@pytest.fixture
def other_namespace(cluster: ControlPlane, namespace: str) -> Iterator[str]:
    name = create_namespace(cluster, f"{namespace[:50]}-b{secrets.token_hex(2)}")
    yield name
    delete_namespace(cluster, name)


def scope(workspace: str) -> datamodel_pb2.WorkspaceSelector:
    return datamodel_pb2.WorkspaceSelector(workspace=workspace)


def listed(stub: Stub, workspace: str) -> set[str]:
    request = openshell_pb2.ListSandboxesRequest(workspace_scope=scope(workspace))
    response = stub.ListSandboxes(request, timeout=10)
    return {s.metadata.name for s in response.sandboxes}


def get_code(stub: Stub, workspace: str, name: str) -> grpc.StatusCode:
    request = openshell_pb2.GetSandboxRequest(workspace_scope=scope(workspace), name=name)
    try:
        stub.GetSandbox(request, timeout=10)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK


def make_workspace(stub: Stub, name: str) -> None:
    """Create a workspace; one that exists (made by an earlier test here) is fine."""
    try:
        stub.CreateWorkspace(openshell_pb2.CreateWorkspaceRequest(name=name), timeout=10)
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise


def sandboxes(gateway: EmulatorProcess) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = gateway.snapshot()["sandboxes"]
    return found


def test_two_namespaces_live_in_two_workspaces_that_cannot_see_each_other(
    cluster: ControlPlane,
    kube: Kube,
    other_namespace: str,
    eventually: Any,
    gateway: EmulatorProcess,
    openshell: Stub,
) -> None:
    tenants = {kube.namespace: kube, other_namespace: Kube(cluster, other_namespace)}
    for each in tenants.values():
        each.apply(session("s1", "python", lifetime={"ttl": "1h"}))
    placed: dict[str, tuple[str, str]] = {}
    for namespace, each in tenants.items():
        ready = eventually(each.in_phase("s1", "Ready"), f"s1 Ready in {namespace}")
        workspace = namespace_workspace(PREFIX, namespace)
        assert ready["status"]["sandbox"]["workspace"] == workspace
        placed[namespace] = (workspace, ready["status"]["sandbox"]["name"])
    (ws_a, sbx_a), (ws_b, sbx_b) = placed.values()
    assert ws_a != ws_b
    # Made on demand, labelled with the instance and the namespace they serve.
    made = {w["name"]: w["labels"] for w in gateway.snapshot()["workspaces"]}
    for namespace, (workspace, _) in placed.items():
        assert made[workspace] == {
            "helmdeck.dev/managed-by": INSTANCE,
            "helmdeck.dev/namespace": namespace,
        }
    # A client scoped to one workspace sees its own sandbox only.
    assert get_code(openshell, ws_a, sbx_a) == grpc.StatusCode.OK
    assert get_code(openshell, ws_a, sbx_b) == grpc.StatusCode.NOT_FOUND
    assert get_code(openshell, ws_b, sbx_a) == grpc.StatusCode.NOT_FOUND
    assert sbx_a in listed(openshell, ws_a)
    assert sbx_b not in listed(openshell, ws_a)
    assert sbx_a not in listed(openshell, ws_b)
    assert sbx_a not in listed(openshell, "default")  # nor in the gateway's own workspace

    for each in tenants.values():
        each.run("delete", "hds", "s1", "--wait=false")
    for namespace, each in tenants.items():
        eventually(lambda each=each: each.get("hds", "s1") is None, f"s1 gone in {namespace}")
    names = {sbx_a, sbx_b}
    eventually(
        lambda: not [s for s in sandboxes(gateway) if s["name"] in names], "both sandboxes gone"
    )


def test_the_sweep_deletes_orphans_in_a_namespace_workspace_only(
    kube: Kube, eventually: Any, gateway: EmulatorProcess, openshell: Stub
) -> None:
    namespace = kube.namespace
    workspace = namespace_workspace(PREFIX, namespace)
    for name in (workspace, "ns-elsewhere"):
        make_workspace(openshell, name)

    def orphan(where: str, name: str) -> None:
        """A sandbox labelled as this instance's, of a session that never existed."""
        request = openshell_pb2.CreateSandboxRequest(
            workspace_scope=scope(where),
            name=name,
            spec=openshell_pb2.SandboxSpec(),
            labels=sandbox_labels(session_uid=f"ghost-{name}", family="python", instance=INSTANCE),
            annotations=sandbox_annotations(namespace=namespace, name="ghost"),
        )
        openshell.CreateSandbox(request, timeout=10)

    orphan(workspace, "orphan-here")
    # In a workspace the namespace cannot be in: not this operator's, never touched.
    orphan("ns-elsewhere", "orphan-there")
    eventually(
        lambda: "orphan-here" not in {s["name"] for s in sandboxes(gateway)},
        "the orphan in the namespace's workspace swept",
    )
    assert "orphan-there" in {s["name"] for s in sandboxes(gateway)}
    openshell.DeleteSandbox(
        openshell_pb2.DeleteSandboxRequest(
            workspace_scope=scope("ns-elsewhere"), name="orphan-there"
        ),
        timeout=10,
    )
