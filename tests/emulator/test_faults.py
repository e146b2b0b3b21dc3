"""Fault injection: latency, error rates, outages, lost and failing sandboxes."""

from __future__ import annotations

import asyncio
import time

import grpc

from helmdeck_dev.emulator_fixtures import FAST_SETTINGS
from helmdeck_operator.emulator.faults import Faults, parse_fault_spec
from helmdeck_operator.emulator.server import EmulatorConfig, EmulatorHandle
from tests.support.openshell_rpc import Stub, create, get, pb, rpc_error, wait_phase, wait_ready

Code = grpc.StatusCode


async def test_latency_is_added_per_rpc(
    openshell_emulator: EmulatorHandle, emulator_stub: Stub
) -> None:
    openshell_emulator.faults.apply({"latency": {"Health": 0.2}})
    started = time.monotonic()
    await emulator_stub.Health(pb.HealthRequest())
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    await rpc_error(get(emulator_stub, "x"))
    assert time.monotonic() - started < 0.2


async def test_error_fault_uses_the_chosen_code_and_count(
    openshell_emulator: EmulatorHandle, emulator_stub: Stub
) -> None:
    openshell_emulator.faults.apply(
        {"errors": {"CreateSandbox": {"code": "UNAVAILABLE", "count": 2}}}
    )
    for _ in range(2):
        assert (await rpc_error(create(emulator_stub, "flaky"))).code() == Code.UNAVAILABLE
    await create(emulator_stub, "flaky")  # the third attempt goes through


def test_error_rate_is_deterministic_when_seeded() -> None:
    def pattern(seed: int) -> list[bool]:
        faults = Faults(seed=seed)
        faults.apply(parse_fault_spec("error:GetSandbox=UNAVAILABLE@0.5"))
        return [faults.before_rpc("GetSandbox")[1] is not None for _ in range(40)]

    assert pattern(7) == pattern(7)
    assert 5 < sum(pattern(7)) < 35


async def test_outage_fails_everything_until_cleared(
    openshell_emulator: EmulatorHandle, emulator_stub: Stub
) -> None:
    openshell_emulator.faults.apply({"outage": {"until_cleared": True}})
    assert (await rpc_error(emulator_stub.Health(pb.HealthRequest()))).code() == Code.UNAVAILABLE
    assert (await rpc_error(create(emulator_stub, "down"))).code() == Code.UNAVAILABLE
    openshell_emulator.faults.clear(["outage"])
    await create(emulator_stub, "down")


async def test_outage_window_ends_by_itself(
    openshell_emulator: EmulatorHandle, emulator_stub: Stub
) -> None:
    openshell_emulator.faults.apply({"outage": {"seconds": 0.15}})
    assert (await rpc_error(get(emulator_stub, "x"))).code() == Code.UNAVAILABLE
    await asyncio.sleep(0.2)
    assert (await rpc_error(get(emulator_stub, "x"))).code() == Code.NOT_FOUND


async def test_vanished_sandbox_is_simply_gone(
    openshell_emulator: EmulatorHandle, emulator_stub: Stub
) -> None:
    await create(emulator_stub, "lost")
    await wait_ready(emulator_stub, "lost")
    openshell_emulator.gateway.vanish("default", "lost")
    assert (await rpc_error(get(emulator_stub, "lost"))).code() == Code.NOT_FOUND
    assert openshell_emulator.snapshot()["events"][-1]["event"] == "vanished"


async def test_forced_error_puts_the_sandbox_in_error(
    openshell_emulator: EmulatorHandle, emulator_stub: Stub
) -> None:
    await create(emulator_stub, "crash")
    await wait_ready(emulator_stub, "crash")
    openshell_emulator.gateway.force_error("default", "crash", "exit 137", 137)
    sandbox = await get(emulator_stub, "crash")
    assert sandbox.status.phase == pb.SANDBOX_PHASE_ERROR
    assert sandbox.status.exit_code == 137
    assert sandbox.status.conditions[0].message == "exit 137"


async def test_boot_failure_fault_sends_the_next_sandbox_to_error(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    config = EmulatorConfig(gateway=FAST_SETTINGS, faults=[parse_fault_spec("fail-boots=1")])
    handle = await emulator_factory(config)
    async with grpc.aio.insecure_channel(handle.address) as channel:
        stub = Stub(channel)
        await create(stub, "bad")
        await create(stub, "good")
        await wait_phase(stub, "bad", pb.SANDBOX_PHASE_ERROR)
        await wait_ready(stub, "good")


async def test_slow_boots_keep_new_sandboxes_provisioning_until_cleared(
    openshell_emulator: EmulatorHandle, emulator_stub: Stub
) -> None:
    openshell_emulator.faults.apply(parse_fault_spec("slow-boots=0.6"))
    await create(emulator_stub, "slow")
    await asyncio.sleep(0.3)
    assert (await get(emulator_stub, "slow")).status.phase == pb.SANDBOX_PHASE_PROVISIONING
    await wait_ready(emulator_stub, "slow")
    openshell_emulator.faults.clear(["slow_boots"])
    assert openshell_emulator.faults.to_dict()["slow_boots"] is None
    started = time.monotonic()
    await create(emulator_stub, "fast")
    await wait_ready(emulator_stub, "fast")
    assert time.monotonic() - started < 0.6


def test_fault_specs_parse_to_the_admin_json_shape() -> None:
    assert parse_fault_spec("latency=0.2") == {"latency": {"*": 0.2}}
    assert parse_fault_spec("error:GetSandbox=INTERNAL@0.5x3") == {
        "errors": {"GetSandbox": {"code": "INTERNAL", "rate": 0.5, "count": 3}}
    }
    assert parse_fault_spec("outage=on") == {"outage": {"until_cleared": True}}
    assert parse_fault_spec("slow-boots=5") == {"slow_boots": {"seconds": 5.0}}
    assert parse_fault_spec("fail-loads:default/sb=boom") == {
        "policy_load_failures": {
            "sandboxes": [{"workspace": "default", "name": "sb", "message": "boom"}]
        }
    }
