"""Providers on a live sandbox (AttachSandboxProvider, DetachSandboxProvider,
GetSandboxProviderStatus) as the gateway's grpc/sandbox.rs and provider_readiness.rs
answer them, one rule per test, over real gRPC (the 32-provider limit on the state machine:
it needs 33 known providers)."""

from __future__ import annotations

import uuid

import grpc
import pytest
from openshell._proto import openshell_pb2

from helmdeck_operator.emulator.auth import required_scope
from helmdeck_operator.emulator.clock import ManualClock
from helmdeck_operator.emulator.errors import Code, GatewayError
from helmdeck_operator.emulator.state import Gateway, GatewaySettings
from tests.support.openshell_rpc import WS, Stub, create, get, pb, rpc_error, wait_ready
from tests.support.policies import base_policy

StatusCode = grpc.StatusCode


async def attach(
    stub: Stub, sandbox: str, provider: str, expected: int = 0
) -> openshell_pb2.AttachSandboxProviderResponse:
    request = pb.AttachSandboxProviderRequest(
        workspace_scope=WS, sandbox=sandbox, provider=provider, expected_resource_version=expected
    )
    response: openshell_pb2.AttachSandboxProviderResponse = await stub.AttachSandboxProvider(
        request
    )
    return response


async def detach(
    stub: Stub, sandbox: str, provider: str, expected: int = 0
) -> openshell_pb2.DetachSandboxProviderResponse:
    request = pb.DetachSandboxProviderRequest(
        workspace_scope=WS, sandbox=sandbox, provider=provider, expected_resource_version=expected
    )
    response: openshell_pb2.DetachSandboxProviderResponse = await stub.DetachSandboxProvider(
        request
    )
    return response


async def status(
    stub: Stub, sandbox: str, provider: str = "", receipt_id: str = ""
) -> openshell_pb2.ProviderReadinessStatus:
    request = pb.GetSandboxProviderStatusRequest(
        workspace_scope=WS, sandbox=sandbox, provider=provider, receipt_id=receipt_id
    )
    response = await stub.GetSandboxProviderStatus(request)
    answer: openshell_pb2.ProviderReadinessStatus = response.status
    return answer


async def refused(call: object, code: grpc.StatusCode) -> str:
    error = await rpc_error(call)  # type: ignore[arg-type]
    assert error.code() == code, error.details()
    return str(error.details())


# -- AttachSandboxProvider -------------------------------------------------------------------


async def test_attach_adds_the_provider_and_answers_the_sandbox_and_a_receipt(
    emulator_stub: Stub,
) -> None:
    made = (await create(emulator_stub, "sbx", providers=["github"])).sandbox
    response = await attach(emulator_stub, "sbx", "gitlab", made.metadata.resource_version)
    assert response.attached
    assert list(response.sandbox.spec.providers) == ["github", "gitlab"]
    assert response.sandbox.metadata.resource_version == made.metadata.resource_version + 1
    receipt = response.receipt
    assert receipt.kind == pb.PROVIDER_MUTATION_KIND_ATTACH
    assert (receipt.provider, receipt.workspace) == ("gitlab", "default")
    assert receipt.desired.sandbox_id == made.metadata.id
    assert receipt.desired.attachment_epoch == response.sandbox.spec.provider_attachment_epoch
    assert receipt.desired.attachment_epoch == receipt.mutation_id
    assert receipt.desired.provider_id
    assert receipt.desired.provider_resource_version == 1
    assert receipt.HasField("persisted_time")
    assert list((await get(emulator_stub, "sbx")).spec.providers) == ["github", "gitlab"]


async def test_attaching_one_attached_changes_nothing_but_the_resource_version(
    emulator_stub: Stub,
) -> None:
    await create(emulator_stub, "sbx", providers=["github"])
    first = await attach(emulator_stub, "sbx", "gitlab")
    again = await attach(emulator_stub, "sbx", "gitlab")
    assert not again.attached
    assert list(again.sandbox.spec.providers) == ["github", "gitlab"]
    # The gateway writes the record on every call: its version moves, its epoch does not.
    assert again.sandbox.metadata.resource_version == first.sandbox.metadata.resource_version + 1
    epoch = first.sandbox.spec.provider_attachment_epoch
    assert again.sandbox.spec.provider_attachment_epoch == epoch


