"""The OpenShell gateway client: the one layer of the operator that speaks gRPC.

Reconcilers use ``GatewayClient`` (one per configured gateway), the value types it
returns and the ``GatewayError`` hierarchy it raises; nothing here hands out a generated
protobuf type except the ``SandboxPolicy`` message that policy translation produces.

The value types (``models``) and the configuration load with this package; the client and
the errors, which import gRPC, load on first use (PEP 562), so that the functional core can
read a ``Sandbox`` without bringing gRPC in (tests/unit/test_import_boundaries.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from helmdeck_operator.gateway.config import GatewayConfig, RetryPolicy, TlsConfig
from helmdeck_operator.gateway.models import (
    AdmissionState,
    DeleteOutcome,
    DeletionState,
    Health,
    HealthStatus,
    Identity,
    LogLine,
    PolicyAdmission,
    PolicyLoadState,
    PolicyRevision,
    PolicyStatus,
    RestartPolicy,
    Sandbox,
    SandboxEvent,
    SandboxPhase,
    SandboxSpec,
    WatchEvent,
)

if TYPE_CHECKING:
    from helmdeck_operator.gateway.client import CallRecord, GatewayClient
    from helmdeck_operator.gateway.errors import (
        FieldViolation,
        GatewayAlreadyExists,
        GatewayCredentialsError,
        GatewayError,
        GatewayInternal,
        GatewayInvalid,
        GatewayNotFound,
        GatewayPermissionDenied,
        GatewayPreconditionFailed,
        GatewayTransient,
        GatewayUnauthenticated,
    )

#: The names that load their module (and gRPC) on first use.
_LAZY = {
    "CallRecord": "client",
    "GatewayClient": "client",
    **dict.fromkeys(
        (
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
        ),
        "errors",
    ),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "AdmissionState",
    "CallRecord",
    "DeleteOutcome",
    "DeletionState",
    "FieldViolation",
    "GatewayAlreadyExists",
    "GatewayClient",
    "GatewayConfig",
    "GatewayCredentialsError",
    "GatewayError",
    "GatewayInternal",
    "GatewayInvalid",
    "GatewayNotFound",
    "GatewayPermissionDenied",
    "GatewayPreconditionFailed",
    "GatewayTransient",
    "GatewayUnauthenticated",
    "Health",
    "HealthStatus",
    "Identity",
    "LogLine",
    "PolicyAdmission",
    "PolicyLoadState",
    "PolicyRevision",
    "PolicyStatus",
    "RestartPolicy",
    "RetryPolicy",
    "Sandbox",
    "SandboxEvent",
    "SandboxPhase",
    "SandboxSpec",
    "TlsConfig",
    "WatchEvent",
]
