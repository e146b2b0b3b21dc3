"""Service endpoints of the emulated gateway (ExposeService, GetService, ListServices,
DeleteService, CreateSandbox `service_exposures`), one rule per test, over real gRPC."""

from __future__ import annotations

import grpc
import pytest
from openshell._proto import datamodel_pb2

from helmdeck_operator.emulator.auth import required_scope
from helmdeck_operator.emulator.server import EmulatorHandle
from tests.support.openshell_rpc import (
    WS,
    Stub,
    create,
    expose,
    get,
    list_services,
    pb,
    rpc_error,
    wait_gone,
    wait_phase,
    wait_ready,
)

Code = grpc.StatusCode
STRIP = pb.SERVICE_AUTHORIZATION_MODE_STRIP
BEARER = pb.SERVICE_AUTHORIZATION_MODE_BEARER_PASSTHROUGH


def exposure(name: str, port: int = 8080, mode: int = 0) -> pb.SandboxServiceExposure:
    return pb.SandboxServiceExposure(service=name, target_port=port, authorization_mode=mode)  # type: ignore[arg-type]


async def create_exposing(
    stub: Stub, name: str, *exposures: pb.SandboxServiceExposure
) -> pb.SandboxResponse:
    request = pb.CreateSandboxRequest(
        workspace_scope=WS, name=name, spec=pb.SandboxSpec(), service_exposures=exposures
    )
    response: pb.SandboxResponse = await stub.CreateSandbox(request)
    return response


async def names(stub: Stub, sandbox: str = "") -> list[str]:
    return [s.endpoint.name for s in (await list_services(stub, sandbox)).services]


async def refused(call: object, code: grpc.StatusCode = Code.INVALID_ARGUMENT) -> str:
    """The message of a call that must fail with `code`."""
    error = await rpc_error(call)  # type: ignore[arg-type]
    assert error.code() == code, error.details()
    return str(error.details())


# -- ExposeService ---------------------------------------------------------------------


async def test_expose_answers_the_stored_endpoint_and_its_url(emulator_stub: Stub) -> None:
    made = await create(emulator_stub, "sbx")
    request = pb.ExposeServiceRequest(
        workspace_scope=WS, sandbox="sbx", name="web", target_port=8080, domain=False
    )
    response = await emulator_stub.ExposeService(request)
    endpoint = response.endpoint
    assert response.url == "http://default--sbx--web.sandbox.local/"
    assert (endpoint.sandbox, endpoint.sandbox_id) == ("sbx", made.sandbox.metadata.id)
    assert (endpoint.name, endpoint.target_port) == ("web", 8080)
    assert endpoint.domain  # the request's `domain` is ignored: always domain-routed
    assert endpoint.authorization_mode == STRIP  # UNSPECIFIED is stored as STRIP
    assert endpoint.metadata.id
    assert endpoint.metadata.name == "sbx--web"
    assert endpoint.metadata.workspace == "default"
    assert endpoint.metadata.labels == {"sandbox": "sbx"}
    assert endpoint.metadata.HasField("created_time")


async def test_the_unnamed_endpoint_is_the_sandbox_host(emulator_stub: Stub) -> None:
    await create(emulator_stub, "sbx")
    response = await expose(emulator_stub, "sbx", "", 3000)
    assert response.url == "http://default--sbx.sandbox.local/"
    assert response.endpoint.metadata.name == "sbx"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a" * 20, "service must be at most 19 characters for sandbox service routing"),
        ("web--api", "service must not contain '--'"),
        ("Web", "service must be a lowercase DNS label"),
        ("-web", "service must be a lowercase DNS label"),
        ("web-", "service must be a lowercase DNS label"),
        ("we_b", "service must be a lowercase DNS label"),
    ],
)
async def test_service_names_follow_the_routing_rule(
    emulator_stub: Stub, name: str, message: str
) -> None:
    await create(emulator_stub, "sbx")
    assert await refused(expose(emulator_stub, "sbx", name, 8080)) == message
    assert await names(emulator_stub, "sbx") == []
    await expose(emulator_stub, "sbx", "a" * 19, 8080)  # the limit itself is fine
    await expose(emulator_stub, "sbx", "web-api-2", 8080)


