"""Calling the OpenShell gRPC API in the emulator's tests: request builders, polling, errors.

Every emulator test goes through real gRPC over loopback with the official `OpenShellStub`;
its fixtures come from the dev kit's plugin (helmdeck_dev.emulator_fixtures), and the
policies it sends from tests.support.policies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2
from openshell._proto import datamodel_pb2, openshell_pb2, openshell_pb2_grpc, sandbox_pb2

__all__ = [
    "WS",
    "Stub",
    "bad_request",
    "create",
    "eventually",
    "expose",
    "get",
    "list_services",
    "pb",
    "policy_status",
    "rpc_error",
    "update_policy",
    "wait_gone",
    "wait_phase",
    "wait_ready",
]

T = TypeVar("T")
pb = openshell_pb2
Stub = openshell_pb2_grpc.OpenShellStub
WS = datamodel_pb2.WorkspaceSelector(workspace="default")


async def create(
    stub: Stub,
    name: str,
    policy: sandbox_pb2.SandboxPolicy | None = None,
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> openshell_pb2.SandboxResponse:
    sandbox_spec = pb.SandboxSpec(**spec)
    if policy is not None:
        sandbox_spec.policy.CopyFrom(policy)
    request = pb.CreateSandboxRequest(
        workspace_scope=WS, name=name, spec=sandbox_spec, labels=labels or {}
    )
    response: openshell_pb2.SandboxResponse = await stub.CreateSandbox(request)
    return response


async def get(stub: Stub, name: str) -> openshell_pb2.Sandbox:
    response = await stub.GetSandbox(pb.GetSandboxRequest(workspace_scope=WS, name=name))
    sandbox: openshell_pb2.Sandbox = response.sandbox
    return sandbox


async def expose(
    stub: Stub, sandbox: str, name: str, port: int, mode: int = 0
) -> openshell_pb2.ServiceEndpointResponse:
    request = pb.ExposeServiceRequest(
        workspace_scope=WS,
        sandbox=sandbox,
        name=name,
        target_port=port,
        authorization_mode=mode,  # type: ignore[arg-type]  # numbers the stubs do not name too
    )
    response: openshell_pb2.ServiceEndpointResponse = await stub.ExposeService(request)
    return response


async def list_services(
    stub: Stub, sandbox: str = "", page_size: int = 0, page_token: str = ""
) -> openshell_pb2.ListServicesResponse:
    request = pb.ListServicesRequest(
        workspace_scope=WS, sandbox=sandbox, page_size=page_size, page_token=page_token
    )
    response: openshell_pb2.ListServicesResponse = await stub.ListServices(request)
    return response


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], within: float = 3.0
) -> T:
    """Poll `probe` until `accept` holds for its result (the emulator's delays are ~50 ms)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await probe()
        if accept(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s; last value: {value}")
        await asyncio.sleep(0.01)


async def wait_phase(stub: Stub, name: str, phase: int) -> openshell_pb2.Sandbox:
    return await eventually(lambda: get(stub, name), lambda s: s.status.phase == phase)


async def wait_ready(stub: Stub, name: str) -> openshell_pb2.Sandbox:
    return await wait_phase(stub, name, pb.SANDBOX_PHASE_READY)


async def wait_gone(stub: Stub, name: str) -> None:
    """Until the gateway has removed the sandbox's record (GetSandbox: NOT_FOUND)."""

    async def probe() -> grpc.StatusCode:
        try:
            await get(stub, name)
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    await eventually(probe, lambda code: code == grpc.StatusCode.NOT_FOUND)


async def update_policy(
    stub: Stub, name: str, policy: sandbox_pb2.SandboxPolicy, **annotations: str
) -> openshell_pb2.UpdateConfigResponse:
    request = pb.UpdateConfigRequest(
        workspace_scope=WS, sandbox=name, policy=policy, annotations=annotations
    )
    response: openshell_pb2.UpdateConfigResponse = await stub.UpdateConfig(request)
    return response


async def policy_status(
    stub: Stub, name: str, version: int = 0
) -> openshell_pb2.GetSandboxPolicyStatusResponse:
    request = pb.GetSandboxPolicyStatusRequest(workspace_scope=WS, sandbox=name, version=version)
    response: openshell_pb2.GetSandboxPolicyStatusResponse = await stub.GetSandboxPolicyStatus(
        request
    )
    return response


async def rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """Await a call that must fail, returning its error."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError("the call succeeded but was expected to fail")


def bad_request(error: grpc.aio.AioRpcError) -> error_details_pb2.BadRequest:
    """The BadRequest detail from the `grpc-status-details-bin` trailer."""
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(raw)
    assert status.code == error.code().value[0]
    detail = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(detail)
    return detail
