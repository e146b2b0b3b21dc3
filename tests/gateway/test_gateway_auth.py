"""Call credentials: token files re-read on rotation, OIDC client credentials refreshed early.

The OIDC tests run a tiny token endpoint (aiohttp) on 127.0.0.1 and drive the refresh
clock by hand, so they are exact and fast.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from helmdeck_operator.gateway.auth import (
    BearerFileCredentials,
    FileWatch,
    NoCredentials,
    OidcCredentials,
    build_call_credentials,
    refresh_delay,
)
from helmdeck_operator.gateway.config import GatewayConfig, OidcAuth
from helmdeck_operator.gateway.errors import GatewayCredentialsError
from tests.support.gateway import rotate

SECRET = "client-secret-value"


@dataclass
class Idp:
    """A scripted OAuth token endpoint with OIDC discovery."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    discoveries: int = 0
    status: int = 200
    body: dict[str, Any] = field(default_factory=lambda: {"error": "invalid_client"})
    expires_in: object = 3600
    delay: float = 0.0
    issued: int = 0

    async def token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.requests.append({"form": form, "authorization": request.headers.get("Authorization")})
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status != 200:
            return web.json_response(self.body, status=self.status)
        self.issued += 1
        answer: dict[str, Any] = {"access_token": f"tok-{self.issued}", "token_type": "Bearer"}
        if self.expires_in is not None:
            answer["expires_in"] = self.expires_in
        return web.json_response(answer)

    async def discovery(self, request: web.Request) -> web.Response:
        self.discoveries += 1
        return web.json_response({"issuer": self.url, "token_endpoint": f"{self.url}/oauth/token"})


@pytest.fixture
async def idp() -> AsyncIterator[Idp]:
    state = Idp()
    app = web.Application()
    app.router.add_post("/oauth/token", state.token)
    app.router.add_get("/.well-known/openid-configuration", state.discovery)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield state
    await runner.cleanup()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def oidc(idp: Idp, tmp_path: Path, **extra: Any) -> OidcAuth:
    secret = tmp_path / "client-secret"
    if not secret.exists():
        secret.write_text(SECRET + "\n")
    fields: dict[str, Any] = {"client_id": "helmdeck", "client_secret_file": secret}
    fields.update(extra)
    if "issuer" not in fields:
        fields.setdefault("token_url", f"{idp.url}/oauth/token")
    return OidcAuth.model_validate(fields)


# -- pure pieces ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ttl", "refresh"), [(3600, 2880), (300, 240), (100, 50), (30, 15), (1, 0.5)]
)
def test_refresh_before_expiry(ttl: float, refresh: float) -> None:
    assert refresh_delay(ttl) == pytest.approx(refresh)


def test_file_watch_sees_rotation_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("a")
    watch = FileWatch(path)
    assert watch.changed()
    assert not watch.changed()
    rotate(path, "b")
    assert watch.changed()
    path.unlink()
    with pytest.raises(GatewayCredentialsError) as missing:
        watch.changed()
    assert "cannot read credentials file" in missing.value.detail


# -- static bearer ----------------------------------------------------------------------


async def test_bearer_token_is_reread_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first-token\n")
    creds = BearerFileCredentials(path)
    assert await creds.authorization() == "Bearer first-token"
    rotate(path, "second-token")
    assert await creds.authorization() == "Bearer second-token"
    assert creds.secrets() == ("second-token",)
    assert "second-token" not in repr(creds)