@pytest.mark.parametrize("port", [0, 65536])
async def test_target_port_must_be_a_tcp_port(emulator_stub: Stub, port: int) -> None:
    await create(emulator_stub, "sbx")
    message = await refused(expose(emulator_stub, "sbx", "web", port))
    assert message == "target_port must be in 1..=65535"
    await expose(emulator_stub, "sbx", "low", 1)
    await expose(emulator_stub, "sbx", "high", 65535)


async def test_an_unknown_authorization_mode_is_refused_before_anything_is_stored(
    emulator_stub: Stub,
) -> None:
    await create(emulator_stub, "sbx")
    assert await refused(expose(emulator_stub, "sbx", "web", 8080, mode=3)) == (
        "authorization_mode is invalid"
    )
    assert await names(emulator_stub, "sbx") == []


async def test_expose_is_an_upsert_keeping_id_and_creation_time(emulator_stub: Stub) -> None:
    await create(emulator_stub, "sbx")
    first = (await expose(emulator_stub, "sbx", "web", 8080)).endpoint
    again = (await expose(emulator_stub, "sbx", "web", 8080, STRIP)).endpoint  # identical
    changed = (await expose(emulator_stub, "sbx", "web", 9090, BEARER)).endpoint
    assert (changed.target_port, changed.authorization_mode) == (9090, BEARER)
    assert first.metadata.id == again.metadata.id == changed.metadata.id
    assert first.metadata.created_time == changed.metadata.created_time
    listed = (await list_services(emulator_stub, "sbx")).services
    assert [(s.endpoint.target_port, s.endpoint.authorization_mode) for s in listed] == [
        (9090, BEARER)
    ]


async def test_two_names_may_share_a_port(emulator_stub: Stub) -> None:
    await create(emulator_stub, "sbx")
    await expose(emulator_stub, "sbx", "a", 8080)
    await expose(emulator_stub, "sbx", "b", 8080)
    assert await names(emulator_stub, "sbx") == ["a", "b"]


async def test_expose_needs_no_phase(emulator_stub: Stub) -> None:
    await create(emulator_stub, "sbx")  # PROVISIONING
    await expose(emulator_stub, "sbx", "early", 8080)
    await wait_ready(emulator_stub, "sbx")
    await emulator_stub.StopSandbox(pb.StopSandboxRequest(workspace_scope=WS, name="sbx"))
    await wait_phase(emulator_stub, "sbx", pb.SANDBOX_PHASE_STOPPED)
    await expose(emulator_stub, "sbx", "stopped", 8081)
    assert await names(emulator_stub, "sbx") == ["early", "stopped"]


async def test_a_missing_or_unnamed_sandbox_is_refused_by_every_call(emulator_stub: Stub) -> None:
    calls = {
        "ExposeService": lambda sbx: expose(emulator_stub, sbx, "web", 8080),
        "GetService": lambda sbx: emulator_stub.GetService(
            pb.GetServiceRequest(workspace_scope=WS, sandbox=sbx, name="web")
        ),
        "ListServices": lambda sbx: list_services(emulator_stub, sbx),
        "DeleteService": lambda sbx: emulator_stub.DeleteService(
            pb.DeleteServiceRequest(workspace_scope=WS, sandbox=sbx, name="web", allow_missing=True)
        ),
    }
    for method, call in calls.items():
        assert await refused(call("ghost"), Code.NOT_FOUND) == "sandbox not found", method
        if method != "ListServices":  # there an empty sandbox is no filter
            assert await refused(call("")) == "sandbox is required", method


def test_exposing_and_deleting_need_write_scope_get_and_list_read() -> None:
    assert required_scope("ExposeService") == required_scope("StopSandbox") == "sandbox:write"
    assert required_scope("DeleteService") == "sandbox:write"
    assert required_scope("GetService") == required_scope("ListServices") == "sandbox:read"


# -- GetService and DeleteService ------------------------------------------------------


async def test_get_answers_the_endpoint_or_not_found(emulator_stub: Stub) -> None:
    await create(emulator_stub, "sbx")
    await expose(emulator_stub, "sbx", "web", 8080, BEARER)
    request = pb.GetServiceRequest(workspace_scope=WS, sandbox="sbx", name="web")
    got = await emulator_stub.GetService(request)
    assert (got.endpoint.target_port, got.endpoint.authorization_mode) == (8080, BEARER)
    assert got.url == "http://default--sbx--web.sandbox.local/"
    request.name = "api"
    assert await refused(emulator_stub.GetService(request), Code.NOT_FOUND) == (
        "service endpoint not found"
    )
    request.name = "Bad"
    assert await refused(emulator_stub.GetService(request)) == (
        "service must be a lowercase DNS label"
    )


