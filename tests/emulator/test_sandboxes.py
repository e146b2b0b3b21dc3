"""Sandbox lifecycle rules of the emulated gateway, one test per rule, over real gRPC."""

from __future__ import annotations

import grpc
import pytest
from openshell._proto import datamodel_pb2

from helmdeck_dev.emulator_fixtures import FAST_SETTINGS
from helmdeck_operator.emulator.server import EmulatorConfig
from tests.support.openshell_rpc import (
    WS,
    Stub,
    bad_request,
    create,
    get,
    pb,
    rpc_error,
    wait_gone,
    wait_phase,
    wait_ready,
)

Code = grpc.StatusCode


async def test_name_longer_than_19_chars_is_invalid_with_field_violation(
    emulator_stub: Stub,
) -> None:
    error = await rpc_error(create(emulator_stub, "a" * 20))
    assert error.code() == Code.INVALID_ARGUMENT
    violation = bad_request(error).field_violations[0]
    assert violation.field == "name"
    assert "19" in violation.description
    await create(emulator_stub, "a" * 19)  # the limit itself is fine


@pytest.mark.parametrize("name", ["Upper", "-lead", "trail-", "under_score", "dot.ted"])
async def test_name_must_be_a_dns1123_label(emulator_stub: Stub, name: str) -> None:
    error = await rpc_error(create(emulator_stub, name))
    assert error.code() == Code.INVALID_ARGUMENT
    assert bad_request(error).field_violations[0].field == "name"


async def test_create_is_not_idempotent(emulator_stub: Stub) -> None:
    await create(emulator_stub, "dup")
    error = await rpc_error(create(emulator_stub, "dup"))
    assert error.code() == Code.ALREADY_EXISTS


async def test_unknown_provider_is_failed_precondition(emulator_stub: Stub) -> None:
    error = await rpc_error(create(emulator_stub, "prov", providers=["nope"]))
    assert error.code() == Code.FAILED_PRECONDITION
    await create(emulator_stub, "prov", providers=["github"])


async def test_get_missing_is_not_found(emulator_stub: Stub) -> None:
    error = await rpc_error(get(emulator_stub, "ghost"))
    assert error.code() == Code.NOT_FOUND


async def test_unknown_workspace_is_not_found(emulator_stub: Stub) -> None:
    other = datamodel_pb2.WorkspaceSelector(workspace="elsewhere")
    request = pb.GetSandboxRequest(workspace_scope=other, name="x")
    error = await rpc_error(emulator_stub.GetSandbox(request))
    assert error.code() == Code.NOT_FOUND


async def test_create_returns_id_and_labels(emulator_stub: Stub) -> None:
    response = await create(emulator_stub, "meta", labels={"app": "x"})
    assert response.sandbox.metadata.id
    assert response.sandbox.metadata.labels["app"] == "x"


async def test_provisioning_becomes_ready_after_the_delay(emulator_stub: Stub) -> None:
    response = await create(emulator_stub, "boot")
    assert response.sandbox.status.phase == pb.SANDBOX_PHASE_PROVISIONING
    ready = await wait_ready(emulator_stub, "boot")
    assert ready.status.conditions[0].status == "True"


async def test_list_filters_by_equality_label_selector(emulator_stub: Stub) -> None:
    await create(emulator_stub, "s1", labels={"team": "a", "tier": "x"})
    await create(emulator_stub, "s2", labels={"team": "a", "tier": "y"})
    await create(emulator_stub, "s3", labels={"team": "b"})
    request = pb.ListSandboxesRequest(workspace_scope=WS, label_selector="team=a, tier=y")
    response = await emulator_stub.ListSandboxes(request)
    assert [s.metadata.name for s in response.sandboxes] == ["s2"]


async def test_list_rejects_set_based_selectors(emulator_stub: Stub) -> None:
    request = pb.ListSandboxesRequest(workspace_scope=WS, label_selector="team!=a")
    error = await rpc_error(emulator_stub.ListSandboxes(request))
    assert error.code() == Code.INVALID_ARGUMENT
    assert bad_request(error).field_violations[0].field == "label_selector"


async def test_list_paginates_in_stable_order_with_opaque_tokens(emulator_stub: Stub) -> None:
    names = [f"p{i}" for i in range(5)]
    for name in names:
        await create(emulator_stub, name)
    seen, token = [], ""
    while True:
        request = pb.ListSandboxesRequest(workspace_scope=WS, page_size=2, page_token=token)
        response = await emulator_stub.ListSandboxes(request)
        assert len(response.sandboxes) <= 2
        seen += [s.metadata.name for s in response.sandboxes]
        token = response.next_page_token
        if not token:
            break
    assert seen == names
    bad = pb.ListSandboxesRequest(workspace_scope=WS, page_token="garbage!")
    assert (await rpc_error(emulator_stub.ListSandboxes(bad))).code() == Code.INVALID_ARGUMENT


