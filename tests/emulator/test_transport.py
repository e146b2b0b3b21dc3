"""Transport behaviour: request ids, recorded metadata, TLS, mTLS and bearer tokens."""

from __future__ import annotations

import grpc
import pytest

from helmdeck_dev.emulator_fixtures import FAST_SETTINGS
from helmdeck_dev.pki import TlsMaterial
from helmdeck_operator.emulator.auth import READ_SCOPES, Principal
from helmdeck_operator.emulator.server import EmulatorConfig, EmulatorHandle, TlsFiles
from tests.support.openshell_rpc import Stub, create, pb, rpc_error

Code = grpc.StatusCode
TOKEN = "s3cret-test-token"
READER = "reader-test-token"


async def test_request_id_is_echoed_in_initial_metadata(emulator_stub: Stub) -> None:
    call = emulator_stub.Health(pb.HealthRequest(), metadata=(("x-request-id", "req-42"),))
    await call
    assert dict(await call.initial_metadata())["x-request-id"] == "req-42"


async def test_received_metadata_is_recorded_without_token_values(
    openshell_emulator: EmulatorHandle, emulator_stub: Stub
) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    metadata = (
        ("x-request-id", "req-7"),
        ("traceparent", traceparent),
        ("authorization", "Bearer do-not-log-me"),
    )
    await emulator_stub.GetCurrentUser(pb.GetCurrentUserRequest(), metadata=metadata)
    record = openshell_emulator.requests[-1]
    assert record == {
        "method": "GetCurrentUser",
        "x_request_id": "req-7",
        "traceparent": traceparent,
        "authorization": True,
        "client_cert_subject": None,
        "code": "OK",
    }
    assert "do-not-log-me" not in repr(openshell_emulator.snapshot())


