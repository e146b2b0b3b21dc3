"""The one error hierarchy of gateway calls, and the one place gRPC errors are translated.

Callers (reconcilers) never see ``grpc`` exceptions: every failed call raises a
``GatewayError`` whose class says what to do about it and whose ``reason`` is a stable
CamelCase word fit for a Kubernetes condition reason and Event reason::

    GatewayError                     any failed gateway call
    ├── GatewayNotFound              NOT_FOUND
    ├── GatewayAlreadyExists         ALREADY_EXISTS
    ├── GatewayInvalid               INVALID_ARGUMENT, OUT_OF_RANGE (+ field violations)
    ├── GatewayPreconditionFailed    FAILED_PRECONDITION
    ├── GatewayPermissionDenied      PERMISSION_DENIED
    ├── GatewayUnauthenticated       UNAUTHENTICATED
    ├── GatewayTransient             UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED,
    │                                ABORTED, CANCELLED   (retried, then surfaced)
    ├── GatewayInternal              INTERNAL, UNKNOWN, DATA_LOSS, UNIMPLEMENTED, OK
    └── GatewayCredentialsError      our own credentials could not be obtained (no RPC made)

Only ``GatewayTransient`` (and a ``GatewayCredentialsError`` from an unreachable token
endpoint) is retried inside a call. What a failed call means for a session is the
reconciler's decision (docs/failure-behaviour.md): a refused create fails the session until
its spec changes; everything else is retried by later passes with back-off.
Texts carry the gateway's message but never metadata, and are scrubbed (``scrub``): the
values of our own credentials (and the credential sent with the failed call) and anything
shaped like a credential (``Bearer ...``, ``authorization: ...``, ``client_secret=...``, a
JWT, a PEM private key) become ``[REDACTED]``. A translated error never chains the gRPC
error it came from (its ``str`` and ``debug_error_string`` hold the gateway's raw words), so
a logged traceback or a span's exception event holds only the scrubbed text.

Two texts per error. ``message`` (and so ``str``) is what may land in a condition or an
Event on a tenant's object; ``detail`` is the gateway's full scrubbed text, for the
operator's log. They differ only for failures of the operator's own identity
(UNAUTHENTICATED, PERMISSION_DENIED, credentials we could not obtain): what a gateway or a
token endpoint says about those can name the identity, its roles, its issuer or its files,
none of which is the tenant's business, so ``message`` is a fixed sentence naming the
gateway and what the platform team should check, and the client logs ``for_log()``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import grpc
from google.rpc import error_details_pb2, status_pb2

from helmdeck_operator.vocabulary import Reason

__all__ = [
    "CODE_TO_ERROR",
    "REDACTED",
    "FieldViolation",
    "GatewayAlreadyExists",
    "GatewayCredentialsError",
    "GatewayError",
    "GatewayInternal",
    "GatewayInvalid",
    "GatewayNotFound",
    "GatewayPermissionDenied",
    "GatewayPreconditionFailed",
    "GatewayTransient",
    "GatewayUnauthenticated",
    "from_rpc_error",
    "scrub",
]

#: Replaces a known secret wherever it shows up in a message from the gateway.
REDACTED = "[REDACTED]"
#: Trailing metadata key of the serialized google.rpc.Status (gRPC "rich error model").
_STATUS_DETAILS_KEY = "grpc-status-details-bin"
#: Gateways and proxies in front of them may hint a retry delay in seconds.
_RETRY_AFTER_KEY = "retry-after"
#: Bound on the message we keep: a gateway error text is for humans, not a log dump.
_MAX_MESSAGE = 1024
#: Credential-shaped text, replaced whoever's credential it is (another client's token a
#: proxy echoes is no less a secret). Each keeps the words that say what was removed.
_SECRET_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # A PEM private key, whole.
    (
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S
        ),
        REDACTED,
    ),
    # A header that carries credentials, to the end of its value (a cookie has spaces).
    (
        re.compile(
            r"(?i)\b(authorization|proxy-authorization|cookie|set-cookie|x-api-key)"
            r"([\"']?\s*[:=]\s*[\"']?)[^\r\n\"']+"
        ),
        rf"\1\2{REDACTED}",
    ),
    # An HTTP credential after its scheme; 8+ token characters, so prose ("a bearer
    # token") stays readable.
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9\-._~+/]{8,}=*"), rf"\1\2{REDACTED}"),
    # A secret-named field with its value: client_secret=..., "access_token": "...".
    (
        re.compile(
            r"(?i)\b(client[_-]?secret|(?:access|refresh|id)[_-]?token|api[_-]?key|password"
            r"|passwd|secret|token)([\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;]+"
        ),
        rf"\1\2{REDACTED}",
    ),
    # A JWT anywhere (its header always starts with '{"', base64url "eyJ").
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),
)


@dataclass(frozen=True)
class FieldViolation:
    """One rejected field from a google.rpc.BadRequest detail."""

    field: str
    description: str


class GatewayError(Exception):
    """A gateway call failed; ``reason`` names why, ``is_transient`` whether to retry soon."""

    transient: bool = False
    #: For failures of the operator's own identity: the sentence a tenant is shown instead
    #: of the gateway's words ({gateway}: "gateway 'name'", or "the gateway" if unknown).
    withheld: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        gateway: str = "",
        rpc: str = "",
        code: str = "",
        request_id: str = "",
        attempts: int = 0,
        retry_after: float | None = None,
        violations: tuple[FieldViolation, ...] = (),
    ) -> None:
        public = message
        if self.withheld is not None:
            public = self.withheld.format(
                gateway=f"gateway {gateway!r}" if gateway else "the gateway"
            )
        super().__init__(public)
        self.message = public
        """What a tenant may read: a condition's or an Event's message."""
        self.detail = message
        """The full (scrubbed) text, for the operator's log only."""
        self.gateway = gateway
        """The configured name of the gateway called, empty when not known."""
        self.rpc = rpc
        self.code = code
        """The gRPC status code name (``NOT_FOUND``...), empty when no RPC answered."""
        self.request_id = request_id
        """The ``x-request-id`` sent, to find the call in the gateway's logs."""
        self.attempts = attempts
        """Attempts made, retries included; >1 on ALREADY_EXISTS hints at a lost response."""
        self.retry_after = retry_after
        """The server's retry hint in seconds, if it gave one."""
        self.violations = violations

    @property
    def is_transient(self) -> bool:
        return self.transient

    @property
    def reason(self) -> Reason:
        """CamelCase reason for conditions and Events, e.g. ``GatewayDeadlineExceeded``."""
        if not self.code:
            return Reason(type(self).__name__)
        return Reason.for_gateway_code(self.code)

    def __str__(self) -> str:
        return self._render(self.message)

    def for_log(self) -> str:
        """``str(self)`` with the full text in place of a withheld one: for the operator's
        log (and the platform team's preflight), never for a tenant's object."""
        return self._render(self.detail)

    def _render(self, text: str) -> str:
        where = f"{self.rpc}: " if self.rpc else ""
        code = f"{self.code}: " if self.code else ""
        rid = f" (request id {self.request_id})" if self.request_id else ""
        return f"{where}{code}{text}{rid}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class GatewayNotFound(GatewayError):
    """The named object does not exist in the gateway's workspace."""


