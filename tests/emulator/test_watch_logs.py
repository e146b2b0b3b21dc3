"""WatchSandbox streaming and the per-sandbox log buffer."""

from __future__ import annotations

import asyncio

import grpc

from helmdeck_dev.emulator_fixtures import FAST_SETTINGS
from helmdeck_operator.emulator.server import EmulatorConfig, EmulatorHandle
from tests.support.openshell_rpc import WS, Stub, create, pb, rpc_error, wait_ready
from tests.support.policies import base_policy

Code = grpc.StatusCode


async def test_watch_sends_snapshot_then_changes_and_ends_on_delete(emulator_stub: Stub) -> None:
    await create(emulator_stub, "w")
    stream = emulator_stub.WatchSandbox(
        pb.WatchSandboxRequest(workspace_scope=WS, sandbox="w", follow_status=True)
    )
    phases = []
    async for event in stream:
        assert event.WhichOneof("payload") == "sandbox"
        phases.append(event.sandbox.status.phase)
        if event.sandbox.status.phase == pb.SANDBOX_PHASE_READY and len(phases) == 2:
            await emulator_stub.DeleteSandbox(pb.DeleteSandboxRequest(workspace_scope=WS, name="w"))
    assert phases == [
        pb.SANDBOX_PHASE_PROVISIONING,
        pb.SANDBOX_PHASE_READY,
        pb.SANDBOX_PHASE_DELETING,
    ]
    assert await stream.code() == Code.OK


async def test_watch_of_missing_sandbox_is_not_found(emulator_stub: Stub) -> None:
    stream = emulator_stub.WatchSandbox(pb.WatchSandboxRequest(workspace_scope=WS, sandbox="no"))
    error = await rpc_error(stream.read())
    assert error.code() == Code.NOT_FOUND


async def test_slow_watch_reader_is_cut_with_resource_exhausted(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    handle = await emulator_factory(EmulatorConfig(gateway=FAST_SETTINGS, watch_queue_size=8))
    async with grpc.aio.insecure_channel(handle.address) as channel:
        stub = Stub(channel)
        await create(stub, "slow")
        stream = stub.WatchSandbox(
            pb.WatchSandboxRequest(workspace_scope=WS, sandbox="slow", follow_logs=True)
        )
        await stream.read()  # the snapshot: the watcher is now subscribed
        for i in range(100):  # a burst faster than any reader: the queue overflows
            handle.gateway.append_log("default", "slow", f"line {i}")
        with_error = None
        try:
            while await stream.read() is not grpc.aio.EOF:
                pass
        except grpc.aio.AioRpcError as error:
            with_error = error
        assert with_error is not None
        assert with_error.code() == Code.RESOURCE_EXHAUSTED


async def test_watch_follows_logs_with_filters(
    openshell_emulator: EmulatorHandle, emulator_stub: Stub
) -> None:
    await create(emulator_stub, "wl")
    await wait_ready(emulator_stub, "wl")
    stream = emulator_stub.WatchSandbox(
        pb.WatchSandboxRequest(
            workspace_scope=WS, sandbox="wl", follow_logs=True, log_sources=["sandbox"]
        )
    )
    await stream.read()
    openshell_emulator.gateway.append_log("default", "wl", "from gateway", source="gateway")
    openshell_emulator.gateway.append_log("default", "wl", "denied", level="OCSF", target="ocsf")
    event = await asyncio.wait_for(stream.read(), 2)
    assert event.log.message == "denied"
    assert event.log.target == "ocsf"
    assert event.log.sandbox_id
    stream.cancel()


async def test_get_logs_filters_and_counts_the_buffer(
    openshell_emulator: EmulatorHandle, emulator_stub: Stub
) -> None:
    await create(emulator_stub, "logs")
    gateway = openshell_emulator.gateway
    for i in range(5):
        gateway.append_log("default", "logs", f"info {i}")
    gateway.append_log("default", "logs", "oops", level="ERROR")
    request = pb.GetSandboxLogsRequest(workspace_scope=WS, sandbox="logs", sources=["sandbox"])
    response = await emulator_stub.GetSandboxLogs(request)
    assert [line.message for line in response.logs][-2:] == ["info 4", "oops"]
    assert response.buffer_total >= 6
    request.min_level, request.lines = "ERROR", 10
    errors = await emulator_stub.GetSandboxLogs(request)
    assert [line.message for line in errors.logs] == ["oops"]
    request.min_level, request.lines = "", 2
    assert len((await emulator_stub.GetSandboxLogs(request)).logs) == 2


async def test_policy_load_emits_an_ocsf_config_line(emulator_stub: Stub) -> None:
    await create(emulator_stub, "ocsf", policy=base_policy())
    await wait_ready(emulator_stub, "ocsf")
    request = pb.GetSandboxLogsRequest(workspace_scope=WS, sandbox="ocsf", sources=["sandbox"])
    lines = (await emulator_stub.GetSandboxLogs(request)).logs
    assert any(line.level == "OCSF" and "CONFIG:LOADED" in line.message for line in lines)
