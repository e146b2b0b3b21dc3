"""The client's service endpoint calls against the emulated gateway over a real socket."""

from __future__ import annotations

import pytest

from helmdeck_operator.emulator.server import EmulatorHandle
from helmdeck_operator.gateway.client import PAGE_SIZE, GatewayClient
from helmdeck_operator.gateway.errors import GatewayInvalid, GatewayNotFound, GatewayTransient
from helmdeck_operator.gateway.models import (
    ServiceAuthorization,
    ServiceEndpoint,
    ServiceExposure,
)
from tests.support.gateway import Calls

BEARER = ServiceAuthorization.BEARER_PASSTHROUGH


def url(sandbox: str, service: str = "") -> str:
    """The emulator's URL of an endpoint (default workspace, default base domain)."""
    host = "--".join(part for part in ("default", sandbox, service) if part)
    return f"http://{host}.sandbox.local/"


async def test_create_sends_the_exposures_and_only_its_answer_has_the_urls(
    client: GatewayClient,
) -> None:
    made = await client.create_sandbox(
        "sbx", exposures=(ServiceExposure("cdp", 9222), ServiceExposure("api", 8000, BEARER))
    )
    assert made.service_urls == {"cdp": url("sbx", "cdp"), "api": url("sbx", "api")}
    assert await client.list_services("sbx") == [
        ServiceEndpoint("cdp", 9222, ServiceAuthorization.STRIP, url("sbx", "cdp"), "sbx"),
        ServiceEndpoint("api", 8000, BEARER, url("sbx", "api"), "sbx"),
    ]
    got = await client.get_sandbox("sbx")
    assert got is not None
    assert got.service_urls == {}


async def test_a_refused_exposure_refuses_the_create(client: GatewayClient) -> None:
    with pytest.raises(GatewayInvalid, match="duplicate service exposure name: 'web'") as refused:
        await client.create_sandbox(
            "sbx", exposures=(ServiceExposure("web", 80), ServiceExposure("web", 81))
        )
    assert refused.value.attempts == 1
    assert await client.get_sandbox("sbx") is None


async def test_expose_is_an_upsert(client: GatewayClient) -> None:
    await client.create_sandbox("sbx")
    first = await client.expose_service("sbx", ServiceExposure("web", 8080))
    assert first == ServiceEndpoint(
        "web", 8080, ServiceAuthorization.STRIP, url("sbx", "web"), "sbx"
    )
    changed = await client.expose_service("sbx", ServiceExposure("web", 9090, BEARER))
    assert (changed.port, changed.authorization) == (9090, BEARER)
    assert await client.get_service("sbx", "web") == changed
    assert len(await client.list_services("sbx")) == 1


async def test_expose_refusals_are_permanent(client: GatewayClient) -> None:
    await client.create_sandbox("sbx")
    with pytest.raises(GatewayInvalid, match=r"target_port must be in 1\.\.=65535") as refused:
        await client.expose_service("sbx", ServiceExposure("web", 0))
    assert refused.value.attempts == 1
    with pytest.raises(GatewayNotFound, match="sandbox not found"):
        await client.expose_service("ghost", ServiceExposure("web", 8080))


async def test_get_service_is_none_when_absent(client: GatewayClient) -> None:
    await client.create_sandbox("sbx")
    assert await client.get_service("sbx", "web") is None
    assert await client.get_service("ghost", "web") is None


async def test_delete_service_says_whether_it_removed_one(client: GatewayClient) -> None:
    await client.create_sandbox("sbx", exposures=(ServiceExposure("web", 8080),))
    assert await client.delete_service("sbx", "web") is True
    assert await client.list_services("sbx") == []
    assert await client.delete_service("sbx", "web") is False
    assert await client.delete_service("ghost", "web") is False  # a gone sandbox has none


async def test_list_services_follows_every_page(
    client: GatewayClient, emulator: EmulatorHandle, calls: Calls
) -> None:
    await client.create_sandbox("sbx")
    total = PAGE_SIZE + 2
    for n in range(total):
        emulator.gateway.expose_service("", "sbx", f"s{n}", 1000 + n, 0)
    listed = await client.list_services("sbx")
    assert [(e.name, e.port) for e in listed] == [(f"s{n}", 1000 + n) for n in range(total)]
    pages = calls("ListServices")
    assert len(pages) == 2
    assert len({p["x_request_id"] for p in pages}) == 1  # one logical call
    with pytest.raises(GatewayNotFound):
        await client.list_services("ghost")


@pytest.mark.parametrize("rpc", ["ExposeService", "DeleteService"])
async def test_a_transient_fault_is_retried_with_one_request_id(
    client: GatewayClient, emulator: EmulatorHandle, calls: Calls, rpc: str
) -> None:
    await client.create_sandbox("sbx", exposures=(ServiceExposure("web", 8080),))
    emulator.faults.apply({"errors": {rpc: {"code": "UNAVAILABLE", "count": 1}}})
    if rpc == "ExposeService":
        made = await client.expose_service("sbx", ServiceExposure("web", 9090))
        assert made.port == 9090
    else:
        assert await client.delete_service("sbx", "web") is True
    attempts = calls(rpc)
    assert [a["code"] for a in attempts] == ["UNAVAILABLE", "OK"]
    assert len({a["x_request_id"] for a in attempts}) == 1


async def test_retries_of_a_service_call_are_bounded(
    client: GatewayClient, emulator: EmulatorHandle, calls: Calls
) -> None:
    emulator.faults.apply({"errors": {"GetService": {"code": "UNAVAILABLE"}}})
    with pytest.raises(GatewayTransient):
        await client.get_service("sbx", "web")
    assert len(calls("GetService")) == 3