async def test_delete_outcomes(emulator_stub: Stub) -> None:
    await create(emulator_stub, "sbx")
    await expose(emulator_stub, "sbx", "web", 8080)
    request = pb.DeleteServiceRequest(workspace_scope=WS, sandbox="sbx", name="web")
    assert (await emulator_stub.DeleteService(request)).outcome == pb.DELETION_OUTCOME_COMPLETED
    assert await names(emulator_stub, "sbx") == []
    assert await refused(emulator_stub.DeleteService(request), Code.NOT_FOUND) == (
        "service endpoint not found"
    )
    request.allow_missing = True
    absent = await emulator_stub.DeleteService(request)
    assert absent.outcome == pb.DELETION_OUTCOME_ALREADY_ABSENT


# -- ListServices ----------------------------------------------------------------------


async def test_list_paginates_in_creation_order(emulator_stub: Stub) -> None:
    await create(emulator_stub, "sbx")
    for name in ("c", "a", "b"):
        await expose(emulator_stub, "sbx", name, 8080)
    seen, tokens, token = [], [], ""
    while True:
        page = await list_services(emulator_stub, "sbx", page_size=1, page_token=token)
        assert len(page.services) == 1
        seen.append(page.services[0].endpoint.name)
        token = page.next_page_token
        if not token:
            break
        tokens.append(token)
    assert seen == ["c", "a", "b"]
    assert len(tokens) == 2
    await create(emulator_stub, "other")
    message = await refused(list_services(emulator_stub, "other", page_token=tokens[0]))
    assert message == "page_token does not match this list request"
    assert await refused(list_services(emulator_stub, "sbx", page_size=-1)) == (
        "page_size must not be negative"
    )


async def test_list_without_a_sandbox_covers_the_workspace(emulator_stub: Stub) -> None:
    await create_exposing(emulator_stub, "one", exposure("web"))
    await create_exposing(emulator_stub, "two", exposure("api"))
    await expose(emulator_stub, "one", "extra", 9000)
    listed = (await list_services(emulator_stub)).services
    assert [(s.endpoint.sandbox, s.endpoint.name) for s in listed] == [
        ("one", "web"),
        ("two", "api"),
        ("one", "extra"),
    ]
    every = datamodel_pb2.WorkspaceSelector(all_workspaces=datamodel_pb2.AllWorkspaces())
    everywhere = await emulator_stub.ListServices(pb.ListServicesRequest(workspace_scope=every))
    assert len(everywhere.services) == 3
    filtered = pb.ListServicesRequest(workspace_scope=every, sandbox="one")
    assert await refused(emulator_stub.ListServices(filtered)) == (
        "sandbox filter is not supported with all_workspaces"
    )


async def test_the_list_filter_is_checked_as_a_routable_name(emulator_stub: Stub) -> None:
    assert await refused(list_services(emulator_stub, "a--b")) == "sandbox must not contain '--'"


# -- CreateSandbox service_exposures ---------------------------------------------------


async def test_create_exposures_become_endpoints_whose_urls_only_the_create_answers(
    emulator_stub: Stub,
) -> None:
    made = await create_exposing(
        emulator_stub, "sbx", exposure("web", 8080), exposure("api", 9000, BEARER), exposure("")
    )
    assert dict(made.service_urls) == {
        "web": "http://default--sbx--web.sandbox.local/",
        "api": "http://default--sbx--api.sandbox.local/",
        "": "http://default--sbx.sandbox.local/",
    }
    listed = (await list_services(emulator_stub, "sbx")).services
    assert [
        (s.endpoint.name, s.endpoint.target_port, s.endpoint.authorization_mode) for s in listed
    ] == [
        ("web", 8080, STRIP),
        ("api", 9000, BEARER),
        ("", 8080, STRIP),
    ]
    got = await emulator_stub.GetSandbox(pb.GetSandboxRequest(workspace_scope=WS, name="sbx"))
    assert dict(got.service_urls) == {}
    await wait_ready(emulator_stub, "sbx")
    stop = pb.StopSandboxRequest(workspace_scope=WS, name="sbx")
    assert dict((await emulator_stub.StopSandbox(stop)).service_urls) == {}


