"""The small value types gateway calls take and return, free of gRPC and transport types.

Reconcilers and status code depend on these, never on generated request or response
messages, so the wire format can change (0.1.x to 0.2) behind ``convert`` without touching
them. The one protobuf payload that passes through is the `SandboxPolicy` itself: it is the
domain value the policy translator produces and the live-change classifier compares. Enumerations
are string enums named as the gateway names its states, minus the protobuf prefix.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "AdmissionState",
    "Condition",
    "DeleteOutcome",
    "DeletionState",
    "Health",
    "HealthStatus",
    "Identity",
    "LogLine",
    "PolicyAdmission",
    "PolicyLoadState",
    "PolicyRevision",
    "PolicyStatus",
    "RestartPolicy",
    "Sandbox",
    "SandboxEvent",
    "SandboxPhase",
    "SandboxSpec",
    "ServiceAuthorization",
    "ServiceEndpoint",
    "ServiceExposure",
    "WatchEvent",
    "Workspace",
    "WorkspacePhase",
]


class SandboxPhase(enum.StrEnum):
    """Lifecycle phase as the gateway reports it; READY includes the supervisor connected."""

    UNSPECIFIED = "UNSPECIFIED"
    PROVISIONING = "PROVISIONING"
    READY = "READY"
    ERROR = "ERROR"
    DELETING = "DELETING"
    UNKNOWN = "UNKNOWN"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    STARTING = "STARTING"
    COMPLETED = "COMPLETED"


class PolicyLoadState(enum.StrEnum):
    """State of one policy revision; UNSPECIFIED where a call does not report it."""

    UNSPECIFIED = "UNSPECIFIED"
    PENDING = "PENDING"
    LOADED = "LOADED"
    FAILED = "FAILED"
    SUPERSEDED = "SUPERSEDED"


class AdmissionState(enum.StrEnum):
    """Whether the in-sandbox supervisor accepted the configuration it was sent."""

    UNSPECIFIED = "UNSPECIFIED"
    PENDING = "PENDING"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"


class DeletionState(enum.StrEnum):
    """COMPLETED: gone now; ACCEPTED: going (phase DELETING); ALREADY_ABSENT: was not there."""

    UNSPECIFIED = "UNSPECIFIED"
    COMPLETED = "COMPLETED"
    ACCEPTED = "ACCEPTED"
    ALREADY_ABSENT = "ALREADY_ABSENT"


class HealthStatus(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    HEALTHY = "HEALTHY"
    DEGRADED = "DEGRADED"
    UNHEALTHY = "UNHEALTHY"


class RestartPolicy(enum.StrEnum):
    """What the gateway does when the sandbox's main process exits."""

    NEVER = "NEVER"
    ON_FAILURE = "ON_FAILURE"
    ALWAYS = "ALWAYS"


class ServiceAuthorization(enum.StrEnum):
    """What the gateway does with a request's ``Authorization`` header on its way to a
    service: STRIP drops it (the gateway's default); BEARER_PASSTHROUGH forwards one
    well-formed ``Bearer`` credential unchanged (two, or a malformed one, get HTTP 400)."""

    STRIP = "STRIP"
    BEARER_PASSTHROUGH = "BEARER_PASSTHROUGH"


@dataclass(frozen=True, slots=True)
class ServiceExposure:
    """A port inside a sandbox to serve through the gateway, under ``name`` ("" is the
    sandbox's unnamed endpoint): a lowercase DNS label of at most 19 characters."""

    name: str
    port: int
    authorization: ServiceAuthorization = ServiceAuthorization.STRIP


@dataclass(frozen=True, slots=True)
class ServiceEndpoint:
    """A service endpoint as the gateway reports it: ``url`` on the gateway relays to
    ``port`` inside the sandbox (HTTP 412 while the sandbox is not READY)."""

    name: str
    port: int
    authorization: ServiceAuthorization
    url: str
    """Empty when the gateway has no base domain for service routing."""
    sandbox: str = ""


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    """What to run in a new sandbox, apart from its name, policy and metadata."""

    image: str = ""
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    resources: Mapping[str, Any] = field(default_factory=dict)
    """Kubernetes-style quantities, e.g. ``{"limits": {"cpu": "1", "memory": "1Gi"}}``."""
    gpu: int = 0
    """GPUs to attach; 0 for none."""
    providers: tuple[str, ...] = ()
    """Credential providers (by name) the gateway injects into the sandbox."""
    runtime_class_name: str = ""
    driver_config: Mapping[str, Any] = field(default_factory=dict)
    """Driver-specific settings (JSON-like), passed through untouched."""
    template_labels: Mapping[str, str] = field(default_factory=dict)
    """Labels for the driver's workload object (the pod, with the kubernetes driver)."""
    template_annotations: Mapping[str, str] = field(default_factory=dict)
    restart_policy: RestartPolicy | None = None
    log_level: str = ""


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: str
    reason: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class PolicyAdmission:
    """The supervisor's verdict on the configuration (policy version and hash) it got."""

    state: AdmissionState
    policy_version: int
    policy_hash: str
    error: str = ""