async def test_attach_works_in_any_phase(emulator_stub: Stub) -> None:
    made = await create(emulator_stub, "sbx")
    assert made.sandbox.status.phase == pb.SANDBOX_PHASE_PROVISIONING
    assert (await attach(emulator_stub, "sbx", "github")).attached


async def test_attach_of_an_unknown_provider_is_a_failed_precondition(
    emulator_stub: Stub,
) -> None:
    made = (await create(emulator_stub, "sbx")).sandbox
    message = await refused(attach(emulator_stub, "sbx", "bogus"), StatusCode.FAILED_PRECONDITION)
    assert message == "provider 'bogus' not found"
    after = await get(emulator_stub, "sbx")
    assert list(after.spec.providers) == []
    assert after.metadata.resource_version == made.metadata.resource_version  # nothing written


async def test_attach_to_an_unknown_sandbox_is_not_found(emulator_stub: Stub) -> None:
    message = await refused(attach(emulator_stub, "nope", "github"), StatusCode.NOT_FOUND)
    assert message == "sandbox not found"


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        ("", "provider_name is required"),
        ("p" * 254, "provider_name exceeds maximum length (254 > 253)"),
    ],
)
async def test_attach_and_detach_check_the_provider_name(
    emulator_stub: Stub, provider: str, message: str
) -> None:
    await create(emulator_stub, "sbx")
    for call in (attach, detach):
        assert await refused(call(emulator_stub, "sbx", provider), StatusCode.INVALID_ARGUMENT) == (
            message
        )


async def test_a_stale_expected_resource_version_is_aborted(emulator_stub: Stub) -> None:
    made = (await create(emulator_stub, "sbx")).sandbox
    version = made.metadata.resource_version
    await attach(emulator_stub, "sbx", "github", version)
    for call in (attach, detach):
        message = await refused(call(emulator_stub, "sbx", "gitlab", version), StatusCode.ABORTED)
        assert message == (
            f"{call.__name__} sandbox provider failed due to concurrent modification "
            f"(current resource_version: {version + 1})"
        )
    assert list((await get(emulator_stub, "sbx")).spec.providers) == ["github"]


async def test_attach_and_detach_need_sandbox_write() -> None:
    assert required_scope("AttachSandboxProvider") == "sandbox:write"
    assert required_scope("DetachSandboxProvider") == "sandbox:write"
    assert required_scope("GetSandboxProviderStatus") == "sandbox:read"


def test_at_most_32_providers_are_attached() -> None:
    names = [f"p{i:02d}" for i in range(33)]
    gateway = Gateway(GatewaySettings(providers=frozenset(names)), ManualClock())
    gateway.create("", "sbx", pb.SandboxSpec(providers=names[:32]))
    with pytest.raises(GatewayError) as refusal:
        gateway.attach_provider("", "sbx", names[32], 0)
    assert (refusal.value.code, refusal.value.message) == (
        Code.INVALID_ARGUMENT,
        "providers list exceeds maximum (32)",
    )
    # Attaching one of the 32 again is no new provider: no limit applies.
    _, attached, _ = gateway.attach_provider("", "sbx", names[0], 0)
    assert not attached


# -- DetachSandboxProvider -------------------------------------------------------------------


async def test_detach_removes_the_provider(emulator_stub: Stub) -> None:
    made = (await create(emulator_stub, "sbx", providers=["github", "gitlab"])).sandbox
    response = await detach(emulator_stub, "sbx", "github", made.metadata.resource_version)
    assert response.detached
    assert list(response.sandbox.spec.providers) == ["gitlab"]
    assert response.receipt.kind == pb.PROVIDER_MUTATION_KIND_DETACH
    assert response.receipt.desired.provider_id == ""  # nothing attached under that name
    assert response.receipt.desired.attachment_epoch == response.receipt.mutation_id


async def test_detaching_one_not_attached_or_unknown_is_no_error(emulator_stub: Stub) -> None:
    await create(emulator_stub, "sbx", providers=["github"])
    for provider in ("gitlab", "bogus"):
        response = await detach(emulator_stub, "sbx", provider)
        assert not response.detached
        assert list(response.sandbox.spec.providers) == ["github"]


async def test_detach_from_an_unknown_sandbox_is_not_found(emulator_stub: Stub) -> None:
    assert await refused(detach(emulator_stub, "nope", "github"), StatusCode.NOT_FOUND) == (
        "sandbox not found"
    )


