"""The words the operator writes into status and Events, each defined once.

Phases, condition types, condition reasons, Event types and Event reasons are part of the
API users script against (`kubectl wait --for=condition=Ready`, alerts on a reason, Argo CD
health in Lua): string enums here, so a typo is a type error and a newcomer finds every word
in one file. `PERMANENT_REASONS` is the one table of failures that only a change of the
session fixes. Nothing here imports anything: every layer may use it.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "PERMANENT_REASONS",
    "ConditionType",
    "EventReason",
    "EventType",
    "Phase",
    "PolicyState",
    "Reason",
]


class Phase(StrEnum):
    """HelmdeckSession status.phase."""

    PENDING = "Pending"
    PROVISIONING = "Provisioning"
    READY = "Ready"
    SUSPENDED = "Suspended"
    FAILED = "Failed"
    EXPIRED = "Expired"
    TERMINATING = "Terminating"


class PolicyState(StrEnum):
    """HelmdeckSession status.policy.state: where the desired revision stands on the gateway."""

    PENDING = "Pending"
    LOADED = "Loaded"
    FAILED = "Failed"
    SUPERSEDED = "Superseded"


class ConditionType(StrEnum):
    # HelmdeckSession
    READY = "Ready"
    PROVISIONED = "Provisioned"
    POLICY_APPLIED = "PolicyApplied"
    POOL_CLAIMED = "PoolClaimed"
    """Only on a session with spec.poolRef: claimed from its pool, or why it was not."""
    ENDPOINTS_EXPOSED = "EndpointsExposed"
    """Every port (spec.ports or the family's) has its endpoint on the gateway."""
    PROVIDERS_ATTACHED = "ProvidersAttached"
    """The sandbox's providers on the gateway are exactly spec.providers."""
    LIFETIME_EXTENDED = "LifetimeExtended"
    """Only once the consumer asked for a later end (status.lease.expireTime)."""
    # SidecarPolicy
    VALID = "Valid"
    APPLIED = "Applied"


class Reason(StrEnum):
    """Condition reasons. A gateway error's reason is "Gateway" + its gRPC code in
    CamelCase (`gateway_reason`), or the error's class name when no RPC answered."""

    # HelmdeckSession lifecycle
    CREATING = "Creating"
    PROVISIONING = "Provisioning"
    SANDBOX_CREATED = "SandboxCreated"
    SANDBOX_READY = "SandboxReady"
    SANDBOX_DELETING = "SandboxDeleting"
    RECREATING = "Recreating"
    STOPPING = "Stopping"
    STARTING = "Starting"
    SUSPENDED = "Suspended"
    EXPIRED = "Expired"
    TERMINATING = "Terminating"
    SANDBOX_ERROR = "SandboxError"
    SANDBOX_COMPLETED = "SandboxCompleted"
    SANDBOX_LOST = "SandboxLost"
    SANDBOX_NAME_CONFLICT = "SandboxNameConflict"
    GATEWAY_NOT_CONFIGURED = "GatewayNotConfigured"
    IDLE = "Idle"
    """No renewal and no sandbox activity for lifetime.idleTimeout."""
    # Tenancy (core/tenancy.py): the namespace's TenantPolicy
    TENANCY_REFUSED = "TenancyRefused"
    """The object asks for something its namespace's TenantPolicy does not allow (or the
    namespace names a TenantPolicy that does not exist). Re-checked when the rules change."""
    QUOTA_EXCEEDED = "QuotaExceeded"
    """The namespace's sessions already take what its TenantPolicy allows in total: the
    session waits, and proceeds when room frees."""
    # Endpoints (EndpointsExposed; a refusal carries the gateway's reason)
    PORTS_EXPOSED = "PortsExposed"
    EXPOSING = "Exposing"
    # Providers (ProvidersAttached; a refusal carries the gateway's reason)
    PROVIDERS_ATTACHED = "ProvidersAttached"
    ATTACHING_PROVIDERS = "AttachingProviders"
    # Lease renewals (LifetimeExtended)
    EXTENDED = "Extended"
    EXTENSION_REFUSED = "ExtensionRefused"
    # The session's policy (PolicyApplied)
    POLICY_LOADED = "PolicyLoaded"
    POLICY_PENDING = "PolicyPending"
    POLICY_LOAD_FAILED = "PolicyLoadFailed"
    POLICY_REJECTED = "PolicyRejected"
    POLICY_NOT_FOUND = "PolicyNotFound"
    POLICY_INVALID = "PolicyInvalid"
    EGRESS_GUARDED = "EgressGuarded"
    """The policy opens an address or name the platform's egress guard closes (policy/guard.py):
    never sent. Also the SidecarPolicy's Valid reason."""
    RECREATE_PENDING = "RecreatePending"
    STATIC_CHANGE_REJECTED = "StaticChangeRejected"
    # SidecarPolicy (Valid, Applied)
    TRANSLATED = "Translated"
    INVALID = "Invalid"
    PROGRESSING = "Progressing"
    LOADED = "Loaded"
    NO_SESSIONS = "NoSessions"
    SESSIONS_REFUSED = "SessionsRefused"
    # A session's claim on its SessionPool (PoolClaimed)
    WAITING_FOR_POOL = "WaitingForPool"
    CLAIMED_FROM_POOL = "ClaimedFromPool"
    POOL_EMPTY = "PoolEmpty"
    POOL_SHAPE_MISMATCH = "PoolShapeMismatch"
    POOL_POLICY_NOT_LIVE = "PoolPolicyNotLive"
    POOL_NOT_FOUND = "PoolNotFound"
    # SessionPool (Ready)
    POOL_FILLED = "PoolFilled"
    POOL_FILLING = "PoolFilling"
    # Gateway errors, by gRPC status code
    GATEWAY_OK = "GatewayOk"
    GATEWAY_CANCELLED = "GatewayCancelled"
    GATEWAY_UNKNOWN = "GatewayUnknown"
    GATEWAY_INVALID_ARGUMENT = "GatewayInvalidArgument"
    GATEWAY_DEADLINE_EXCEEDED = "GatewayDeadlineExceeded"
    GATEWAY_NOT_FOUND = "GatewayNotFound"
    GATEWAY_ALREADY_EXISTS = "GatewayAlreadyExists"
    GATEWAY_PERMISSION_DENIED = "GatewayPermissionDenied"
    GATEWAY_RESOURCE_EXHAUSTED = "GatewayResourceExhausted"
    GATEWAY_FAILED_PRECONDITION = "GatewayFailedPrecondition"
    GATEWAY_ABORTED = "GatewayAborted"
    GATEWAY_OUT_OF_RANGE = "GatewayOutOfRange"
    GATEWAY_UNIMPLEMENTED = "GatewayUnimplemented"
    GATEWAY_INTERNAL = "GatewayInternal"
    GATEWAY_UNAVAILABLE = "GatewayUnavailable"
    GATEWAY_DATA_LOSS = "GatewayDataLoss"
    GATEWAY_UNAUTHENTICATED = "GatewayUnauthenticated"
    # Gateway errors without an answer from the gateway (no gRPC code)
    GATEWAY_ERROR = "GatewayError"
    GATEWAY_TRANSIENT = "GatewayTransient"
    GATEWAY_INVALID = "GatewayInvalid"
    GATEWAY_PRECONDITION_FAILED = "GatewayPreconditionFailed"
    GATEWAY_CREDENTIALS_UNAVAILABLE = "GatewayCredentialsUnavailable"

    @classmethod
    def for_gateway_code(cls, code: str) -> Reason:
        """The reason of a gRPC status code name (`INVALID_ARGUMENT` -> GatewayInvalidArgument)."""
        return cls("Gateway" + "".join(part.capitalize() for part in code.split("_")))


#: Failure reasons that only a change of the session fixes: it stays Failed until its spec
#: changes (a new generation), and a create the gateway answers with one of them is not
#: retried. Problems fixed on the operator's or the gateway's side (credentials,
#: permissions, a gateway missing from the configuration, outages) are not here: those are
#: retried with back-off, so sessions recover without anyone touching them.
PERMANENT_REASONS = frozenset(
    {
        Reason.SANDBOX_ERROR,
        Reason.SANDBOX_COMPLETED,
        Reason.SANDBOX_LOST,
        Reason.SANDBOX_NAME_CONFLICT,
        Reason.GATEWAY_INVALID_ARGUMENT,
        Reason.GATEWAY_OUT_OF_RANGE,
        Reason.GATEWAY_FAILED_PRECONDITION,
    }
)


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


class EventReason(StrEnum):
    """Reasons of the Events the operator posts (a failure's Event carries its `Reason`)."""

    # HelmdeckSession
    PROVISIONED = "Provisioned"
    READY = "Ready"
    POLICY_APPLIED = "PolicyApplied"
    POLICY_REJECTED = "PolicyRejected"
    RECREATING = "Recreating"
    SUSPENDED = "Suspended"
    RESUMED = "Resumed"
    EXPIRED = "Expired"
    IDLE = "Idle"
    """No renewal and no sandbox activity for lifetime.idleTimeout: suspended or deleted."""
    SANDBOX_LOST = "SandboxLost"
    ENDPOINT_FAILED = "EndpointFailed"
    """The gateway refused to expose a port of a running session (Warning)."""
    PROVIDER_FAILED = "ProviderFailed"
    """The gateway refused to attach a provider to a running session (Warning)."""
    POLICY_DENIED = "PolicyDenied"
    """An OCSF denial from the sandbox's proxy (docs/observability.md)."""
    POOL_CLAIMED = "PoolClaimed"
    POOL_FALLBACK = "PoolFallback"
    """A session that names a pool was created cold; the reason says why (Warning)."""
    # SidecarPolicy
    INVALID = "Invalid"
    EGRESS_GUARDED = "EgressGuarded"
    """The egress guard refused the policy (Warning): it names each field."""
    TENANCY_REFUSED = "TenancyRefused"
    """The namespace's TenantPolicy refused the policy or the session (Warning)."""
    APPLIED = "Applied"
    SESSIONS_REFUSED = "SessionsRefused"