class GatewayAlreadyExists(GatewayError):
    """The name is taken; after a retried create it is most likely our own sandbox."""


class GatewayInvalid(GatewayError):
    """The gateway rejected the request's content; ``violations`` lists the fields."""

    def _render(self, text: str) -> str:
        base = super()._render(text)
        if not self.violations:
            return base
        fields = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        return f"{base} [{fields}]"


class GatewayPreconditionFailed(GatewayError):
    """The request is valid but the gateway's state forbids it (wrong phase, no provider)."""


class GatewayPermissionDenied(GatewayError):
    """Our identity lacks a role or scope for this call."""

    withheld = (
        "{gateway} refused the operator's identity for this call: the platform team should "
        "check the roles and scopes the gateway grants the operator (the operator's log has "
        "the gateway's answer)"
    )


class GatewayUnauthenticated(GatewayError):
    """The gateway did not accept our credentials."""

    withheld = (
        "{gateway} did not accept the operator's credentials: the platform team should check "
        "the gateway credentials in the operator's configuration (the token or client secret "
        "and its issuer and audience; the operator's log has the gateway's answer)"
    )


class GatewayTransient(GatewayError):
    """Unavailable, overloaded or too slow: retried a bounded number of times already."""

    transient = True


class GatewayInternal(GatewayError):
    """A gateway-side fault or an unsupported RPC; retrying will not help."""


