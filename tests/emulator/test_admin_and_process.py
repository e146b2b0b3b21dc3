"""The admin HTTP side door and the emulator as a subprocess (the CLI path)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from helmdeck_dev.emulator_process import EmulatorProcess
from helmdeck_operator.emulator.server import EmulatorHandle
from tests.support.openshell_rpc import WS, Stub, create, get, pb, rpc_error, wait_phase, wait_ready
from tests.support.policies import base_policy

Code = grpc.StatusCode


def _http(url: str, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


async def http(url: str, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
    return await asyncio.to_thread(_http, url, method, body)


async def test_admin_snapshot_faults_logs_vanish_and_error(
    openshell_emulator: EmulatorHandle, emulator_stub: Stub
) -> None:
    admin = openshell_emulator.admin_url
    assert admin is not None
    await create(emulator_stub, "adm")
    await create(emulator_stub, "adm2")
    await wait_ready(emulator_stub, "adm")
    snapshot = await http(f"{admin}/snapshot")
    assert [s["name"] for s in snapshot["sandboxes"]] == ["adm", "adm2"]
    assert snapshot["requests"][0]["method"] == "CreateSandbox"

    await http(f"{admin}/faults", "POST", {"errors": {"GetSandbox": {"code": "INTERNAL"}}})
    assert (await rpc_error(get(emulator_stub, "adm"))).code() == Code.INTERNAL
    await http(f"{admin}/faults", "DELETE")
    await get(emulator_stub, "adm")

    lines = {"lines": [{"message": "hello", "level": "WARN"}, {"message": "bye"}]}
    assert (await http(f"{admin}/sandboxes/default/adm/logs", "POST", lines))["appended"] == 2
    logs = await emulator_stub.GetSandboxLogs(
        pb.GetSandboxLogsRequest(workspace_scope=WS, sandbox="adm", sources=["sandbox"])
    )
    assert [line.message for line in logs.logs][-2:] == ["hello", "bye"]

    await http(f"{admin}/sandboxes/default/adm/error", "POST", {"message": "oom"})
    assert (await get(emulator_stub, "adm")).status.phase == pb.SANDBOX_PHASE_ERROR
    await http(f"{admin}/sandboxes/default/adm2/vanish", "POST", {})
    assert (await rpc_error(get(emulator_stub, "adm2"))).code() == Code.NOT_FOUND


async def test_subprocess_emulator_serves_and_takes_faults(
    emulator_process_factory: Callable[[Sequence[str]], EmulatorProcess],
) -> None:
    proc = await asyncio.to_thread(
        emulator_process_factory, ["--ready-delay", "0.05", "--fault", "fail-loads=1"]
    )
    async with grpc.aio.insecure_channel(proc.address) as channel:
        stub = Stub(channel)

        await create(stub, "sub", policy=base_policy())
        await wait_ready(stub, "sub")
        snapshot = await asyncio.to_thread(proc.snapshot)
        assert snapshot["sandboxes"][0]["revisions"][0]["status"] == "FAILED"
        await asyncio.to_thread(proc.set_faults, {"outage": {"until_cleared": True}})
        assert (await rpc_error(get(stub, "sub"))).code() == Code.UNAVAILABLE
        await asyncio.to_thread(proc.clear_faults)
        await asyncio.to_thread(proc.error, "default", "sub", "boom")
        await wait_phase(stub, "sub", pb.SANDBOX_PHASE_ERROR)
