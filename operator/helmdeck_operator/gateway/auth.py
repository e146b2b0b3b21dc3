"""Credentials for gateway calls: mTLS channel material and per-call bearer tokens.

Kubernetes rotates mounted Secrets in place, so nothing here is read once: token and
certificate files are watched (a cheap ``stat`` per call) and re-read when they change,
and OIDC access tokens are refreshed well before they expire, one refresh shared by all
concurrent callers. Token values live only in private attributes of these objects; they
are never part of a repr, a log line or an exception text. ``secrets()`` hands them (and
the OIDC client secret last read) to the client, which scrubs them from whatever a gateway
says back (``errors.scrub``).

The bearer value is handed to the client as ``authorization`` metadata per call rather
than through a gRPC metadata plugin: the plugin API is synchronous and runs in a thread,
while the OIDC refresh is naturally an ``await`` on httpx.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, assert_never
from urllib.parse import quote, urlsplit

import grpc
import httpx

from helmdeck_operator.gateway.config import (
    BearerAuth,
    GatewayConfig,
    MtlsAuth,
    NoAuth,
    OidcAuth,
    TlsConfig,
    is_loopback_host,
)
from helmdeck_operator.gateway.errors import GatewayCredentialsError, scrub

__all__ = [
    "BearerFileCredentials",
    "CallCredentials",
    "FileWatch",
    "NoCredentials",
    "OidcCredentials",
    "build_call_credentials",
    "channel_credentials",
    "refresh_delay",
]

logger = logging.getLogger(__name__)

#: Bound on one token-endpoint exchange; a reconcile should not hang on a slow IdP.
TOKEN_HTTP_TIMEOUT = 10.0
#: Assumed lifetime when a token response omits ``expires_in`` (it is only RECOMMENDED).
DEFAULT_TOKEN_TTL = 300.0
#: After a failed refresh while the old token is still valid, wait this long before the
#: next try, so a down IdP costs one request per interval instead of one per call.
REFRESH_RETRY_INTERVAL = 10.0
_WELL_KNOWN = "/.well-known/openid-configuration"
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class CallCredentials(Protocol):
    """What the client needs from an auth scheme, whatever the scheme."""

    async def authorization(self) -> str | None:
        """The ``authorization`` metadata value for the next call, or None to send none."""
        ...

    def invalidate(self) -> None:
        """Forget the cached credential (the gateway said UNAUTHENTICATED)."""
        ...

    def secrets(self) -> tuple[str, ...]:
        """Values currently held, so error texts can be scrubbed of them."""
        ...

    async def aclose(self) -> None: ...


class FileWatch:
    """Tells whether any of some files changed since last asked (by inode, size, mtime).

    Kubernetes updates a mounted Secret by swapping a symlink, so the resolved inode
    changes even when size and mtime would not.
    """

    def __init__(self, *paths: Path) -> None:
        self._paths = paths
        self._seen: tuple[tuple[int, int, int], ...] | None = None

    def changed(self) -> bool:
        """True on the first call and whenever a file changed; raises if one is missing."""
        try:
            stats = [os.stat(path) for path in self._paths]
        except OSError as exc:
            raise GatewayCredentialsError(
                f"cannot read credentials file {exc.filename}: {exc.strerror}", transient=False
            ) from None
        seen = tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)
        if seen == self._seen:
            return False
        self._seen = seen
        return True


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise GatewayCredentialsError(
            f"cannot read credentials file {path}: {exc.strerror}", transient=False
        ) from None


def _read_secret(path: Path) -> str:
    try:
        value = _read_bytes(path).decode("utf-8").strip()
    except UnicodeDecodeError:
        # Said without the decoder's own message, which quotes the offending byte.
        raise GatewayCredentialsError(
            f"credentials file {path} is not UTF-8 text", transient=False
        ) from None
    if not value:
        raise GatewayCredentialsError(f"credentials file {path} is empty", transient=False)
    return value


def channel_credentials(tls: TlsConfig) -> grpc.ChannelCredentials:
    """TLS (and, with a client certificate, mTLS) credentials from the configured files."""
    return grpc.ssl_channel_credentials(
        root_certificates=_read_bytes(tls.ca_file) if tls.ca_file else None,
        private_key=_read_bytes(tls.key_file) if tls.key_file else None,
        certificate_chain=_read_bytes(tls.cert_file) if tls.cert_file else None,
    )


def refresh_delay(expires_in: float) -> float:
    """Seconds after issue to refresh a token valid for ``expires_in`` seconds.

    At 80% of the lifetime, but at least 60 s before expiry when the lifetime allows it,
    and never later than half-way so short-lived tokens still get a margin.
    """
    margin = max(expires_in * 0.2, min(60.0, expires_in * 0.5))
    return max(0.0, expires_in - margin)


class NoCredentials:
    """No call credentials (mTLS identity or a loopback gateway)."""

    async def authorization(self) -> str | None:
        return None

    def invalidate(self) -> None:
        """Nothing is cached."""

    def secrets(self) -> tuple[str, ...]:
        return ()

    async def aclose(self) -> None:
        """Nothing to release."""


class BearerFileCredentials:
    """A static bearer token from a file, re-read whenever the file changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._watch = FileWatch(path)
        self._token: str | None = None

    def __repr__(self) -> str:
        return f"BearerFileCredentials(token_file={str(self._path)!r})"

    async def authorization(self) -> str | None:
        if self._watch.changed() or self._token is None:
            self._token = _read_secret(self._path)
        return f"Bearer {self._token}"

    def invalidate(self) -> None:
        self._token = None

    def secrets(self) -> tuple[str, ...]:
        return (self._token,) if self._token else ()

    async def aclose(self) -> None:
        """Nothing to release."""


