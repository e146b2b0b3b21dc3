"""How to reach one OpenShell gateway: endpoint, transport security, credentials, call policy.

The operator is configured with a named list of gateways (one per compute driver, since a
gateway runs exactly one). This module validates one entry at start-up so that a bad field
fails loudly with its own message instead of surfacing later as an opaque gRPC error.

Secrets are never values here, only file paths: the chart mounts Secrets as files, the
credential code reads them at use (so rotations are picked up) and nothing in this model
can leak a token through a repr, a log line or a validation error.
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "AuthConfig",
    "BearerAuth",
    "Driver",
    "GatewayConfig",
    "MtlsAuth",
    "NoAuth",
    "OidcAuth",
    "RateLimit",
    "RetryPolicy",
    "TlsConfig",
    "WorkspaceMode",
    "is_loopback_host",
    "split_endpoint",
]

Driver = Literal["kubernetes", "vm", "docker", "podman", "external"]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9.]{0,251}[A-Za-z0-9])?$")
#: The start of a workspace name: lowercase letters, digits and single hyphens, a hyphen
#: allowed at the end (it then separates the prefix from the namespace).
_WORKSPACE_PREFIX = re.compile(r"^[a-z0-9](-?[a-z0-9])*-?$")


class WorkspaceMode(StrEnum):
    """Which OpenShell workspace a namespace's sandboxes go to."""

    SHARED = "Shared"
    """Every namespace's in the gateway's `workspace` (the behaviour before modes existed)."""
    PER_NAMESPACE = "PerNamespace"
    """Each namespace's in its own workspace, created on demand and named after it
    (`core.naming.namespace_workspace`): tenants cannot see each other's on the gateway."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6) into its parts, or raise ValueError."""
    if endpoint.startswith("["):
        host, sep, rest = endpoint[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError("an IPv6 endpoint must look like [::1]:17670")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = endpoint.rpartition(":")
        if not sep or not host:
            raise ValueError("the endpoint must be host:port, e.g. openshell.openshell.svc:8080")
        if ":" in host:
            raise ValueError("write an IPv6 endpoint in brackets, e.g. [::1]:17670")
        if not _HOSTNAME.match(host):
            raise ValueError(f"{host!r} is not a valid host name or address")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"port {port_text!r} is not a number between 1 and 65535")
    return host, int(port_text)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and the loopback ranges 127.0.0.0/8 and ::1."""
    if host.lower() in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TlsConfig(_Frozen):
    """Transport security towards the gateway; client certificate files make it mTLS."""

    ca_file: Path | None = None
    """PEM bundle that signed the gateway's certificate; None trusts the system roots."""
    cert_file: Path | None = None
    """PEM client certificate (chain) presented for mTLS; needs ``key_file``."""
    key_file: Path | None = None
    """PEM private key of ``cert_file``."""
    server_name: str | None = None
    """Name to verify the server certificate against when it differs from the endpoint host."""

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls.cert_file and tls.key_file must be given together")
        return self

    @property
    def has_client_cert(self) -> bool:
        return self.cert_file is not None


class NoAuth(_Frozen):
    """No call credentials: only sensible with mTLS or a loopback gateway."""

    type: Literal["none"] = "none"


class MtlsAuth(_Frozen):
    """The client certificate in ``tls`` is the identity; no bearer token is sent."""

    type: Literal["mtls"] = "mtls"


class BearerAuth(_Frozen):
    """A static bearer token read from a mounted file, re-read when the file changes."""

    type: Literal["bearer"] = "bearer"
    token_file: Path


class OidcAuth(_Frozen):
    """OAuth 2.0 client-credentials grant against an OIDC provider, token refreshed early."""

    type: Literal["oidc"] = "oidc"
    issuer: str | None = None
    """Issuer URL; the token endpoint is discovered from its openid-configuration."""
    token_url: str | None = None
    """Token endpoint, when discovery is not wanted or not offered."""
    client_id: str = Field(min_length=1)
    client_secret_file: Path
    audience: str | None = None
    """Sent as the ``audience`` form parameter; the gateway checks the token's audience."""
    scopes: tuple[str, ...] = ()
    ca_file: Path | None = None
    """PEM bundle for the token endpoint's certificate; None trusts the system roots."""

    @field_validator("issuer", "token_url")
    @classmethod
    def _https_unless_loopback(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"https", "http"} or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise ValueError("plain http is allowed only to a loopback address; use https")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_endpoint_source(self) -> OidcAuth:
        if (self.issuer is None) == (self.token_url is None):
            raise ValueError("give exactly one of auth.issuer and auth.token_url")
        return self


