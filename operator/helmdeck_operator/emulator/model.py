"""The records the emulated gateway keeps, and how they look on the wire.

Plain dataclasses holding protobuf message values (spec, policy, log lines) so the state
machine can stay free of gRPC while responses are built field-for-field as the 0.1.5 stubs
define them. `to_dict` gives the JSON-friendly view that tests and `GET /snapshot` read.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from openshell._proto import datamodel_pb2, openshell_pb2, sandbox_pb2

__all__ = [
    "ProviderReceipt",
    "Revision",
    "SandboxRecord",
    "ServiceRecord",
    "WorkspaceRecord",
    "phase_name",
    "policy_status_name",
    "service_url",
    "timestamp",
]

PHASE = openshell_pb2.SandboxPhase
POLICY_STATUS = openshell_pb2.PolicyStatus
_ACCEPTED = openshell_pb2.CONFIGURATION_ADMISSION_STATE_ACCEPTED
_REJECTED = openshell_pb2.CONFIGURATION_ADMISSION_STATE_REJECTED


def timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def phase_name(phase: int) -> str:
    """`READY` for SANDBOX_PHASE_READY: the short form used in snapshots and messages."""
    return str(PHASE.Name(phase)).removeprefix("SANDBOX_PHASE_")


def policy_status_name(status: int) -> str:
    return str(POLICY_STATUS.Name(status)).removeprefix("POLICY_STATUS_")


def _routed(*names: str) -> str:
    """Names joined by `--`, the unnamed endpoint's "" left out; no name may contain `--`,
    so the gateway can split a joined name back."""
    return "--".join(name for name in names if name)


def service_url(domain: str, workspace: str, sandbox: str, service: str) -> str:
    """Where the gateway serves an endpoint: one host label per endpoint."""
    return f"http://{_routed(workspace, sandbox, service)}.{domain}/"


@dataclass(frozen=True)
class ServiceRecord:
    """One service endpoint of a sandbox: the gateway relays `url` to 127.0.0.1:`port`
    inside it. Re-exposing the name replaces port and mode, keeping id and creation time."""

    workspace: str
    sandbox: str
    sandbox_id: str
    name: str  # "" is the sandbox's unnamed endpoint
    port: int
    authorization: openshell_pb2.ServiceAuthorizationMode
    url: str
    id: str
    seq: int  # creation order across the gateway: the order lists and page tokens use
    created: float
    resource_version: int = 1

    def to_proto(self) -> openshell_pb2.ServiceEndpointResponse:
        meta = datamodel_pb2.ObjectMeta(
            id=self.id,
            # The gateway stores an endpoint under `sandbox` or `sandbox--service`.
            name=_routed(self.sandbox, self.name),
            created_time=timestamp(self.created),
            labels={"sandbox": self.sandbox},
            resource_version=self.resource_version,
            workspace=self.workspace,
        )
        endpoint = openshell_pb2.ServiceEndpoint(
            metadata=meta,
            sandbox_id=self.sandbox_id,
            sandbox=self.sandbox,
            name=self.name,
            target_port=self.port,
            domain=True,
            authorization_mode=self.authorization,
        )
        return openshell_pb2.ServiceEndpointResponse(endpoint=endpoint, url=self.url)

    def to_dict(self) -> dict[str, Any]:
        mode = openshell_pb2.ServiceAuthorizationMode.Name(self.authorization)
        return {
            "name": self.name,
            "port": self.port,
            "authorization": str(mode).removeprefix("SERVICE_AUTHORIZATION_MODE_"),
            "url": self.url,
        }


@dataclass(frozen=True)
class ProviderReceipt:
    """What one provider call recorded (an attach, a detach, or a status query without a
    receipt): the sandbox's provider set as that call left it, kept with the sandbox so a
    later GetSandboxProviderStatus can tell whether it still stands."""

    receipt_id: str
    mutation_id: str
    provider: str
    workspace: str
    kind: openshell_pb2.ProviderMutationKind
    sandbox_id: str
    sandbox: str
    attachment_epoch: str
    provider_id: str
    """Empty when the provider is not attached (a detach, or a query of a detached one)."""
    provider_resource_version: int
    persisted: float

    def desired(self) -> openshell_pb2.ProviderDesiredIdentity:
        return openshell_pb2.ProviderDesiredIdentity(
            sandbox_id=self.sandbox_id,
            sandbox=self.sandbox,
            attachment_epoch=self.attachment_epoch,
            provider_id=self.provider_id,
            provider_resource_version=self.provider_resource_version,
        )

    def to_proto(self) -> openshell_pb2.ProviderMutationReceipt:
        return openshell_pb2.ProviderMutationReceipt(
            receipt_id=self.receipt_id,
            mutation_id=self.mutation_id,
            provider=self.provider,
            workspace=self.workspace,
            kind=self.kind,
            desired=self.desired(),
            persisted_time=timestamp(self.persisted),
        )


@dataclass
class Revision:
    """One stored policy version of one sandbox."""

    version: int
    policy: sandbox_pb2.SandboxPolicy
    policy_hash: str
    annotations: dict[str, str]
    created: float
    status: openshell_pb2.PolicyStatus = openshell_pb2.POLICY_STATUS_PENDING
    load_error: str = ""
    loaded: float | None = None
    #: Monotonic instant the supervisor will have loaded it; None while it cannot load.
    load_due: float | None = None

    def to_proto(self) -> openshell_pb2.SandboxPolicyRevision:
        msg = openshell_pb2.SandboxPolicyRevision(
            version=self.version,
            policy_hash=self.policy_hash,
            status=self.status,
            load_error=self.load_error,
            created_time=timestamp(self.created),
            policy=self.policy,
            provenance=self.annotations,
        )
        if self.loaded is not None:
            msg.loaded_time.CopyFrom(timestamp(self.loaded))
        return msg

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "policy_hash": self.policy_hash,
            "status": policy_status_name(self.status),
            "load_error": self.load_error,
            "annotations": dict(self.annotations),
            "created": self.created,
            "loaded": self.loaded,
        }


@dataclass
class SandboxRecord:
    """One sandbox as the gateway stores it; (workspace, name) is unique while it exists."""

    workspace: str
    name: str
    id: str
    seq: int  # creation order: the stable order lists and page tokens rely on
    labels: dict[str, str]
    annotations: dict[str, str]
    spec: openshell_pb2.SandboxSpec
    created: float
    phase: openshell_pb2.SandboxPhase = openshell_pb2.SANDBOX_PHASE_PROVISIONING
    updated: float = 0.0
    resource_version: int = 1
    #: Monotonic instant the current transitional phase ends (None: not transitional).
    phase_due: float | None = None
    deletion_time: float | None = None
    error_message: str = ""
    exit_code: int = 0
    restart_count: int = 0
    #: Times the sandbox came up (PROVISIONING/STARTING -> READY); hot reloads leave it alone.
    boots: int = 0
    revisions: list[Revision] = field(default_factory=list)
    current_policy_version: int = 0
    settings: dict[str, sandbox_pb2.SettingValue] = field(default_factory=dict)
    settings_revision: int = 0
    #: Service endpoints by name, in creation order; they go when the record goes.
    services: dict[str, ServiceRecord] = field(default_factory=dict)
    #: Provider receipts by id, as GetSandboxProviderStatus finds them; they go with the record.
    receipts: dict[str, ProviderReceipt] = field(default_factory=dict)
    logs: deque[openshell_pb2.SandboxLogLine] = field(default_factory=lambda: deque(maxlen=1000))
    history: list[dict[str, Any]] = field(default_factory=list)

    def latest(self) -> Revision | None:
        return self.revisions[-1] if self.revisions else None

    def revision(self, version: int) -> Revision | None:
        return next((r for r in self.revisions if r.version == version), None)

    def _admission(self) -> openshell_pb2.SandboxConfigurationAdmission | None:
        rev = self.latest()
        if rev is None:
            return None
        state = {
            openshell_pb2.POLICY_STATUS_LOADED: _ACCEPTED,
            openshell_pb2.POLICY_STATUS_FAILED: _REJECTED,
        }.get(rev.status, openshell_pb2.CONFIGURATION_ADMISSION_STATE_PENDING)
        return openshell_pb2.SandboxConfigurationAdmission(
            instance_id=f"{self.id}/{self.boots}",
            state=state,
            policy_version=rev.version,
            policy_hash=rev.policy_hash,
            config_revision=rev.version + self.settings_revision,
            error=rev.load_error,
        )

    def _conditions(self) -> list[openshell_pb2.SandboxCondition]:
        ready = self.phase == openshell_pb2.SANDBOX_PHASE_READY
        reason = "SupervisorConnected" if ready else phase_name(self.phase).title()
        message = self.error_message or f"sandbox is {phase_name(self.phase).lower()}"
        return [
            openshell_pb2.SandboxCondition(
                type="Ready",
                status="True" if ready else "False",
                reason=reason,
                message=message,
                transition_time=timestamp(self.updated),
            )
        ]

    def to_proto(self) -> openshell_pb2.Sandbox:
        meta = datamodel_pb2.ObjectMeta(
            id=self.id,
            name=self.name,
            created_time=timestamp(self.created),
            labels=self.labels,
            resource_version=self.resource_version,
            annotations=self.annotations,
            workspace=self.workspace,
        )
        if self.deletion_time is not None:
            meta.deletion_time.CopyFrom(timestamp(self.deletion_time))
        status = openshell_pb2.SandboxStatus(
            phase=self.phase,
            current_policy_version=self.current_policy_version,
            restart_count=self.restart_count,
            exit_code=self.exit_code,
            conditions=self._conditions(),
            main_process_instance_id=f"{self.id}/{self.boots}" if self.boots else "",
        )
        admission = self._admission()
        if admission is not None:
            status.configuration_admission.CopyFrom(admission)
            status.configuration_activated = admission.state == _ACCEPTED
        return openshell_pb2.Sandbox(metadata=meta, spec=self.spec, status=status)

    def to_dict(self) -> dict[str, Any]:
        return {
            "workspace": self.workspace,
            "name": self.name,
            "id": self.id,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "phase": phase_name(self.phase),
            "resource_version": self.resource_version,
            "created": self.created,
            "updated": self.updated,
            "deletion_time": self.deletion_time,
            "error_message": self.error_message,
            "restart_count": self.restart_count,
            "boots": self.boots,
            "services": [s.to_dict() for s in self.services.values()],
            "current_policy_version": self.current_policy_version,
            "revisions": [r.to_dict() for r in self.revisions],
            "settings": {k: json_format.MessageToDict(v) for k, v in sorted(self.settings.items())},
            "settings_revision": self.settings_revision,
            "spec": json_format.MessageToDict(self.spec),
            "log_lines": len(self.logs),
            "history": list(self.history),
        }


@dataclass
class WorkspaceRecord:
    """One workspace: the scope of sandbox names, endpoints and membership. `deleting` once
    a DeleteWorkspace marked it (the gateway keeps it TERMINATING even when the delete was
    refused for the resources still in it: no sandbox can be created there any more)."""

    name: str
    id: str
    seq: int  # creation order: the order ListWorkspaces and its page tokens use
    labels: dict[str, str]
    created: float
    resource_version: int = 1
    deleting: bool = False

    def to_proto(self) -> datamodel_pb2.Workspace:
        phase = (
            datamodel_pb2.WORKSPACE_PHASE_TERMINATING
            if self.deleting
            else datamodel_pb2.WORKSPACE_PHASE_ACTIVE
        )
        meta = datamodel_pb2.ObjectMeta(
            id=self.id,
            name=self.name,
            created_time=timestamp(self.created),
            labels=self.labels,
            resource_version=self.resource_version,
        )
        return datamodel_pb2.Workspace(
            metadata=meta, status=datamodel_pb2.WorkspaceStatus(phase=phase)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": self.id,
            "labels": dict(self.labels),
            "phase": "TERMINATING" if self.deleting else "ACTIVE",
        }
