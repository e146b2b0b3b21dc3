"""Translation between generated OpenShell messages and our own value types.

The only module besides the client that touches generated protobuf classes. Enum values
the gateway may add later (a newer server) become UNKNOWN/UNSPECIFIED instead of failing.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from openshell._proto import datamodel_pb2, openshell_pb2, sandbox_pb2

from helmdeck_operator.gateway import models

__all__ = [
    "delete_outcome",
    "deletion_state",
    "every_workspace",
    "health",
    "identity",
    "label_selector",
    "log_line",
    "policy_revision",
    "policy_status",
    "sandbox",
    "sandbox_spec",
    "service_authorization_mode",
    "service_endpoint",
    "service_exposure",
    "watch_event",
    "workspace",
    "workspace_scope",
]

_E = TypeVar("_E", bound=enum.StrEnum)


def _enum(proto_enum: Any, value: int, prefix: str, ours: type[_E], default: _E) -> _E:
    """Our member of the same name as a protobuf enum value, or ``default``."""
    try:
        name: str = proto_enum.Name(value)
    except ValueError:
        return default
    return ours.__members__.get(name.removeprefix(prefix), default)


def _time(ts: Any, present: bool) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if present else None


def workspace_scope(workspace: str) -> datamodel_pb2.WorkspaceSelector:
    return datamodel_pb2.WorkspaceSelector(workspace=workspace)


def every_workspace() -> datamodel_pb2.WorkspaceSelector:
    return datamodel_pb2.WorkspaceSelector(all_workspaces=datamodel_pb2.AllWorkspaces())


def workspace(message: datamodel_pb2.Workspace) -> models.Workspace:
    return models.Workspace(
        name=message.metadata.name,
        id=message.metadata.id,
        phase=_enum(
            datamodel_pb2.WorkspacePhase,
            message.status.phase,
            "WORKSPACE_PHASE_",
            models.WorkspacePhase,
            models.WorkspacePhase.UNSPECIFIED,
        ),
        labels=dict(message.metadata.labels),
    )


def label_selector(labels: Mapping[str, str] | None) -> str:
    """The gateway's equality selector ``k=v,k2=v2``, sorted so requests are stable."""
    if not labels:
        return ""
    for key, value in labels.items():
        if not key or any(ch in key + value for ch in ",="):
            raise ValueError(f"label {key!r}={value!r} cannot be expressed as a selector")
    return ",".join(f"{key}={labels[key]}" for key in sorted(labels))


def sandbox_spec(
    spec: models.SandboxSpec, policy: sandbox_pb2.SandboxPolicy | None
) -> openshell_pb2.SandboxSpec:
    template = openshell_pb2.SandboxTemplate(
        image=spec.image,
        runtime_class_name=spec.runtime_class_name,
        labels=dict(spec.template_labels),
        annotations=dict(spec.template_annotations),
    )
    if spec.resources:
        template.resources.update(dict(spec.resources))
    if spec.driver_config:
        template.driver_config.update(dict(spec.driver_config))
    restart = spec.restart_policy
    message = openshell_pb2.SandboxSpec(
        log_level=spec.log_level,
        environment=dict(spec.env),
        template=template,
        providers=list(spec.providers),
        command=list(spec.command),
        restart_policy=f"SANDBOX_RESTART_POLICY_{restart.value}" if restart else None,
    )
    if policy is not None:
        message.policy.CopyFrom(policy)
    if spec.gpu:
        message.resource_requirements.gpu.count = spec.gpu
    return message


def _interned(values: Mapping[str, str]) -> dict[str, str]:
    """Labels and annotations with their keys and values interned: thousands of cached
    sandboxes share the same keys and most values (instance, family, shape, revision)."""
    return {sys.intern(k): sys.intern(v) for k, v in values.items()}


def sandbox(
    message: openshell_pb2.Sandbox, service_urls: Mapping[str, str] | None = None
) -> models.Sandbox:
    meta = message.metadata
    status = message.status
    admission = None
    if status.HasField("configuration_admission"):
        adm = status.configuration_admission
        admission = models.PolicyAdmission(
            state=_enum(
                openshell_pb2.ConfigurationAdmissionState,
                adm.state,
                "CONFIGURATION_ADMISSION_STATE_",
                models.AdmissionState,
                models.AdmissionState.UNSPECIFIED,
            ),
            policy_version=adm.policy_version,
            policy_hash=adm.policy_hash,
            error=adm.error,
        )
    return models.Sandbox(
        name=meta.name,
        id=meta.id,
        workspace=meta.workspace,
        phase=_enum(
            openshell_pb2.SandboxPhase,
            status.phase,
            "SANDBOX_PHASE_",
            models.SandboxPhase,
            models.SandboxPhase.UNKNOWN,
        ),
        labels=_interned(meta.labels),
        annotations=_interned(meta.annotations),
        service_urls=dict(service_urls or {}),
        image=message.spec.template.image,
        current_policy_version=status.current_policy_version,
        admission=admission,
        configuration_activated=status.configuration_activated,
        restart_count=status.restart_count,
        exit_code=status.exit_code,
        conditions=tuple(
            models.Condition(type=c.type, status=c.status, reason=c.reason, message=c.message)
            for c in status.conditions
        ),
        resource_version=meta.resource_version,
        created_at=_time(meta.created_time, meta.HasField("created_time")),
        providers=tuple(message.spec.providers),
        deleting=meta.HasField("deletion_time"),
    )


