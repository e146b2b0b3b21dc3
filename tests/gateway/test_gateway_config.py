"""GatewayConfig validation: names, endpoints, plaintext only to loopback, auth coherence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from helmdeck_operator.gateway.config import (
    BearerAuth,
    GatewayConfig,
    MtlsAuth,
    NoAuth,
    OidcAuth,
    RetryPolicy,
    TlsConfig,
    is_loopback_host,
    split_endpoint,
)


def make(**fields: Any) -> GatewayConfig:
    base: dict[str, Any] = {"name": "vm", "endpoint": "127.0.0.1:17670", "plaintext": True}
    base.update(fields)
    return GatewayConfig.model_validate(base)


def test_a_minimal_loopback_gateway() -> None:
    config = make()
    assert (config.host, config.workspace, config.driver) == ("127.0.0.1", "default", "kubernetes")
    assert isinstance(config.auth, NoAuth)
    assert config.effective_tls is None
    assert config.retry == RetryPolicy()


def test_a_production_gateway_from_yaml_shaped_data() -> None:
    config = GatewayConfig.model_validate(
        {
            "name": "microvm",
            "endpoint": "openshell.openshell.svc:8080",
            "workspace": "helmdeck",
            "driver": "vm",
            "tls": {"ca_file": "/etc/gw/ca.crt", "server_name": "openshell"},
            "auth": {
                "type": "oidc",
                "issuer": "https://idp.example.com/realms/x/",
                "client_id": "helmdeck-operator",
                "client_secret_file": "/etc/gw/oidc/secret",
                "audience": "openshell",
                "scopes": ["sandbox:write", "config:write"],
            },
            "deadline_seconds": 5,
            "retry": {"max_attempts": 3},
        }
    )
    assert isinstance(config.auth, OidcAuth)
    assert config.auth.issuer == "https://idp.example.com/realms/x"
    assert config.effective_tls == TlsConfig(
        ca_file=Path("/etc/gw/ca.crt"), server_name="openshell"
    )


def test_tls_defaults_to_system_roots() -> None:
    config = make(
        endpoint="gw.example.com:443", plaintext=False, auth={"type": "bearer", "token_file": "/t"}
    )
    assert config.effective_tls == TlsConfig()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.9.8.7", "localhost", "[::1]"])
def test_plaintext_to_loopback_is_allowed(host: str) -> None:
    assert make(endpoint=f"{host}:1").plaintext


@pytest.mark.parametrize("host", ["10.0.0.1", "openshell.svc", "[2001:db8::1]", "128.0.0.1"])
def test_plaintext_elsewhere_is_refused_with_a_reason(host: str) -> None:
    with pytest.raises(
        ValidationError, match="plaintext is allowed only when the endpoint host is loopback"
    ):
        make(endpoint=f"{host}:8080")


@pytest.mark.parametrize(
    "endpoint",
    [
        "openshell",
        "openshell:",
        ":80",
        "host:0",
        "host:70000",
        "host:http",
        "::1:80",
        "[zz]:1",
        "bad_host:1",
    ],
)
def test_malformed_endpoints(endpoint: str) -> None:
    with pytest.raises(ValidationError, match="endpoint"):
        make(endpoint=endpoint)


def test_split_endpoint() -> None:
    assert split_endpoint("[::1]:17670") == ("::1", 17670)
    assert split_endpoint("gw.example.com:8080") == ("gw.example.com", 8080)
    assert is_loopback_host("LOCALHOST")
    assert not is_loopback_host("example.com")


@pytest.mark.parametrize("name", ["", "UPPER", "-x", "x-", "a" * 64, "with.dot"])
def test_names_are_dns_labels(name: str) -> None:
    with pytest.raises(ValidationError, match="DNS label"):
        make(name=name)


def test_tls_and_plaintext_exclude_each_other() -> None:
    with pytest.raises(ValidationError, match="either tls or plaintext"):
        make(tls={"ca_file": "/ca"})


def test_client_cert_needs_its_key() -> None:
    with pytest.raises(ValidationError, match="together"):
        make(plaintext=False, tls={"cert_file": "/c"})


def test_no_auth_needs_mtls_or_loopback() -> None:
    with pytest.raises(ValidationError, match="auth type none"):
        make(endpoint="gw.example.com:443", plaintext=False)
    mtls = make(
        endpoint="gw.example.com:443",
        plaintext=False,
        tls={"cert_file": "/c", "key_file": "/k"},
        auth={"type": "mtls"},
    )
    assert isinstance(mtls.auth, MtlsAuth)
    assert make(endpoint="localhost:1", plaintext=False).effective_tls == TlsConfig()


def test_mtls_auth_needs_a_client_certificate() -> None:
    with pytest.raises(ValidationError, match=r"mtls needs tls\.cert_file"):
        make(endpoint="gw.example.com:443", plaintext=False, auth={"type": "mtls"})


def test_oidc_needs_exactly_one_endpoint_source() -> None:
    auth = {"type": "oidc", "client_id": "c", "client_secret_file": "/s"}
    with pytest.raises(ValidationError, match="exactly one"):
        make(auth=auth)
    with pytest.raises(ValidationError, match="exactly one"):
        make(auth={**auth, "issuer": "https://a", "token_url": "https://a/token"})


@pytest.mark.parametrize("url", ["http://idp.example.com", "ftp://idp", "not a url"])
def test_oidc_urls_must_be_https_unless_loopback(url: str) -> None:
    with pytest.raises(ValidationError, match=r"URL|https"):
        make(auth={"type": "oidc", "client_id": "c", "client_secret_file": "/s", "token_url": url})
    ok = make(
        auth={
            "type": "oidc",
            "client_id": "c",
            "client_secret_file": "/s",
            "token_url": "http://127.0.0.1:9/t",
        }
    )
    assert isinstance(ok.auth, OidcAuth)


def test_retry_bounds() -> None:
    with pytest.raises(ValidationError, match="initial_backoff"):
        make(retry={"initial_backoff": 2, "max_backoff": 1})
    with pytest.raises(ValidationError):
        make(retry={"max_attempts": 0})
    with pytest.raises(ValidationError):
        make(deadline_seconds=0)


def test_unknown_fields_and_mutation_are_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        make(timeout=3)
    config = make()
    with pytest.raises(ValidationError):
        config.name = "other"


def test_secrets_are_only_paths(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("super-secret-token")
    config = make(auth={"type": "bearer", "token_file": str(token)})
    assert isinstance(config.auth, BearerAuth)
    for text in (repr(config), str(config), config.model_dump_json()):
        assert "super-secret-token" not in text