# -- GetSandboxProviderStatus ----------------------------------------------------------------


async def test_an_attach_receipt_is_ready_once_the_sandbox_is(emulator_stub: Stub) -> None:
    await create(emulator_stub, "sbx", policy=base_policy())
    receipt = (await attach(emulator_stub, "sbx", "github")).receipt
    pending = await status(emulator_stub, "sbx", receipt_id=receipt.receipt_id)
    assert (pending.state, pending.reason) == (
        pb.PROVIDER_READINESS_STATE_PENDING,
        pb.PROVIDER_READINESS_REASON_SUPERVISOR_DISCONNECTED,
    )
    await wait_ready(emulator_stub, "sbx")
    ready = await status(emulator_stub, "sbx", "github", receipt.receipt_id)
    assert (ready.state, ready.reason) == (
        pb.PROVIDER_READINESS_STATE_READY,
        pb.PROVIDER_READINESS_REASON_UNSPECIFIED,
    )
    assert ready.receipt == receipt
    assert ready.HasField("evaluated_time")


async def test_a_later_change_supersedes_a_receipt_and_a_detach_is_revoked(
    emulator_stub: Stub,
) -> None:
    await create(emulator_stub, "sbx", policy=base_policy())
    await wait_ready(emulator_stub, "sbx")
    attached = (await attach(emulator_stub, "sbx", "github")).receipt
    detached = (await detach(emulator_stub, "sbx", "github")).receipt
    old = await status(emulator_stub, "sbx", receipt_id=attached.receipt_id)
    assert (old.state, old.reason) == (
        pb.PROVIDER_READINESS_STATE_SUPERSEDED,
        pb.PROVIDER_READINESS_REASON_DESIRED_STATE_CHANGED,
    )
    new = await status(emulator_stub, "sbx", receipt_id=detached.receipt_id)
    assert new.state == pb.PROVIDER_READINESS_STATE_REVOKED


async def test_status_without_a_receipt_observes_the_present_attachment(
    emulator_stub: Stub,
) -> None:
    await create(emulator_stub, "sbx", policy=base_policy(), providers=["github"])
    await wait_ready(emulator_stub, "sbx")
    observed = await status(emulator_stub, "sbx", "github")
    assert observed.receipt.kind == pb.PROVIDER_MUTATION_KIND_OBSERVE
    assert observed.state == pb.PROVIDER_READINESS_STATE_READY
    # The observation is itself a receipt, found again by its id.
    again = await status(emulator_stub, "sbx", receipt_id=observed.receipt.receipt_id)
    assert again.receipt == observed.receipt


async def test_a_sandbox_without_a_gateway_policy_fails_its_providers(
    emulator_stub: Stub,
) -> None:
    await create(emulator_stub, "sbx", providers=["github"])
    await wait_ready(emulator_stub, "sbx")
    observed = await status(emulator_stub, "sbx", "github")
    assert (observed.state, observed.reason) == (
        pb.PROVIDER_READINESS_STATE_FAILED,
        pb.PROVIDER_READINESS_REASON_LOCAL_POLICY,
    )


@pytest.mark.parametrize(
    ("provider", "receipt_id", "code", "message"),
    [
        ("", "", StatusCode.INVALID_ARGUMENT, "provider or receipt_id is required"),
        ("bogus", "", StatusCode.NOT_FOUND, "provider not found"),
        ("", "not-a-uuid", StatusCode.INVALID_ARGUMENT, "invalid readiness instance identity"),
        ("", str(uuid.uuid4()), StatusCode.NOT_FOUND, "provider receipt not found"),
    ],
)
async def test_status_refusals(
    emulator_stub: Stub, provider: str, receipt_id: str, code: grpc.StatusCode, message: str
) -> None:
    await create(emulator_stub, "sbx")
    assert await refused(status(emulator_stub, "sbx", provider, receipt_id), code) == message


async def test_a_receipt_is_found_only_under_its_own_provider(emulator_stub: Stub) -> None:
    await create(emulator_stub, "sbx")
    receipt = (await attach(emulator_stub, "sbx", "github")).receipt
    call = status(emulator_stub, "sbx", "gitlab", receipt.receipt_id)
    assert await refused(call, StatusCode.NOT_FOUND) == "provider receipt not found"
