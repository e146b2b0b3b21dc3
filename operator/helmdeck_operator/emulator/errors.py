"""Errors the emulated gateway raises, free of gRPC types.

The state machine is plain Python so it can be unit-tested without sockets; it signals a
failed call with `GatewayError`, naming the gRPC status code by its string name. The
servicer is the one place that turns these into `context.abort(...)` with the
`grpc-status-details-bin` trailer.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Code", "FieldViolation", "GatewayError", "invalid_field"]


class Code(StrEnum):
    """The gRPC status codes the emulator produces, spelled as `grpc.StatusCode` members."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    UNAVAILABLE = "UNAVAILABLE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True)
class FieldViolation:
    """One `google.rpc.BadRequest.FieldViolation`: which request field, and what is wrong."""

    field: str
    description: str


class GatewayError(Exception):
    """A call the gateway refuses; `violations` become BadRequest details when present."""

    def __init__(
        self, code: Code, message: str, violations: tuple[FieldViolation, ...] = ()
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.violations = violations


def invalid_field(field: str, description: str) -> GatewayError:
    """INVALID_ARGUMENT carrying a single field violation, the gateway's validation shape."""
    return GatewayError(
        Code.INVALID_ARGUMENT, f"{field}: {description}", (FieldViolation(field, description),)
    )