async def test_bearer_file_problems_are_permanent_and_secret_free(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("   \n")
    with pytest.raises(GatewayCredentialsError) as empty:
        await BearerFileCredentials(path).authorization()
    assert "is empty" in empty.value.detail
    assert not empty.value.is_transient
    with pytest.raises(GatewayCredentialsError) as missing:
        await BearerFileCredentials(tmp_path / "missing").authorization()
    assert "cannot read" in missing.value.detail


async def test_binary_token_file_is_refused_without_quoting_it(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_bytes(b"abc\xfe\xffdef")
    with pytest.raises(GatewayCredentialsError) as refused:
        await BearerFileCredentials(path).authorization()
    assert "not UTF-8" in refused.value.detail
    assert "xfe" not in refused.value.detail


@pytest.mark.parametrize(
    ("expires_in", "ttl"), [(600, 600), ("600", 600), ("soon", 300), (-5, 300), (None, 300)]
)
async def test_token_lifetime_parsing(
    idp: Idp, tmp_path: Path, expires_in: object, ttl: float
) -> None:
    idp.expires_in = expires_in
    clock = FakeClock()
    creds = OidcCredentials(oidc(idp, tmp_path), clock=clock)
    await creds.authorization()
    clock.now += refresh_delay(ttl) - 0.5
    await creds.authorization()
    clock.now += 1
    await creds.authorization()
    assert len(idp.requests) == 2
    await creds.aclose()


async def test_no_credentials() -> None:
    creds = NoCredentials()
    assert await creds.authorization() is None
    assert creds.secrets() == ()


def test_build_call_credentials_follows_the_auth_type(tmp_path: Path) -> None:
    base = {"name": "g", "endpoint": "127.0.0.1:1", "plaintext": True}
    assert isinstance(build_call_credentials(GatewayConfig.model_validate(base)), NoCredentials)
    bearer = GatewayConfig.model_validate({**base, "auth": {"type": "bearer", "token_file": "/t"}})
    assert isinstance(build_call_credentials(bearer), BearerFileCredentials)


# -- OIDC client credentials ------------------------------------------------------------


async def test_oidc_fetch_sends_the_grant(idp: Idp, tmp_path: Path) -> None:
    creds = OidcCredentials(oidc(idp, tmp_path, audience="openshell", scopes=("a", "b")))
    try:
        assert await creds.authorization() == "Bearer tok-1"
    finally:
        await creds.aclose()
    (request,) = idp.requests
    assert request["form"] == {
        "grant_type": "client_credentials",
        "scope": "a b",
        "audience": "openshell",
    }
    expected = base64.b64encode(f"helmdeck:{SECRET}".encode()).decode()
    assert request["authorization"] == f"Basic {expected}"


async def test_oidc_token_is_cached_then_refreshed_early(idp: Idp, tmp_path: Path) -> None:
    clock = FakeClock()
    creds = OidcCredentials(oidc(idp, tmp_path), clock=clock)
    assert await creds.authorization() == "Bearer tok-1"
    clock.now += 2879
    assert await creds.authorization() == "Bearer tok-1"
    clock.now += 1  # 80% of 3600 s
    assert await creds.authorization() == "Bearer tok-2"
    assert len(idp.requests) == 2
    await creds.aclose()


async def test_concurrent_callers_share_one_refresh(idp: Idp, tmp_path: Path) -> None:
    idp.delay = 0.05
    creds = OidcCredentials(oidc(idp, tmp_path))
    values = await asyncio.gather(*(creds.authorization() for _ in range(20)))
    assert set(values) == {"Bearer tok-1"}
    assert len(idp.requests) == 1
    await creds.aclose()


async def test_issuer_discovery_happens_once(idp: Idp, tmp_path: Path) -> None:
    clock = FakeClock()
    creds = OidcCredentials(oidc(idp, tmp_path, issuer=idp.url), clock=clock)
    await creds.authorization()
    clock.now += 4000
    assert await creds.authorization() == "Bearer tok-2"
    assert idp.discoveries == 1
    await creds.aclose()


async def test_missing_expires_in_uses_a_default(idp: Idp, tmp_path: Path) -> None:
    idp.expires_in = None
    clock = FakeClock()
    creds = OidcCredentials(oidc(idp, tmp_path), clock=clock)
    await creds.authorization()
    clock.now += refresh_delay(300) - 1
    await creds.authorization()
    assert len(idp.requests) == 1
    await creds.aclose()


async def test_secret_rotation_is_used_at_the_next_refresh(idp: Idp, tmp_path: Path) -> None:
    clock = FakeClock()
    config = oidc(idp, tmp_path)
    creds = OidcCredentials(config, clock=clock)
    await creds.authorization()
    rotate(config.client_secret_file, "rotated-secret")
    creds.invalidate()
    await creds.authorization()
    expected = base64.b64encode(b"helmdeck:rotated-secret").decode()
    assert idp.requests[-1]["authorization"] == f"Basic {expected}"
    await creds.aclose()


async def test_refused_grant_is_permanent_and_names_only_the_oauth_error(
    idp: Idp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    idp.status, idp.body = 401, {"error": "invalid_client", "echo": SECRET}
    creds = OidcCredentials(oidc(idp, tmp_path))
    with pytest.raises(GatewayCredentialsError) as refused:
        await creds.authorization()
    await creds.aclose()
    assert refused.value.detail == "OIDC token request refused: HTTP 401 (invalid_client)"
    assert "token request" not in str(refused.value)  # a tenant reads only a fixed sentence
    assert not refused.value.is_transient
    assert SECRET not in caplog.text


@pytest.mark.parametrize("status", [429, 503])
async def test_overloaded_idp_is_transient(idp: Idp, tmp_path: Path, status: int) -> None:
    idp.status, idp.body = status, {}
    creds = OidcCredentials(oidc(idp, tmp_path))
    with pytest.raises(GatewayCredentialsError) as failed:
        await creds.authorization()
    assert failed.value.is_transient
    await creds.aclose()


async def test_unreachable_idp_is_transient(tmp_path: Path) -> None:
    secret = tmp_path / "s"
    secret.write_text("x")
    config = OidcAuth(client_id="c", client_secret_file=secret, token_url="http://127.0.0.1:9/t")
    creds = OidcCredentials(config)
    with pytest.raises(GatewayCredentialsError) as failed:
        await creds.authorization()
    assert "request failed: ConnectError" in failed.value.detail
    assert failed.value.is_transient
    await creds.aclose()


async def test_failed_refresh_keeps_a_still_valid_token(idp: Idp, tmp_path: Path) -> None:
    clock = FakeClock()
    creds = OidcCredentials(oidc(idp, tmp_path), clock=clock)
    await creds.authorization()
    idp.status, idp.body = 503, {}
    clock.now += 3000  # past the refresh point, before expiry
    assert await creds.authorization() == "Bearer tok-1"
    assert await creds.authorization() == "Bearer tok-1"
    assert len(idp.requests) == 2  # the second call waits for the retry interval
    clock.now += 601  # expired
    with pytest.raises(GatewayCredentialsError):
        await creds.authorization()
    await creds.aclose()


@pytest.mark.parametrize(
    "body",
    [{"token_type": "Bearer"}, {"access_token": "t", "token_type": "mac"}],
)
async def test_unusable_token_responses(idp: Idp, tmp_path: Path, body: dict[str, Any]) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response(body)

    app = web.Application()
    app.router.add_post("/t", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/t"
    creds = OidcCredentials(oidc(idp, tmp_path, token_url=url))
    try:
        with pytest.raises(GatewayCredentialsError) as refused:
            await creds.authorization()
        assert re.search(r"access_token|non-bearer", refused.value.detail)
    finally:
        await creds.aclose()
        await runner.cleanup()