def deletion_state(outcome: int) -> models.DeletionState:
    return _enum(
        openshell_pb2.DeletionOutcome,
        outcome,
        "DELETION_OUTCOME_",
        models.DeletionState,
        models.DeletionState.UNSPECIFIED,
    )


def delete_outcome(message: openshell_pb2.DeleteSandboxResponse) -> models.DeleteOutcome:
    return models.DeleteOutcome(
        state=deletion_state(message.outcome), sandbox_id=message.sandbox_id
    )


def service_authorization_mode(
    authorization: models.ServiceAuthorization,
) -> openshell_pb2.ServiceAuthorizationMode:
    """Sent explicitly, STRIP too: no gateway has to fill in a default."""
    return {
        models.ServiceAuthorization.STRIP: openshell_pb2.SERVICE_AUTHORIZATION_MODE_STRIP,
        models.ServiceAuthorization.BEARER_PASSTHROUGH: (
            openshell_pb2.SERVICE_AUTHORIZATION_MODE_BEARER_PASSTHROUGH
        ),
    }[authorization]


def service_exposure(exposure: models.ServiceExposure) -> openshell_pb2.SandboxServiceExposure:
    return openshell_pb2.SandboxServiceExposure(
        service=exposure.name,
        target_port=exposure.port,
        authorization_mode=service_authorization_mode(exposure.authorization),
    )


def service_endpoint(message: openshell_pb2.ServiceEndpointResponse) -> models.ServiceEndpoint:
    """UNSPECIFIED (an endpoint stored before the gateway had modes) is STRIP, as the
    gateway itself reads it; a mode newer than these stubs is read as STRIP too, the one
    mode every gateway version has."""
    endpoint = message.endpoint
    return models.ServiceEndpoint(
        name=endpoint.name,
        port=endpoint.target_port,
        authorization=_enum(
            openshell_pb2.ServiceAuthorizationMode,
            endpoint.authorization_mode,
            "SERVICE_AUTHORIZATION_MODE_",
            models.ServiceAuthorization,
            models.ServiceAuthorization.STRIP,
        ),
        url=message.url,
        sandbox=endpoint.sandbox,
    )


def policy_revision(message: openshell_pb2.SandboxPolicyRevision) -> models.PolicyRevision:
    return models.PolicyRevision(
        version=message.version,
        hash=message.policy_hash,
        status=_enum(
            openshell_pb2.PolicyStatus,
            message.status,
            "POLICY_STATUS_",
            models.PolicyLoadState,
            models.PolicyLoadState.UNSPECIFIED,
        ),
        load_error=message.load_error,
        policy=message.policy if message.HasField("policy") else None,
    )


def policy_status(message: openshell_pb2.GetSandboxPolicyStatusResponse) -> models.PolicyStatus:
    return models.PolicyStatus(
        revision=policy_revision(message.revision), active_version=message.active_version
    )


def health(message: openshell_pb2.HealthResponse) -> models.Health:
    return models.Health(
        status=_enum(
            openshell_pb2.ServiceStatus,
            message.status,
            "SERVICE_STATUS_",
            models.HealthStatus,
            models.HealthStatus.UNSPECIFIED,
        ),
        version=message.version,
    )


def identity(message: openshell_pb2.GetCurrentUserResponse) -> models.Identity:
    return models.Identity(
        subject=message.subject,
        display_name=message.display_name,
        roles=tuple(message.roles),
        scopes=tuple(message.scopes),
        identity_provider=message.identity_provider,
    )


def log_line(message: openshell_pb2.SandboxLogLine) -> models.LogLine:
    return models.LogLine(
        sandbox_id=message.sandbox_id,
        time=_time(message.event_time, message.HasField("event_time")),
        level=message.level,
        target=message.target,
        message=message.message,
        source=message.source,
        fields=dict(message.fields),
    )


def watch_event(message: openshell_pb2.SandboxStreamEvent) -> models.WatchEvent:
    kind = message.WhichOneof("payload")
    if kind == "sandbox":
        return models.WatchEvent(cursor=message.cursor, sandbox=sandbox(message.sandbox))
    if kind == "log":
        return models.WatchEvent(cursor=message.cursor, log=log_line(message.log))
    if kind == "event":
        ev = message.event
        return models.WatchEvent(
            cursor=message.cursor,
            event=models.SandboxEvent(
                time=_time(ev.event_time, ev.HasField("event_time")),
                source=ev.source,
                type=ev.type,
                reason=ev.reason,
                message=ev.message,
                metadata=dict(ev.metadata),
            ),
        )
    if kind == "warning":
        return models.WatchEvent(cursor=message.cursor, warning=message.warning.message)
    # Payloads we do not consume (draft policy updates) still advance the cursor.
    return models.WatchEvent(cursor=message.cursor)
