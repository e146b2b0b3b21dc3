"""The OpenShell gateway client: the one layer of the operator that speaks gRPC.

Reconcilers use ``GatewayClient`` (one per configured gateway), the value types it
returns and the ``GatewayError`` hierarchy it raises; nothing here hands out a generated
protobuf type except the ``SandboxPolicy`` message that policy translation produces.
"""

from helmdeck_operator.gateway.client import CallRecord, GatewayClient
from helmdeck_operator.gateway.config import GatewayConfig, RetryPolicy, TlsConfig
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
