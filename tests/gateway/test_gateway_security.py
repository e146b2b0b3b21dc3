"""TLS, mTLS, bearer and OIDC against the emulator, and no secret in any log or error."""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from helmdeck_operator.emulator.auth import READ_SCOPES, Principal
from helmdeck_operator.emulator.server import EmulatorHandle, TlsFiles
from helmdeck_operator.gateway.client import GatewayClient
from helmdeck_operator.gateway.config import GatewayConfig
from helmdeck_operator.gateway.errors import (
    GatewayCredentialsError,
    GatewayError,
    GatewayPermissionDenied,
    GatewayTransient,
    GatewayUnauthenticated,
)
from tests.support.gateway import ConfigFactory, EmulatorFactory, rotate

TOKEN = "tok-3f9c2a7d1e-never-log-me"
READER_TOKEN = "tok-reader-5b8e0c-never-log-me"
SECRETS = (TOKEN, READER_TOKEN)
PRINCIPALS = {
    TOKEN: Principal(subject="helmdeck-operator"),
    READER_TOKEN: Principal(subject="auditor", scopes=READ_SCOPES),
}


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
async def tls_emulator(start_emu: EmulatorFactory, pki: Any) -> EmulatorHandle:
    tls = TlsFiles(cert=pki.server_cert, key=pki.server_key)
    return await start_emu(host="127.0.0.1", tls=tls, tokens=PRINCIPALS)


@pytest.fixture
def secure_config(tls_emulator: EmulatorHandle, pki: Any, token_file: Path) -> ConfigFactory:
    def make(**fields: Any) -> GatewayConfig:
        base: dict[str, Any] = {
            "name": "secure",
            "endpoint": tls_emulator.address,
            "tls": {"ca_file": str(pki.ca)},
            "auth": {"type": "bearer", "token_file": str(token_file)},
            "deadline_seconds": 2.0,
            "retry": {"max_attempts": 3, "initial_backoff": 0.01, "max_backoff": 0.05},
        }
        base.update(fields)
        return GatewayConfig.model_validate(base)

    return make


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


async def test_tls_with_bearer_token(
    secure_config: ConfigFactory, tls_emulator: EmulatorHandle
) -> None:
    async with GatewayClient(secure_config()) as client:
        who = await client.whoami()
        await client.create_sandbox("secure-1")
    assert who.subject == "helmdeck-operator"
    assert all(r["authorization"] for r in tls_emulator.requests)


async def test_server_name_override(
    secure_config: ConfigFactory, tls_emulator: EmulatorHandle, pki: Any
) -> None:
    config = secure_config(
        endpoint=tls_emulator.address,  # 127.0.0.1, verified as the name below instead
        tls={"ca_file": str(pki.ca), "server_name": "localhost"},
    )
    async with GatewayClient(config) as client:
        assert (await client.health()).is_healthy


async def test_an_untrusted_server_is_refused(secure_config: ConfigFactory, pki: Any) -> None:
    config = secure_config(tls={"ca_file": str(pki.stranger_ca)}, deadline_seconds=0.5)
    async with GatewayClient(config) as client:
        with pytest.raises(GatewayTransient, match=r"UNAVAILABLE|DEADLINE"):
            await client.health()


