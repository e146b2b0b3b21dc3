"""The client's provider calls (attach, detach) against the emulated gateway over a real
socket: the answers, the refusals, and which failures are retried."""

from __future__ import annotations

import pytest

from helmdeck_operator.emulator.server import EmulatorHandle
from helmdeck_operator.gateway.client import GatewayClient
from helmdeck_operator.gateway.errors import (
    GatewayNotFound,
    GatewayPreconditionFailed,
    GatewayTransient,
)
from helmdeck_operator.gateway.models import SandboxSpec
from tests.support.gateway import Calls


async def test_attach_and_detach_answer_the_sandbox_as_written(client: GatewayClient) -> None:
    made = await client.create_sandbox("sbx", SandboxSpec(providers=("github",)))
    assert made.providers == ("github",)
    attached = await client.attach_provider(
        "sbx", "gitlab", expected_resource_version=made.resource_version
    )
    assert (attached.id, attached.providers) == (made.id, ("github", "gitlab"))
    assert attached.resource_version > made.resource_version
    detached = await client.detach_provider(
        "sbx", "github", expected_resource_version=attached.resource_version
    )
    assert detached.providers == ("gitlab",)
    listed = await client.get_sandbox("sbx")
    assert listed is not None
    assert listed.providers == ("gitlab",)


async def test_repeating_either_call_changes_no_provider(client: GatewayClient) -> None:
    await client.create_sandbox("sbx")
    await client.attach_provider("sbx", "github")
    assert (await client.attach_provider("sbx", "github")).providers == ("github",)
    await client.detach_provider("sbx", "github")
    assert (await client.detach_provider("sbx", "github")).providers == ()


async def test_refusals_are_not_retried(client: GatewayClient, calls: Calls) -> None:
    await client.create_sandbox("sbx")
    with pytest.raises(GatewayPreconditionFailed, match="provider 'bogus' not found") as refused:
        await client.attach_provider("sbx", "bogus")
    assert refused.value.attempts == 1
    with pytest.raises(GatewayNotFound, match="sandbox not found"):
        await client.detach_provider("ghost", "github")
    assert len(calls("AttachSandboxProvider")) == 1


@pytest.mark.parametrize("rpc", ["AttachSandboxProvider", "DetachSandboxProvider"])
async def test_a_stale_compare_and_set_is_raised_at_once(
    client: GatewayClient, calls: Calls, rpc: str
) -> None:
    made = await client.create_sandbox("sbx")
    await client.attach_provider("sbx", "github")  # the sandbox moves on
    call = client.attach_provider if rpc == "AttachSandboxProvider" else client.detach_provider
    with pytest.raises(GatewayTransient, match="concurrent modification") as stale:
        await call("sbx", "gitlab", expected_resource_version=made.resource_version)
    # The same request can only fail the same way: the caller reads again instead.
    assert (stale.value.code, stale.value.attempts) == ("ABORTED", 1)
    codes = [a["code"] for a in calls(rpc)]
    assert (codes[-1], codes.count("ABORTED")) == ("ABORTED", 1)


async def test_aborted_without_a_compare_and_set_is_retried(
    client: GatewayClient, emulator: EmulatorHandle, calls: Calls
) -> None:
    await client.create_sandbox("sbx")
    emulator.faults.apply({"errors": {"AttachSandboxProvider": {"code": "ABORTED", "count": 1}}})
    assert (await client.attach_provider("sbx", "github")).providers == ("github",)
    attempts = calls("AttachSandboxProvider")
    assert [a["code"] for a in attempts] == ["ABORTED", "OK"]
    assert len({a["x_request_id"] for a in attempts}) == 1