async def bearer_emulator(emulator_factory) -> EmulatorHandle:  # type: ignore[no-untyped-def]
    tokens = {
        TOKEN: Principal(subject="operator"),
        READER: Principal(subject="viewer", scopes=READ_SCOPES),
    }
    handle: EmulatorHandle = await emulator_factory(
        EmulatorConfig(gateway=FAST_SETTINGS, tokens=tokens)
    )
    return handle


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def test_bearer_token_is_required_except_for_health(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    handle = await bearer_emulator(emulator_factory)
    async with grpc.aio.insecure_channel(handle.address) as channel:
        stub = Stub(channel)
        health = await stub.Health(pb.HealthRequest())
        assert health.status == pb.SERVICE_STATUS_HEALTHY
        missing = await rpc_error(stub.GetCurrentUser(pb.GetCurrentUserRequest()))
        assert missing.code() == Code.UNAUTHENTICATED
        wrong = await rpc_error(
            stub.GetCurrentUser(pb.GetCurrentUserRequest(), metadata=bearer("nope"))
        )
        assert wrong.code() == Code.UNAUTHENTICATED
        user = await stub.GetCurrentUser(pb.GetCurrentUserRequest(), metadata=bearer(TOKEN))
        assert user.subject == "operator"
        assert "sandbox:write" in user.scopes


async def test_token_without_write_scope_is_permission_denied(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    handle = await bearer_emulator(emulator_factory)
    async with grpc.aio.insecure_channel(handle.address) as channel:
        stub = Stub(channel)
        request = pb.CreateSandboxRequest(name="ro")
        denied = await rpc_error(stub.CreateSandbox(request, metadata=bearer(READER)))
        assert denied.code() == Code.PERMISSION_DENIED
        listing = await stub.ListSandboxes(pb.ListSandboxesRequest(), metadata=bearer(READER))
        assert list(listing.sandboxes) == []


async def test_services_are_read_with_read_scope_and_changed_with_write_scope(
    emulator_factory,  # type: ignore[no-untyped-def]
) -> None:
    handle = await bearer_emulator(emulator_factory)
    async with grpc.aio.insecure_channel(handle.address) as channel:
        stub = Stub(channel)
        create = pb.CreateSandboxRequest(name="svc", spec=pb.SandboxSpec())
        await stub.CreateSandbox(create, metadata=bearer(TOKEN))
        exposing = pb.ExposeServiceRequest(sandbox="svc", name="web", target_port=8080)
        deleting = pb.DeleteServiceRequest(sandbox="svc", name="web")
        for call in (
            stub.ExposeService(exposing, metadata=bearer(READER)),
            stub.DeleteService(deleting, metadata=bearer(READER)),
        ):
            assert (await rpc_error(call)).code() == Code.PERMISSION_DENIED
        await stub.ExposeService(exposing, metadata=bearer(TOKEN))
        listing = pb.ListServicesRequest(sandbox="svc")
        assert len((await stub.ListServices(listing, metadata=bearer(READER))).services) == 1
        getting = pb.GetServiceRequest(sandbox="svc", name="web")
        assert (await stub.GetService(getting, metadata=bearer(READER))).endpoint.name == "web"
        await stub.DeleteService(deleting, metadata=bearer(TOKEN))


async def test_tls_server_is_reachable_with_the_ca(
    emulator_factory,  # type: ignore[no-untyped-def]
    emulator_tls: TlsMaterial,
) -> None:
    tls = TlsFiles(emulator_tls.server_cert, emulator_tls.server_key)
    handle = await emulator_factory(EmulatorConfig(gateway=FAST_SETTINGS, tls=tls))
    creds = grpc.ssl_channel_credentials(root_certificates=emulator_tls.ca_cert.read_bytes())
    async with grpc.aio.secure_channel(f"localhost:{handle.port}", creds) as channel:
        assert (await Stub(channel).Health(pb.HealthRequest())).version
    async with grpc.aio.insecure_channel(handle.address) as plain:
        error = await rpc_error(Stub(plain).Health(pb.HealthRequest(), timeout=2))
        assert error.code() == Code.UNAVAILABLE


async def test_mtls_requires_a_client_certificate(
    emulator_factory,  # type: ignore[no-untyped-def]
    emulator_tls: TlsMaterial,
) -> None:
    tls = TlsFiles(emulator_tls.server_cert, emulator_tls.server_key, emulator_tls.ca_cert)
    handle = await emulator_factory(EmulatorConfig(gateway=FAST_SETTINGS, tls=tls))
    ca = emulator_tls.ca_cert.read_bytes()
    target = f"localhost:{handle.port}"
    anonymous = grpc.ssl_channel_credentials(root_certificates=ca)
    async with grpc.aio.secure_channel(target, anonymous) as channel:
        error = await rpc_error(Stub(channel).Health(pb.HealthRequest(), timeout=2))
        assert error.code() == Code.UNAVAILABLE
    client = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=emulator_tls.client_key.read_bytes(),
        certificate_chain=emulator_tls.client_cert.read_bytes(),
    )
    async with grpc.aio.secure_channel(target, client) as channel:
        stub = Stub(channel)
        user = await stub.GetCurrentUser(pb.GetCurrentUserRequest())
        assert user.subject == "helmdeck-operator"
        await create(stub, "mtls")
    assert handle.requests[-1]["client_cert_subject"] == "helmdeck-operator"


async def test_unimplemented_rpcs_say_so(emulator_stub: Stub) -> None:
    error = await rpc_error(emulator_stub.ListProviders(pb.ListProvidersRequest()))
    assert error.code() == Code.UNIMPLEMENTED


@pytest.mark.parametrize("method", ["GetGatewayInfo"])
async def test_gateway_info_reports_version_and_driver(emulator_stub: Stub, method: str) -> None:
    info = await getattr(emulator_stub, method)(pb.GetGatewayInfoRequest())
    assert info.gateway_version
    assert info.compute_drivers[0].name == "kubernetes"