async def test_a_create_without_exposures_has_no_endpoints(emulator_stub: Stub) -> None:
    made = await create(emulator_stub, "bare")
    assert dict(made.service_urls) == {}
    assert await names(emulator_stub, "bare") == []


@pytest.mark.parametrize(
    ("exposures", "message"),
    [
        ([exposure("web"), exposure("web", 9090)], "duplicate service exposure name: 'web'"),
        ([exposure(""), exposure("")], "duplicate service exposure name: ''"),
        (
            [exposure(f"s{n}") for n in range(33)],
            "service_exposures must contain at most 32 entries",
        ),
        ([exposure("ok"), exposure("web", 0)], "target_port must be in 1..=65535"),
        ([exposure("web", mode=7)], "authorization_mode is invalid"),
    ],
)
async def test_a_refused_create_stores_nothing(
    emulator_stub: Stub, exposures: list[pb.SandboxServiceExposure], message: str
) -> None:
    assert await refused(create_exposing(emulator_stub, "sbx", *exposures)) == message
    assert await refused(get(emulator_stub, "sbx"), Code.NOT_FOUND)
    assert (await list_services(emulator_stub)).services == []


async def test_thirty_two_exposures_are_accepted(emulator_stub: Stub) -> None:
    made = await create_exposing(emulator_stub, "sbx", *(exposure(f"s{n}") for n in range(32)))
    assert len(made.service_urls) == 32


async def test_endpoints_survive_stop_and_start_and_go_with_the_sandbox(
    emulator_stub: Stub, openshell_emulator: EmulatorHandle
) -> None:
    await create_exposing(emulator_stub, "sbx", exposure("web"))
    await wait_ready(emulator_stub, "sbx")
    await emulator_stub.StopSandbox(pb.StopSandboxRequest(workspace_scope=WS, name="sbx"))
    await wait_phase(emulator_stub, "sbx", pb.SANDBOX_PHASE_STOPPED)
    assert await names(emulator_stub, "sbx") == ["web"]
    await emulator_stub.StartSandbox(pb.StartSandboxRequest(workspace_scope=WS, name="sbx"))
    await wait_ready(emulator_stub, "sbx")
    assert await names(emulator_stub, "sbx") == ["web"]
    await emulator_stub.DeleteSandbox(pb.DeleteSandboxRequest(workspace_scope=WS, name="sbx"))
    assert await names(emulator_stub, "sbx") == ["web"]  # DELETING: the record is still there
    await wait_gone(emulator_stub, "sbx")
    assert (await list_services(emulator_stub)).services == []
    await create(emulator_stub, "sbx")  # the same name again starts without endpoints
    assert await names(emulator_stub, "sbx") == []


# -- faults and snapshot ---------------------------------------------------------------


async def test_service_calls_can_be_faulted_by_method_name(
    emulator_stub: Stub, openshell_emulator: EmulatorHandle
) -> None:
    await create(emulator_stub, "sbx")
    openshell_emulator.faults.apply(
        {"errors": {"ExposeService": {"code": "UNAVAILABLE", "count": 1}}}
    )
    assert await refused(expose(emulator_stub, "sbx", "web", 8080), Code.UNAVAILABLE) == (
        "injected fault"
    )
    assert await names(emulator_stub, "sbx") == []  # a faulted call reaches no state
    await expose(emulator_stub, "sbx", "web", 8080)
    assert [r["code"] for r in openshell_emulator.requests if r["method"] == "ExposeService"] == [
        "UNAVAILABLE",
        "OK",
    ]


async def test_the_snapshot_lists_each_sandboxs_services(
    emulator_stub: Stub, openshell_emulator: EmulatorHandle
) -> None:
    await create_exposing(emulator_stub, "sbx", exposure("web", 8080, BEARER))
    await expose(emulator_stub, "sbx", "", 3000)
    (sandbox,) = openshell_emulator.snapshot()["sandboxes"]
    assert sandbox["services"] == [
        {
            "name": "web",
            "port": 8080,
            "authorization": "BEARER_PASSTHROUGH",
            "url": "http://default--sbx--web.sandbox.local/",
        },
        {
            "name": "",
            "port": 3000,
            "authorization": "STRIP",
            "url": "http://default--sbx.sandbox.local/",
        },
    ]
    assert "service_urls" not in sandbox
