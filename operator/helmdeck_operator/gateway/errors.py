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
Texts carry the gateway's message but never metadata, and known secret values are redacted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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
]

#: Replaces a known secret wherever it shows up in a message from the gateway.
REDACTED = "[REDACTED]"
#: Trailing metadata key of the serialized google.rpc.Status (gRPC "rich error model").
_STATUS_DETAILS_KEY = "grpc-status-details-bin"
#: Gateways and proxies in front of them may hint a retry delay in seconds.
_RETRY_AFTER_KEY = "retry-after"
#: Bound on the message we keep: a gateway error text is for humans, not a log dump.
_MAX_MESSAGE = 1024


@dataclass(frozen=True)
class FieldViolation:
    """One rejected field from a google.rpc.BadRequest detail."""

    field: str
    description: str


class GatewayError(Exception):
    """A gateway call failed; ``reason`` names why, ``is_transient`` whether to retry soon."""

    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        rpc: str = "",
        code: str = "",
        request_id: str = "",
        attempts: int = 0,
        retry_after: float | None = None,
        violations: tuple[FieldViolation, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
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
        where = f"{self.rpc}: " if self.rpc else ""
        code = f"{self.code}: " if self.code else ""
        rid = f" (request id {self.request_id})" if self.request_id else ""
        return f"{where}{code}{self.message}{rid}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class GatewayNotFound(GatewayError):
    """The named object does not exist in the gateway's workspace."""


class GatewayAlreadyExists(GatewayError):
    """The name is taken; after a retried create it is most likely our own sandbox."""


class GatewayInvalid(GatewayError):
    """The gateway rejected the request's content; ``violations`` lists the fields."""

    def __str__(self) -> str:
        base = super().__str__()
        if not self.violations:
            return base
        fields = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        return f"{base} [{fields}]"


class GatewayPreconditionFailed(GatewayError):
    """The request is valid but the gateway's state forbids it (wrong phase, no provider)."""


class GatewayPermissionDenied(GatewayError):
    """Our identity lacks a role or scope for this call."""


class GatewayUnauthenticated(GatewayError):
    """The gateway did not accept our credentials."""


class GatewayTransient(GatewayError):
    """Unavailable, overloaded or too slow: retried a bounded number of times already."""

    transient = True


class GatewayInternal(GatewayError):
    """A gateway-side fault or an unsupported RPC; retrying will not help."""


class GatewayCredentialsError(GatewayError):
    """Our credentials could not be produced (unreadable file, token endpoint refused)."""

    def __init__(self, message: str, *, transient: bool, **context: Any) -> None:
        super().__init__(message, **context)
        self.transient = transient

    @property
    def reason(self) -> Reason:
        return Reason.GATEWAY_CREDENTIALS_UNAVAILABLE

    def for_call(self, rpc: str, request_id: str, attempts: int) -> GatewayCredentialsError:
        """The same failure, tagged with the call it stopped."""
        return GatewayCredentialsError(
            self.message,
            transient=self.transient,
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
    request_id: str = "",
    attempts: int = 1,
    redact: Iterable[str] = (),
) -> GatewayError:
    """Translate one failed RPC into our hierarchy; the only place gRPC errors are read."""
    code: grpc.StatusCode = err.code()
    cls = CODE_TO_ERROR.get(code, GatewayInternal)
    message = _redact(err.details() or code.name.lower().replace("_", " "), redact)
    violations, hint = _rich_details(err.trailing_metadata())
    return cls(
        message[:_MAX_MESSAGE],
        rpc=rpc,
        code=code.name,
        request_id=request_id,
        attempts=attempts,
        retry_after=hint,
        violations=tuple(
            FieldViolation(v.field, _redact(v.description, redact)) for v in violations
        ),
    )


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
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