async def test_delete_is_accepted_then_deleting_then_gone(emulator_stub: Stub) -> None:
    created = await create(emulator_stub, "del")
    request = pb.DeleteSandboxRequest(workspace_scope=WS, name="del")
    response = await emulator_stub.DeleteSandbox(request)
    assert response.outcome == pb.DELETION_OUTCOME_ACCEPTED
    assert response.sandbox_id == created.sandbox.metadata.id
    assert (await get(emulator_stub, "del")).status.phase == pb.SANDBOX_PHASE_DELETING
    again = await emulator_stub.DeleteSandbox(request)
    assert again.outcome == pb.DELETION_OUTCOME_ACCEPTED
    await wait_gone(emulator_stub, "del")


async def test_delete_missing_needs_allow_missing(emulator_stub: Stub) -> None:
    request = pb.DeleteSandboxRequest(workspace_scope=WS, name="never")
    assert (await rpc_error(emulator_stub.DeleteSandbox(request))).code() == Code.NOT_FOUND
    request.allow_missing = True
    response = await emulator_stub.DeleteSandbox(request)
    assert response.outcome == pb.DELETION_OUTCOME_ALREADY_ABSENT


async def test_delete_without_driver_delay_is_completed(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    handle = await emulator_factory(EmulatorConfig(gateway=replace(FAST_SETTINGS, delete_delay=0)))
    async with grpc.aio.insecure_channel(handle.address) as channel:
        stub = Stub(channel)
        await create(stub, "quick")
        request = pb.DeleteSandboxRequest(workspace_scope=WS, name="quick")
        response = await stub.DeleteSandbox(request)
        assert response.outcome == pb.DELETION_OUTCOME_COMPLETED
        assert (await rpc_error(get(stub, "quick"))).code() == Code.NOT_FOUND


async def test_create_while_deleting_is_already_exists(emulator_stub: Stub) -> None:
    await create(emulator_stub, "busy")
    await emulator_stub.DeleteSandbox(pb.DeleteSandboxRequest(workspace_scope=WS, name="busy"))
    assert (await rpc_error(create(emulator_stub, "busy"))).code() == Code.ALREADY_EXISTS


async def test_stop_and_start_walk_through_the_phases(emulator_stub: Stub) -> None:
    await create(emulator_stub, "cycle")
    await wait_ready(emulator_stub, "cycle")
    stop = pb.StopSandboxRequest(workspace_scope=WS, name="cycle")
    assert (await emulator_stub.StopSandbox(stop)).sandbox.status.phase == pb.SANDBOX_PHASE_STOPPING
    await wait_phase(emulator_stub, "cycle", pb.SANDBOX_PHASE_STOPPED)
    start = pb.StartSandboxRequest(workspace_scope=WS, name="cycle")
    started = await emulator_stub.StartSandbox(start)
    assert started.sandbox.status.phase == pb.SANDBOX_PHASE_STARTING
    await wait_ready(emulator_stub, "cycle")


async def test_repeated_stop_and_start_return_the_sandbox_unchanged(emulator_stub: Stub) -> None:
    await create(emulator_stub, "idem")
    ready = await wait_ready(emulator_stub, "idem")
    start = pb.StartSandboxRequest(workspace_scope=WS, name="idem")
    same = await emulator_stub.StartSandbox(start)
    assert same.sandbox.metadata.resource_version == ready.metadata.resource_version
    stop = pb.StopSandboxRequest(workspace_scope=WS, name="idem")
    await emulator_stub.StopSandbox(stop)
    stopped = await wait_phase(emulator_stub, "idem", pb.SANDBOX_PHASE_STOPPED)
    again = await emulator_stub.StopSandbox(stop)
    assert again.sandbox.status.phase == pb.SANDBOX_PHASE_STOPPED
    assert again.sandbox.metadata.resource_version == stopped.metadata.resource_version


async def test_stop_or_start_in_the_wrong_phase_is_failed_precondition(
    emulator_stub: Stub,
) -> None:
    await create(emulator_stub, "early")  # still PROVISIONING
    stop = pb.StopSandboxRequest(workspace_scope=WS, name="early")
    assert (await rpc_error(emulator_stub.StopSandbox(stop))).code() == Code.FAILED_PRECONDITION
    start = pb.StartSandboxRequest(workspace_scope=WS, name="early")
    assert (await rpc_error(emulator_stub.StartSandbox(start))).code() == Code.FAILED_PRECONDITION


async def test_single_workspace_calls_reject_all_workspaces(emulator_stub: Stub) -> None:
    scope = datamodel_pb2.WorkspaceSelector(all_workspaces=datamodel_pb2.AllWorkspaces())
    request = pb.GetSandboxRequest(workspace_scope=scope, name="x")
    error = await rpc_error(emulator_stub.GetSandbox(request))
    assert error.code() == Code.INVALID_ARGUMENT
    listing = await emulator_stub.ListSandboxes(pb.ListSandboxesRequest(workspace_scope=scope))
    assert list(listing.sandboxes) == []