@dataclass(frozen=True, slots=True)
class Sandbox:
    """A sandbox as the gateway last reported it."""

    name: str
    id: str
    workspace: str
    phase: SandboxPhase
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    service_urls: Mapping[str, str] = field(default_factory=dict)
    """Endpoint URLs by service name: only in the answer to the create (``list_services``
    reads them later; the gateway's other sandbox answers leave the map empty)."""
    image: str = ""
    current_policy_version: int = 0
    """Latest policy version the sandbox has LOADED (0 before any)."""
    admission: PolicyAdmission | None = None
    configuration_activated: bool = False
    restart_count: int = 0
    exit_code: int = 0
    conditions: tuple[Condition, ...] = ()
    resource_version: int = 0
    created_at: datetime | None = None
    providers: tuple[str, ...] = ()
    """The credential providers attached now, in the gateway's order (attach and detach
    change them on the live sandbox)."""
    deleting: bool = False
    """The gateway has accepted a delete; the record goes once the driver confirms."""

    @property
    def is_ready(self) -> bool:
        return self.phase is SandboxPhase.READY


@dataclass(frozen=True, slots=True)
class DeleteOutcome:
    state: DeletionState
    sandbox_id: str = ""

    @property
    def gone(self) -> bool:
        """True when nothing is left to wait for."""
        return self.state in {DeletionState.COMPLETED, DeletionState.ALREADY_ABSENT}


@dataclass(frozen=True, slots=True)
class PolicyRevision:
    """One stored policy version of a sandbox.

    ``update_policy`` learns only version and hash from the gateway and reports
    ``status`` UNSPECIFIED; ``get_policy_status`` reports the load state.
    """

    version: int
    hash: str
    status: PolicyLoadState = PolicyLoadState.UNSPECIFIED
    load_error: str = ""
    policy: Any = None
    """The revision's `SandboxPolicy` message, when the call returned it."""


@dataclass(frozen=True, slots=True)
class PolicyStatus:
    revision: PolicyRevision
    active_version: int
    """The version the sandbox enforces now (the latest LOADED one)."""


@dataclass(frozen=True, slots=True)
class Health:
    status: HealthStatus
    version: str

    @property
    def is_healthy(self) -> bool:
        return self.status is HealthStatus.HEALTHY


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the gateway thinks we are (GetCurrentUser)."""

    subject: str
    display_name: str = ""
    roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    identity_provider: str = ""


@dataclass(frozen=True, slots=True)
class LogLine:
    """One gateway log line of a sandbox; OCSF events carry ``level == "OCSF"``."""

    sandbox_id: str
    time: datetime | None
    level: str
    target: str
    message: str
    source: str
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SandboxEvent:
    """A platform event about a sandbox (scheduling, image pull, driver messages)."""

    time: datetime | None
    source: str
    type: str
    reason: str
    message: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One message of a sandbox watch: exactly one of the optional fields is set."""

    cursor: str
    sandbox: Sandbox | None = None
    log: LogLine | None = None
    event: SandboxEvent | None = None
    warning: str | None = None


class WorkspacePhase(enum.StrEnum):
    """TERMINATING from a DeleteWorkspace on (even a refused one): nothing new goes in."""

    UNSPECIFIED = "UNSPECIFIED"
    ACTIVE = "ACTIVE"
    TERMINATING = "TERMINATING"


@dataclass(frozen=True, slots=True)
class Workspace:
    """A gateway workspace: the scope of sandbox names, endpoints and membership."""

    name: str
    id: str
    phase: WorkspacePhase
    labels: Mapping[str, str] = field(default_factory=dict)