class OidcCredentials:
    """OAuth 2.0 client-credentials tokens, cached and refreshed before they expire.

    The client secret is read from its file on every refresh (rotation) and sent with
    HTTP Basic auth, form-encoded first as RFC 6749 section 2.3.1 asks.
    """

    def __init__(
        self,
        config: OidcAuth,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._owns_http = http is None
        self._http = http if http is not None else _token_http_client(config)
        self._clock = clock
        self._token_url = config.token_url
        self._token: str | None = None
        # Kept only so a gateway echoing it can be scrubbed; re-read on every refresh.
        self._client_secret: str | None = None
        self._expires_at = 0.0
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        where = self._config.token_url or self._config.issuer
        return f"OidcCredentials(client_id={self._config.client_id!r}, endpoint={where!r})"

    async def authorization(self) -> str | None:
        if self._token is None or self._clock() >= self._refresh_at:
            async with self._lock:
                # Whoever waited on the lock finds the token the first holder fetched.
                if self._token is None or self._clock() >= self._refresh_at:
                    await self._refresh()
        return f"Bearer {self._token}"

    def invalidate(self) -> None:
        self._token = None
        self._refresh_at = 0.0

    def secrets(self) -> tuple[str, ...]:
        return tuple(value for value in (self._token, self._client_secret) if value)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def _refresh(self) -> None:
        now = self._clock()
        try:
            token, ttl = await self._fetch()
        except GatewayCredentialsError as exc:
            if self._token is not None and exc.is_transient and now < self._expires_at:
                logger.warning(
                    "OIDC token refresh failed, keeping the current token until it expires: %s",
                    exc.detail,
                )
                self._refresh_at = min(now + REFRESH_RETRY_INTERVAL, self._expires_at)
                return
            raise
        self._token = token
        self._expires_at = now + ttl
        self._refresh_at = now + refresh_delay(ttl)
        logger.debug("OIDC token refreshed, valid for %.0f s", ttl)

    async def _fetch(self) -> tuple[str, float]:
        url = await self._endpoint()
        secret = self._client_secret = _read_secret(self._config.client_secret_file)
        form = {"grant_type": "client_credentials"}
        if self._config.scopes:
            form["scope"] = " ".join(self._config.scopes)
        if self._config.audience:
            form["audience"] = self._config.audience
        body = await self._request(
            "token",
            "POST",
            url,
            data=form,
            auth=httpx.BasicAuth(quote(self._config.client_id, safe=""), quote(secret, safe="")),
        )
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise GatewayCredentialsError(
                "the token endpoint answered without an access_token", transient=False
            )
        token_type = body.get("token_type", "Bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise GatewayCredentialsError(
                "the token endpoint issued a non-bearer token", transient=False
            )
        return token, _lifetime(body.get("expires_in"))

    async def _endpoint(self) -> str:
        if self._token_url is None:
            issuer = self._config.issuer or ""
            body = await self._request("discovery", "GET", issuer + _WELL_KNOWN)
            url = body.get("token_endpoint")
            if not isinstance(url, str) or not _acceptable_url(url):
                raise GatewayCredentialsError(
                    "the issuer's openid-configuration has no usable token_endpoint",
                    transient=False,
                )
            self._token_url = url
        return self._token_url

    async def _request(self, what: str, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        """One JSON exchange with the IdP; failures name the HTTP status and OAuth error only."""
        try:
            response = await self._http.request(
                method, url, headers={"Accept": "application/json"}, **kwargs
            )
        except httpx.HTTPError as exc:
            raise GatewayCredentialsError(
                f"OIDC {what} request failed: {type(exc).__name__}", transient=True
            ) from None
        if response.status_code >= 400:
            # An error code is a word, but a word can still be our client secret echoed.
            code = scrub(_oauth_error(response), self.secrets())
            raise GatewayCredentialsError(
                f"OIDC {what} request refused: HTTP {response.status_code}{code}",
                transient=response.status_code >= 500 or response.status_code == 429,
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise GatewayCredentialsError(
                f"OIDC {what} response is not a JSON object", transient=False
            )
        return body


def _lifetime(expires_in: object) -> float:
    """Token lifetime in seconds; some IdPs send ``expires_in`` as a string."""
    try:
        ttl = float(expires_in) if isinstance(expires_in, int | float | str) else None
    except ValueError:
        ttl = None
    if ttl is None or not ttl > 0 or ttl == float("inf"):
        return DEFAULT_TOKEN_TTL
    return max(ttl, 1.0)


def _oauth_error(response: httpx.Response) -> str:
    """The RFC 6749 ``error`` code if it looks like one; never the rest of the body."""
    try:
        code = response.json().get("error")
    except (ValueError, AttributeError):
        return ""
    return f" ({code})" if isinstance(code, str) and _ERROR_CODE.match(code) else ""


def _acceptable_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    return parts.scheme == "http" and is_loopback_host(parts.hostname or "")


def _token_http_client(config: OidcAuth) -> httpx.AsyncClient:
    verify: ssl.SSLContext | bool = True
    if config.ca_file is not None:
        verify = ssl.create_default_context(cafile=str(config.ca_file))
    return httpx.AsyncClient(timeout=TOKEN_HTTP_TIMEOUT, verify=verify, follow_redirects=False)


def build_call_credentials(
    config: GatewayConfig, *, http: httpx.AsyncClient | None = None
) -> CallCredentials:
    """The call credentials a gateway's auth block asks for."""
    auth = config.auth
    if isinstance(auth, BearerAuth):
        return BearerFileCredentials(auth.token_file)
    if isinstance(auth, OidcAuth):
        return OidcCredentials(auth, http=http)
    if isinstance(auth, NoAuth | MtlsAuth):
        return NoCredentials()
    assert_never(auth)