AuthConfig = Annotated[NoAuth | MtlsAuth | BearerAuth | OidcAuth, Field(discriminator="type")]


class RetryPolicy(_Frozen):
    """Bounded retries of transient failures with jittered exponential backoff."""

    max_attempts: int = Field(default=4, ge=1, le=10)
    """Attempts per logical call, the first included; 1 disables retries."""
    initial_backoff: float = Field(default=0.2, gt=0, le=60)
    """Upper bound of the first delay, in seconds."""
    max_backoff: float = Field(default=5.0, gt=0, le=300)
    """Cap on any delay; a server retry hint above it ends the call instead of sleeping."""
    multiplier: float = Field(default=2.0, ge=1, le=10)

    @model_validator(mode="after")
    def _ordered(self) -> RetryPolicy:
        if self.initial_backoff > self.max_backoff:
            raise ValueError("retry.initial_backoff must not exceed retry.max_backoff")
        return self


class RateLimit(_Frozen):
    """How fast the operator may call one gateway: a token bucket over every RPC attempt
    (watch streams count once per connection). Protects a gateway shared with other
    clients from a reconcile storm; 0 turns it off."""

    qps: float = Field(default=1000.0, ge=0, le=100000)
    """Sustained calls per second."""
    burst: int = Field(default=2000, ge=1, le=100000)
    """Calls allowed at once before the rate applies."""


class GatewayConfig(_Frozen):
    """One named OpenShell gateway as the operator reaches it."""

    name: str
    """DNS label a session refers to the gateway by."""
    endpoint: str
    """``host:port`` of the gateway's gRPC listener (``[v6]:port`` for IPv6)."""
    workspace: str = Field(default="default", min_length=1, max_length=63)
    """OpenShell workspace every call is scoped to in mode Shared; in PerNamespace, where the
    sandboxes made before the switch stay."""
    workspaces: WorkspaceMode = WorkspaceMode.SHARED
    """Shared: one workspace for every namespace. PerNamespace: a workspace per namespace
    (the operator's identity must be a platform admin of the gateway: it creates them and
    lists all of them at once)."""
    workspace_prefix: str = Field(default="ns-", min_length=1, max_length=8)
    """What a namespace's workspace name starts with (PerNamespace); two installations that
    share a gateway and have namespaces of the same name keep them apart with different
    prefixes."""
    driver: Driver = "kubernetes"
    """The compute driver this gateway runs; decides MicroVM versus pod for its sessions."""
    tls: TlsConfig | None = None
    """Transport security; left out it means TLS against the system roots."""
    plaintext: bool = False
    """Unencrypted transport; accepted only towards a loopback endpoint."""
    auth: AuthConfig = Field(default_factory=NoAuth)
    deadline_seconds: float = Field(default=10.0, gt=0, le=300)
    """Deadline of each attempt of a unary call."""
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    rate_limit: RateLimit = Field(default_factory=RateLimit)

    @field_validator("name")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not _DNS_LABEL.match(value):
            raise ValueError(f"{value!r} is not a DNS label (lower-case a-z, 0-9, '-')")
        return value

    @field_validator("workspace_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _WORKSPACE_PREFIX.match(value):
            raise ValueError(
                f"{value!r} must be lowercase letters, digits and single hyphens, starting "
                "with a letter or digit"
            )
        return value

    @field_validator("endpoint")
    @classmethod
    def _host_port(cls, value: str) -> str:
        split_endpoint(value)
        return value

    @model_validator(mode="after")
    def _transport_and_auth_agree(self) -> GatewayConfig:
        loopback = self.is_loopback
        if self.plaintext:
            if self.tls is not None:
                raise ValueError("give either tls or plaintext, not both")
            if not loopback:
                raise ValueError(
                    "plaintext is allowed only when the endpoint host is loopback "
                    "(127.0.0.0/8, ::1, localhost); configure tls for "
                    f"{self.host!r}"
                )
        client_cert = self.tls is not None and self.tls.has_client_cert
        if isinstance(self.auth, MtlsAuth) and not client_cert:
            raise ValueError("auth type mtls needs tls.cert_file and tls.key_file")
        if isinstance(self.auth, NoAuth) and not (client_cert or loopback):
            raise ValueError(
                "auth type none is allowed only with an mTLS client certificate or a "
                "loopback endpoint; configure mtls, bearer or oidc"
            )
        return self

    @property
    def host(self) -> str:
        return split_endpoint(self.endpoint)[0]

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)

    @property
    def effective_tls(self) -> TlsConfig | None:
        """The TLS settings in force: None for plaintext, system-root TLS when unset."""
        if self.plaintext:
            return None
        return self.tls if self.tls is not None else TlsConfig()