async def test_missing_token_is_unauthenticated_after_one_reread(
    secure_config: ConfigFactory, tls_emulator: EmulatorHandle, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-a-valid-token")
    config = secure_config(auth={"type": "bearer", "token_file": str(wrong)})
    async with GatewayClient(config) as client:
        with pytest.raises(GatewayUnauthenticated) as refused:
            await client.list_sandboxes()
    assert refused.value.attempts == 2
    assert refused.value.reason == "GatewayUnauthenticated"
    assert len([r for r in tls_emulator.requests if r["method"] == "ListSandboxes"]) == 2


async def test_rotated_token_is_picked_up_without_restart(
    secure_config: ConfigFactory, tls_emulator: EmulatorHandle, token_file: Path
) -> None:
    async with GatewayClient(secure_config()) as client:
        assert (await client.whoami()).subject == "helmdeck-operator"
        rotate(token_file, READER_TOKEN)
        assert (await client.whoami()).subject == "auditor"


async def test_insufficient_scope_is_permission_denied(
    secure_config: ConfigFactory, token_file: Path
) -> None:
    rotate(token_file, READER_TOKEN)
    async with GatewayClient(secure_config()) as client:
        assert await client.list_sandboxes() == []
        with pytest.raises(GatewayPermissionDenied) as denied:
            await client.create_sandbox("nope")
    assert "sandbox:write" in denied.value.detail
    assert "sandbox:write" not in str(denied.value)


async def test_unreadable_token_file_fails_without_a_call(
    secure_config: ConfigFactory, tls_emulator: EmulatorHandle, tmp_path: Path
) -> None:
    config = secure_config(auth={"type": "bearer", "token_file": str(tmp_path / "absent")})
    async with GatewayClient(config) as client:
        with pytest.raises(GatewayCredentialsError) as missing:
            await client.whoami()
    assert missing.value.rpc == "GetCurrentUser"
    assert not missing.value.is_transient
    assert missing.value.reason == "GatewayCredentialsUnavailable"
    assert tls_emulator.requests == []


async def test_mtls_identity(start_emu: EmulatorFactory, pki: Any) -> None:
    tls = TlsFiles(cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca)
    handle = await start_emu(tls=tls)
    config = GatewayConfig.model_validate(
        {
            "name": "mtls",
            "endpoint": handle.address,
            "tls": {
                "ca_file": str(pki.ca),
                "cert_file": str(pki.client_cert),
                "key_file": str(pki.client_key),
            },
            "auth": {"type": "mtls"},
        }
    )
    async with GatewayClient(config) as client:
        who = await client.whoami()
    assert who.subject == "helmdeck-operator"
    assert handle.requests[-1]["client_cert_subject"] == "helmdeck-operator"


async def test_rotated_certificates_open_a_new_channel(
    start_emu: EmulatorFactory, pki: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="helmdeck_operator.gateway")
    handle = await start_emu(tls=TlsFiles(cert=pki.server_cert, key=pki.server_key))
    ca = tmp_path / "ca.crt"
    shutil.copy(pki.ca, ca)
    config = GatewayConfig.model_validate(
        {
            "name": "rot",
            "endpoint": f"localhost:{handle.port}",  # loopback: no call credentials needed
            "tls": {"ca_file": str(ca)},
        }
    )
    async with GatewayClient(config) as client:
        await client.health()
        rotate(ca, pki.ca.read_text())
        await client.health()
    assert "TLS files changed" in caplog.text


async def test_traceparent_continues_the_current_span(
    secure_config: ConfigFactory, tls_emulator: EmulatorHandle
) -> None:
    tracer = TracerProvider().get_tracer("test")
    async with GatewayClient(secure_config()) as client:
        with tracer.start_as_current_span("reconcile") as span:
            await client.health()
    trace_id = trace.format_trace_id(span.get_span_context().trace_id)
    assert tls_emulator.requests[-1]["traceparent"].split("-")[1] == trace_id


async def test_no_secret_in_logs_or_errors(
    secure_config: ConfigFactory,
    tls_emulator: EmulatorHandle,
    token_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[GatewayError] = []
    async with GatewayClient(secure_config()) as client:
        await client.health()
        await client.create_sandbox("s1")
        await client.get_sandbox("missing")
        tls_emulator.faults.apply({"errors": {"GetSandbox": {"code": "UNAVAILABLE"}}})
        for call in (client.get_sandbox("s1"), client.create_sandbox("s1")):
            try:
                await call
            except GatewayError as err:
                errors.append(err)
        rotate(token_file, READER_TOKEN)  # a reader may not delete: PERMISSION_DENIED
        try:
            await client.delete_sandbox("s1")
        except GatewayError as err:
            errors.append(err)
    assert len(errors) == 3
    assert_no_secret(
        caplog.text,
        *(str(e) for e in errors),
        *(repr(e) for e in errors),
        *(str(e.__cause__) for e in errors),
        repr(secure_config()),
    )


@pytest.fixture
async def token_endpoint() -> AsyncIterator[str]:
    async def issue(request: web.Request) -> web.Response:
        return web.json_response({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 600})

    app = web.Application()
    app.router.add_post("/token", issue)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/token"
    await runner.cleanup()


async def test_oidc_client_credentials_end_to_end(
    secure_config: ConfigFactory,
    token_endpoint: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = tmp_path / "client-secret"
    secret.write_text("oidc-client-secret")
    auth = {
        "type": "oidc",
        "token_url": token_endpoint,
        "client_id": "helmdeck",
        "client_secret_file": str(secret),
    }
    async with GatewayClient(secure_config(auth=auth)) as client:
        assert (await client.whoami()).subject == "helmdeck-operator"
    assert_no_secret(caplog.text)
    assert "oidc-client-secret" not in caplog.text
