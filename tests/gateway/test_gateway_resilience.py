"""Retries, deadlines and outages: the client against an emulator with injected faults.

Attempts are counted on the server side (the emulator's request records), so these tests
prove what went over the wire, not what the client believes it did.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from helmdeck_operator.emulator.server import EmulatorHandle
from helmdeck_operator.gateway.client import GatewayClient
from helmdeck_operator.gateway.errors import (
    GatewayAlreadyExists,
    GatewayInternal,
    GatewayPermissionDenied,
    GatewayTransient,
)
from helmdeck_operator.gateway.models import SandboxPhase
from tests.support.gateway import Calls, ConfigFactory, EmulatorFactory


def fail(emulator: EmulatorHandle, rpc: str, code: str, count: int | None = None) -> None:
    emulator.faults.apply({"errors": {rpc: {"code": code, "count": count}}})


@pytest.mark.parametrize("code", ["UNAVAILABLE", "RESOURCE_EXHAUSTED", "ABORTED"])
async def test_transient_failures_are_retried_with_one_request_id(
    client: GatewayClient, emulator: EmulatorHandle, calls: Calls, code: str
) -> None:
    fail(emulator, "GetSandbox", code, count=2)
    assert await client.get_sandbox("any") is None  # third attempt answers NOT_FOUND
    attempts = calls("GetSandbox")
    assert [a["code"] for a in attempts] == [code, code, "NOT_FOUND"]
    assert len({a["x_request_id"] for a in attempts}) == 1
    assert len({a["traceparent"] for a in attempts}) == 1


async def test_retries_are_bounded(
    client: GatewayClient, emulator: EmulatorHandle, calls: Calls
) -> None:
    fail(emulator, "ListSandboxes", "UNAVAILABLE")
    with pytest.raises(GatewayTransient) as exhausted:
        await client.list_sandboxes()
    assert exhausted.value.attempts == 3
    assert exhausted.value.reason == "GatewayUnavailable"
    assert len(calls("ListSandboxes")) == 3


@pytest.mark.parametrize(
    ("code", "error"),
    [("INTERNAL", GatewayInternal), ("PERMISSION_DENIED", GatewayPermissionDenied)],
)
async def test_permanent_failures_are_not_retried(
    client: GatewayClient,
    emulator: EmulatorHandle,
    calls: Calls,
    code: str,
    error: type[Exception],
) -> None:
    fail(emulator, "StopSandbox", code)
    with pytest.raises(error):
        await client.stop_sandbox("x")
    assert len(calls("StopSandbox")) == 1


async def test_deadline_is_per_attempt_and_attempts_are_bounded(
    config_for: ConfigFactory, emulator: EmulatorHandle, calls: Calls
) -> None:
    emulator.faults.apply({"latency": {"GetSandbox": 1.0}})
    config = config_for(deadline_seconds=0.1)
    started = time.monotonic()
    async with GatewayClient(config) as client:
        with pytest.raises(GatewayTransient) as late:
            await client.get_sandbox("slow")
    elapsed = time.monotonic() - started
    assert late.value.code == "DEADLINE_EXCEEDED"
    assert late.value.reason == "GatewayDeadlineExceeded"
    assert late.value.attempts == 3
    assert len(calls("GetSandbox")) == 3
    assert elapsed < 3 * 0.1 + 2 * 0.05 + 0.5  # three deadlines, two short pauses, slack


async def test_an_outage_window_is_ridden_out(
    config_for: ConfigFactory, emulator: EmulatorHandle
) -> None:
    emulator.faults.apply({"outage": {"seconds": 0.15}})
    retry = {"max_attempts": 6, "initial_backoff": 0.05, "max_backoff": 0.1}
    async with GatewayClient(config_for(retry=retry)) as client:
        health = await client.health()
    assert health.status.value in {"HEALTHY", "DEGRADED"}


async def test_an_unreachable_gateway_is_transient(config_for: ConfigFactory) -> None:
    config = config_for(endpoint="127.0.0.1:1", deadline_seconds=0.5)
    async with GatewayClient(config) as client:
        with pytest.raises(GatewayTransient) as down:
            await client.health()
    assert down.value.code in {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
    assert down.value.attempts == 3


async def test_create_retried_after_a_lost_response_surfaces_already_exists(
    client: GatewayClient, emulator: EmulatorHandle, calls: Calls
) -> None:
    # The sandbox exists (the first create went through), the client saw only a failure.
    await client.create_sandbox("lost")
    fail(emulator, "CreateSandbox", "UNAVAILABLE", count=1)
    with pytest.raises(GatewayAlreadyExists) as exists:
        await client.create_sandbox("lost", labels={"helmdeck.dev/session": "s"})
    assert exists.value.attempts == 2
    assert [c["code"] for c in calls("CreateSandbox")] == ["OK", "UNAVAILABLE", "ALREADY_EXISTS"]
    adopted = await client.get_sandbox("lost")  # what the reconciler does next
    assert adopted is not None


async def test_watch_resumes_after_being_cut_as_a_slow_reader(
    config_for: ConfigFactory, start_emu: EmulatorFactory
) -> None:
    slow = await start_emu(watch_queue_size=2)
    seen: list[SandboxPhase] = []
    async with GatewayClient(config_for(endpoint=slow.address)) as client, asyncio.timeout(5):
        await client.create_sandbox("flaky")
        async for event in client.watch_sandbox("flaky"):
            assert event.sandbox is not None
            seen.append(event.sandbox.phase)
            if len(seen) == 1:
                # More changes than the stream buffers while we dawdle: the gateway cuts
                # us with RESOURCE_EXHAUSTED and the watch must reconnect by itself.
                for n in range(5):
                    slow.gateway.append_log("default", "flaky", f"line {n}")
            if event.sandbox.is_ready:
                break
    watches = [r for r in slow.requests if r["method"] == "WatchSandbox"]
    assert len(watches) == 2
    assert len({w["x_request_id"] for w in watches}) == 1
    assert seen[0] is SandboxPhase.PROVISIONING
    assert seen[-1] is SandboxPhase.READY


async def test_watch_gives_up_on_a_permanent_error(
    client: GatewayClient, emulator: EmulatorHandle
) -> None:
    fail(emulator, "WatchSandbox", "PERMISSION_DENIED")
    with pytest.raises(GatewayPermissionDenied) as denied:
        async for _ in client.watch_sandbox("any"):
            pass
    assert denied.value.rpc == "WatchSandbox"


async def test_watch_retries_are_bounded(
    client: GatewayClient, emulator: EmulatorHandle, calls: Calls
) -> None:
    fail(emulator, "WatchSandbox", "UNAVAILABLE")
    with pytest.raises(GatewayTransient):
        async for _ in client.watch_sandbox("any"):
            pass
    assert len(calls("WatchSandbox")) == 3
