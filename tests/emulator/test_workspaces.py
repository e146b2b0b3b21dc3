"""Workspaces of the emulated gateway (CreateWorkspace, GetWorkspace, ListWorkspaces,
DeleteWorkspace) and the isolation they give sandboxes, over real gRPC: the rules of the
gateway's grpc/workspace.rs, auth/workspace_authz.rs and mutation_replay.rs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from openshell._proto import datamodel_pb2

from helmdeck_dev.emulator_fixtures import FAST_SETTINGS, EmulatorFactory
from helmdeck_operator.emulator.auth import Principal
from helmdeck_operator.emulator.server import EmulatorConfig, EmulatorHandle
from tests.support.openshell_rpc import Stub, bad_request, eventually, pb, rpc_error

Code = grpc.StatusCode
ADMIN = "platform-admin-token"
TENANT = "tenant-a-token"
ACTIVE = datamodel_pb2.WORKSPACE_PHASE_ACTIVE
TERMINATING = datamodel_pb2.WORKSPACE_PHASE_TERMINATING


def scope(workspace: str) -> datamodel_pb2.WorkspaceSelector:
    return datamodel_pb2.WorkspaceSelector(workspace=workspace)


EVERY = datamodel_pb2.WorkspaceSelector(all_workspaces=datamodel_pb2.AllWorkspaces())


async def make_workspace(stub: Stub, name: str, **labels: str) -> datamodel_pb2.Workspace:
    response = await stub.CreateWorkspace(pb.CreateWorkspaceRequest(name=name, labels=labels))
    made: datamodel_pb2.Workspace = response.workspace
    return made


async def make_sandbox(stub: Stub, workspace: str, name: str) -> pb.Sandbox:
    request = pb.CreateSandboxRequest(
        workspace_scope=scope(workspace), name=name, spec=pb.SandboxSpec()
    )
    response = await stub.CreateSandbox(request)
    made: pb.Sandbox = response.sandbox
    return made


async def listed(stub: Stub, selector: datamodel_pb2.WorkspaceSelector) -> list[str]:
    response = await stub.ListSandboxes(pb.ListSandboxesRequest(workspace_scope=selector))
    return [f"{s.metadata.workspace}/{s.metadata.name}" for s in response.sandboxes]


async def workspaces(stub: Stub, selector: str = "", page_size: int = 0) -> list[str]:
    names: list[str] = []
    token = ""
    while True:
        request = pb.ListWorkspacesRequest(
            label_selector=selector, page_size=page_size, page_token=token
        )
        page = await stub.ListWorkspaces(request)
        names += [w.metadata.name for w in page.workspaces]
        token = page.next_page_token
        if not token:
            return names


# -- CreateWorkspace, GetWorkspace ---------------------------------------------------------


async def test_a_created_workspace_is_active_labelled_and_found_by_name(
    emulator_stub: Stub,
) -> None:
    made = await make_workspace(emulator_stub, "team-a", owner="helmdeck")
    assert made.metadata.name == "team-a"
    assert made.metadata.id
    assert made.metadata.HasField("created_time")
    assert dict(made.metadata.labels) == {"owner": "helmdeck"}
    assert made.metadata.workspace == ""  # a workspace belongs to no workspace
    assert made.status.phase == ACTIVE
    found = await emulator_stub.GetWorkspace(pb.GetWorkspaceRequest(name="team-a"))
    assert found.workspace == made


async def test_a_taken_name_is_already_exists_and_changes_nothing(emulator_stub: Stub) -> None:
    await make_workspace(emulator_stub, "team-a", v="1")
    error = await rpc_error(make_workspace(emulator_stub, "team-a", v="2"))
    assert (error.code(), error.details()) == (Code.ALREADY_EXISTS, "workspace already exists")
    # The pre-created ones are taken too.
    error = await rpc_error(make_workspace(emulator_stub, "default"))
    assert error.code() == Code.ALREADY_EXISTS
    found = await emulator_stub.GetWorkspace(pb.GetWorkspaceRequest(name="team-a"))
    assert dict(found.workspace.metadata.labels) == {"v": "1"}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "workspace name is required"),
        ("a" * 20, "workspace name exceeds maximum length (20 > 19)"),
        ("Team", "workspace name must contain only lowercase alphanumeric characters or hyphens"),
        ("team_a", "workspace name must contain only lowercase alphanumeric characters or hyphens"),
        ("-team", "workspace name must not start or end with a hyphen"),
        ("team-", "workspace name must not start or end with a hyphen"),
        ("team--a", "workspace name must not contain consecutive hyphens"),
    ],
)
async def test_workspace_names_are_routable_dns_labels(
    emulator_stub: Stub, name: str, message: str
) -> None:
    error = await rpc_error(make_workspace(emulator_stub, name))
    assert (error.code(), error.details()) == (Code.INVALID_ARGUMENT, message)
    assert await workspaces(emulator_stub) == ["default"]
    await make_workspace(emulator_stub, "a" * 19)  # the limit itself is fine


async def test_get_needs_a_name_and_an_existing_workspace(emulator_stub: Stub) -> None:
    missing = await rpc_error(emulator_stub.GetWorkspace(pb.GetWorkspaceRequest(name="ghost")))
    assert (missing.code(), missing.details()) == (Code.NOT_FOUND, "workspace not found")
    empty = await rpc_error(emulator_stub.GetWorkspace(pb.GetWorkspaceRequest()))
    assert (empty.code(), empty.details()) == (Code.INVALID_ARGUMENT, "name is required")


# -- ListWorkspaces ------------------------------------------------------------------------


async def test_list_pages_in_creation_order_and_filters_by_label(emulator_stub: Stub) -> None:
    for name in ("ws-1", "ws-2", "ws-3"):
        await make_workspace(emulator_stub, name, owner="helmdeck" if name != "ws-2" else "x")
    assert await workspaces(emulator_stub, page_size=2) == ["default", "ws-1", "ws-2", "ws-3"]
    assert await workspaces(emulator_stub, "owner=helmdeck", page_size=1) == ["ws-1", "ws-3"]
    first = await emulator_stub.ListWorkspaces(pb.ListWorkspacesRequest(page_size=1))
    other = pb.ListWorkspacesRequest(label_selector="owner=x", page_token=first.next_page_token)
    error = await rpc_error(emulator_stub.ListWorkspaces(other))
    assert error.details() == "page_token does not match this list request"


# -- DeleteWorkspace -----------------------------------------------------------------------


async def test_an_empty_workspace_is_deleted_and_a_second_delete_is_absent(
    emulator_stub: Stub,
) -> None:
    await make_workspace(emulator_stub, "team-a")
    delete = pb.DeleteWorkspaceRequest(name="team-a")
    done = await emulator_stub.DeleteWorkspace(delete)
    assert done.outcome == pb.DELETION_OUTCOME_COMPLETED
    again = await rpc_error(emulator_stub.DeleteWorkspace(delete))
    assert (again.code(), again.details()) == (Code.NOT_FOUND, "workspace 'team-a' not found")
    allowed = pb.DeleteWorkspaceRequest(name="team-a", allow_missing=True)
    absent = await emulator_stub.DeleteWorkspace(allowed)
    assert absent.outcome == pb.DELETION_OUTCOME_ALREADY_ABSENT
    assert await workspaces(emulator_stub) == ["default"]


async def test_the_default_workspace_is_never_deleted(emulator_stub: Stub) -> None:
    error = await rpc_error(
        emulator_stub.DeleteWorkspace(pb.DeleteWorkspaceRequest(name="default"))
    )
    assert (error.code(), error.details()) == (
        Code.FAILED_PRECONDITION,
        "the default workspace cannot be deleted",
    )


async def test_a_workspace_with_sandboxes_refuses_the_delete_and_stays_terminating(
    emulator_stub: Stub,
) -> None:
    await make_workspace(emulator_stub, "team-a")
    await make_sandbox(emulator_stub, "team-a", "sbx")
    expose = pb.ExposeServiceRequest(
        workspace_scope=scope("team-a"), sandbox="sbx", name="web", target_port=80
    )
    await emulator_stub.ExposeService(expose)
    error = await rpc_error(emulator_stub.DeleteWorkspace(pb.DeleteWorkspaceRequest(name="team-a")))
    assert (error.code(), error.details()) == (
        Code.FAILED_PRECONDITION,
        "workspace 'team-a' still contains resources: sandbox, service",
    )
    # As on the gateway, the refused delete leaves it TERMINATING: nothing new goes in.
    found = await emulator_stub.GetWorkspace(pb.GetWorkspaceRequest(name="team-a"))
    assert found.workspace.status.phase == TERMINATING
    refused = await rpc_error(make_sandbox(emulator_stub, "team-a", "late"))
    assert (refused.code(), refused.details()) == (
        Code.FAILED_PRECONDITION,
        "workspace 'team-a' is being deleted",
    )
    taken = await rpc_error(make_workspace(emulator_stub, "team-a"))
    assert taken.code() == Code.ALREADY_EXISTS
    # Emptied, the delete goes through.
    remove = pb.DeleteSandboxRequest(workspace_scope=scope("team-a"), name="sbx")
    await emulator_stub.DeleteSandbox(remove)

    async def deleted() -> bool:
        request = pb.DeleteWorkspaceRequest(name="team-a")
        try:
            await emulator_stub.DeleteWorkspace(request)
        except grpc.aio.AioRpcError as error:
            return bool(error.code() != Code.FAILED_PRECONDITION)  # others end the wait
        return True

    assert await eventually(deleted, bool)
    assert await workspaces(emulator_stub) == ["default"]


# -- sandboxes in workspaces ---------------------------------------------------------------


async def test_sandboxes_of_one_workspace_are_invisible_from_another(emulator_stub: Stub) -> None:
    await make_workspace(emulator_stub, "team-a")
    await make_workspace(emulator_stub, "team-b")
    made = await make_sandbox(emulator_stub, "team-a", "sbx")
    assert made.metadata.workspace == "team-a"
    await make_sandbox(emulator_stub, "team-b", "sbx")  # the same name elsewhere is another
    await make_sandbox(emulator_stub, "team-b", "only-b")
    b = scope("team-b")
    a_only = pb.GetSandboxRequest(workspace_scope=scope("team-a"), name="only-b")
    assert (await rpc_error(emulator_stub.GetSandbox(a_only))).code() == Code.NOT_FOUND
    assert await listed(emulator_stub, scope("team-a")) == ["team-a/sbx"]
    assert await listed(emulator_stub, b) == ["team-b/sbx", "team-b/only-b"]
    assert sorted(await listed(emulator_stub, EVERY)) == [
        "team-a/sbx",
        "team-b/only-b",
        "team-b/sbx",
    ]
    a = scope("team-a")
    for call in (
        emulator_stub.StopSandbox(pb.StopSandboxRequest(workspace_scope=a, name="only-b")),
        emulator_stub.DeleteSandbox(pb.DeleteSandboxRequest(workspace_scope=a, name="only-b")),
        emulator_stub.GetService(
            pb.GetServiceRequest(workspace_scope=a, sandbox="only-b", name="web")
        ),
        emulator_stub.GetSandboxPolicyStatus(
            pb.GetSandboxPolicyStatusRequest(workspace_scope=a, sandbox="only-b")
        ),
        emulator_stub.GetSandboxLogs(pb.GetSandboxLogsRequest(workspace_scope=a, sandbox="only-b")),
    ):
        assert (await rpc_error(call)).code() == Code.NOT_FOUND
    watch = emulator_stub.WatchSandbox(
        pb.WatchSandboxRequest(workspace_scope=a, sandbox="only-b", follow_status=True)
    )
    assert (await rpc_error(watch.read())).code() == Code.NOT_FOUND
    # Deleting team-a's sandbox leaves team-b's of the same name alone.
    await emulator_stub.DeleteSandbox(pb.DeleteSandboxRequest(workspace_scope=a, name="sbx"))
    same = await emulator_stub.GetSandbox(pb.GetSandboxRequest(workspace_scope=b, name="sbx"))
    assert same.sandbox.status.phase != pb.SANDBOX_PHASE_DELETING


async def test_a_call_scoped_to_a_missing_workspace_is_not_found(emulator_stub: Stub) -> None:
    create = make_sandbox(emulator_stub, "ghost", "sbx")
    error = await rpc_error(create)
    assert (error.code(), error.details()) == (Code.NOT_FOUND, "workspace 'ghost' not found")
    listing = emulator_stub.ListSandboxes(pb.ListSandboxesRequest(workspace_scope=scope("ghost")))
    assert (await rpc_error(listing)).code() == Code.NOT_FOUND


async def test_single_sandbox_calls_refuse_all_workspaces(emulator_stub: Stub) -> None:
    error = await rpc_error(emulator_stub.GetSandbox(pb.GetSandboxRequest(workspace_scope=EVERY)))
    assert error.code() == Code.INVALID_ARGUMENT
    assert bad_request(error).field_violations[0].field == "workspace_scope"


# -- who may do what -----------------------------------------------------------------------


@pytest_asyncio.fixture
async def tenant_gateway(emulator_factory: EmulatorFactory) -> AsyncIterator[EmulatorHandle]:
    """A gateway with a platform admin and a tenant that is a member of team-a only."""
    tokens = {
        ADMIN: Principal(subject="helmdeck-operator"),
        TENANT: Principal(subject="alice", platform_admin=False, workspaces=frozenset({"team-a"})),
    }
    yield await emulator_factory(EmulatorConfig(gateway=FAST_SETTINGS, tokens=tokens))


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def test_only_a_platform_admin_creates_deletes_or_lists_across_workspaces(
    tenant_gateway: EmulatorHandle,
) -> None:
    async with grpc.aio.insecure_channel(tenant_gateway.address) as channel:
        stub = Stub(channel)  # type: ignore[no-untyped-call]
        admin, tenant = bearer(ADMIN), bearer(TENANT)
        create = pb.CreateWorkspaceRequest(name="team-a")
        denied = await rpc_error(stub.CreateWorkspace(create, metadata=tenant))
        assert (denied.code(), denied.details()) == (
            Code.PERMISSION_DENIED,
            "platform admin role required for cross-workspace operations",
        )
        await stub.CreateWorkspace(create, metadata=admin)
        await stub.CreateWorkspace(pb.CreateWorkspaceRequest(name="team-b"), metadata=admin)
        delete = pb.DeleteWorkspaceRequest(name="team-b")
        assert (await rpc_error(stub.DeleteWorkspace(delete, metadata=tenant))).code() == (
            Code.PERMISSION_DENIED
        )
        every = pb.ListSandboxesRequest(workspace_scope=EVERY)
        assert (await rpc_error(stub.ListSandboxes(every, metadata=tenant))).code() == (
            Code.PERMISSION_DENIED
        )
        await stub.ListSandboxes(every, metadata=admin)


async def test_a_member_reaches_its_workspace_only_and_lists_only_it(
    tenant_gateway: EmulatorHandle,
) -> None:
    async with grpc.aio.insecure_channel(tenant_gateway.address) as channel:
        stub = Stub(channel)  # type: ignore[no-untyped-call]
        admin, tenant = bearer(ADMIN), bearer(TENANT)
        for name in ("team-a", "team-b"):
            await stub.CreateWorkspace(pb.CreateWorkspaceRequest(name=name), metadata=admin)
        mine = pb.CreateSandboxRequest(
            workspace_scope=scope("team-a"), name="sbx", spec=pb.SandboxSpec()
        )
        await stub.CreateSandbox(mine, metadata=tenant)
        theirs = pb.GetSandboxRequest(workspace_scope=scope("team-b"), name="sbx")
        denied = await rpc_error(stub.GetSandbox(theirs, metadata=tenant))
        assert denied.code() == Code.PERMISSION_DENIED
        assert denied.details().startswith("not a member of workspace 'team-b'")
        # Membership is checked before existence: a non-member learns nothing.
        ghost = pb.GetWorkspaceRequest(name="ghost")
        assert (await rpc_error(stub.GetWorkspace(ghost, metadata=tenant))).code() == (
            Code.PERMISSION_DENIED
        )
        default = pb.ListSandboxesRequest()  # the default workspace: not a member either
        assert (await rpc_error(stub.ListSandboxes(default, metadata=tenant))).code() == (
            Code.PERMISSION_DENIED
        )
        page = await stub.ListWorkspaces(pb.ListWorkspacesRequest(), metadata=tenant)
        assert [w.metadata.name for w in page.workspaces] == ["team-a"]
        page = await stub.ListWorkspaces(pb.ListWorkspacesRequest(), metadata=admin)
        assert [w.metadata.name for w in page.workspaces] == ["default", "team-a", "team-b"]