class GatewayCredentialsError(GatewayError):
    """Our credentials could not be produced (unreadable file, token endpoint refused)."""

    withheld = (
        "the operator could not obtain credentials for {gateway}: the platform team should "
        "check the gateway's auth settings, the mounted credential files and the token "
        "endpoint (the operator's log has the details)"
    )

    def __init__(self, message: str, *, transient: bool, **context: Any) -> None:
        super().__init__(message, **context)
        self.transient = transient

    @property
    def reason(self) -> Reason:
        return Reason.GATEWAY_CREDENTIALS_UNAVAILABLE

    def for_call(
        self, gateway: str, rpc: str, request_id: str, attempts: int
    ) -> GatewayCredentialsError:
        """The same failure, tagged with the gateway and the call it stopped."""
        return GatewayCredentialsError(
            self.detail,
            transient=self.transient,
            gateway=gateway,
            rpc=rpc,
            request_id=request_id,
            attempts=attempts,
        )


#: Every gRPC status code and the class it becomes; a unit test checks none is missing.
CODE_TO_ERROR: dict[grpc.StatusCode, type[GatewayError]] = {
    grpc.StatusCode.OK: GatewayInternal,
    grpc.StatusCode.CANCELLED: GatewayTransient,
    grpc.StatusCode.UNKNOWN: GatewayInternal,
    grpc.StatusCode.INVALID_ARGUMENT: GatewayInvalid,
    grpc.StatusCode.DEADLINE_EXCEEDED: GatewayTransient,
    grpc.StatusCode.NOT_FOUND: GatewayNotFound,
    grpc.StatusCode.ALREADY_EXISTS: GatewayAlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: GatewayPermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: GatewayTransient,
    grpc.StatusCode.FAILED_PRECONDITION: GatewayPreconditionFailed,
    grpc.StatusCode.ABORTED: GatewayTransient,
    grpc.StatusCode.OUT_OF_RANGE: GatewayInvalid,
    grpc.StatusCode.UNIMPLEMENTED: GatewayInternal,
    grpc.StatusCode.INTERNAL: GatewayInternal,
    grpc.StatusCode.UNAVAILABLE: GatewayTransient,
    grpc.StatusCode.DATA_LOSS: GatewayInternal,
    grpc.StatusCode.UNAUTHENTICATED: GatewayUnauthenticated,
}


def from_rpc_error(
    rpc: str,
    err: grpc.aio.AioRpcError,
    *,
    gateway: str = "",
    request_id: str = "",
    attempts: int = 1,
    redact: Iterable[str] = (),
) -> GatewayError:
    """Translate one failed RPC into our hierarchy; the only place gRPC errors are read.

    Only the details and the decoded rich details are kept, scrubbed of ``redact`` (the
    secrets we hold) and of anything credential-shaped; never the rest of the trailing
    metadata nor ``debug_error_string``. Raise the result ``from None``."""
    secrets = tuple(redact)
    code: grpc.StatusCode = err.code()
    cls = CODE_TO_ERROR.get(code, GatewayInternal)
    message = scrub(err.details() or code.name.lower().replace("_", " "), secrets)
    violations, hint = _rich_details(err.trailing_metadata())
    return cls(
        message[:_MAX_MESSAGE],
        gateway=gateway,
        rpc=rpc,
        code=code.name,
        request_id=request_id,
        attempts=attempts,
        retry_after=hint,
        violations=tuple(
            FieldViolation(scrub(v.field, secrets), scrub(v.description, secrets))
            for v in violations
        ),
    )


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without the given secret values and without anything credential-shaped.

    The longest values go first, so a secret that contains another is removed whole."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _SECRET_SHAPES:
        text = pattern.sub(replacement, text)
    return text


def _rich_details(
    metadata: Any,
) -> tuple[tuple[FieldViolation, ...], float | None]:
    """Field violations and a retry hint from trailing metadata; junk is ignored, not fatal."""
    violations: list[FieldViolation] = []
    hint: float | None = None
    for key, value in tuple(metadata or ()):
        if key == _RETRY_AFTER_KEY:
            hint = _seconds(value)
        elif key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except Exception:  # a malformed detail must not hide the status code itself
                continue
            for detail in status.details:
                if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    violations.extend(
                        FieldViolation(v.field, v.description) for v in bad.field_violations
                    )
                elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    info = error_details_pb2.RetryInfo()
                    detail.Unpack(info)
                    delay = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
                    hint = max(hint or 0.0, delay)
    return tuple(violations), hint


def _seconds(value: str | bytes) -> float | None:
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    try:
        seconds = float(text.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
