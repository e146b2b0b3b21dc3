"""A HelmdeckSession as the operator reads it: typed spec, identity, and derived values.

The apiserver has already validated the object against the CRD (crds/ is the source of
truth), so this model is a typed view rather than a second validator: it mirrors the
field names, enums and defaults (tests/unit/core/test_session_model.py checks them against
the CRD) and derives what the reconciler needs: the resolved sandbox shape, its hash, and
the expiry time.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from helmdeck_operator.config import Family, FamilyDefaults, Port
from helmdeck_operator.gateway import models

__all__ = [
    "CrdView",
    "EnvVar",
    "Lifetime",
    "PolicyRef",
    "SandboxShape",
    "SandboxTemplate",
    "SessionMeta",
    "SessionResources",
    "SessionSpec",
    "parse_duration",
    "ports_digest",
    "sandbox_shape",
    "session_ports",
    "ttl_end",
]


class CrdView(BaseModel):
    """A typed, frozen view of a custom resource's fields (camelCase in the API)."""

    model_config = ConfigDict(
        frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True
    )


class PolicyRef(CrdView):
    name: str


class SessionResources(CrdView):
    cpu: int | str | None = None
    memory: int | str | None = None
    gpu: int | None = None


class EnvVar(CrdView):
    name: str
    value: str = ""


class Lifetime(CrdView):
    ttl: str | None = None
    on_expiry: Literal["Delete", "Retain"] = "Delete"
    idle_timeout: str | None = None
    on_idle: Literal["Suspend", "Delete"] = "Suspend"


class SandboxTemplate(CrdView):
    """The fields that decide a sandbox's shape: part of a session's spec, and a pool's
    `spec.template` (the same fields, so whatever a pool boots a session could ask for)."""

    image: str | None = None
    command: tuple[str, ...] | None = None
    resources: SessionResources = SessionResources()
    env: tuple[EnvVar, ...] = ()
    providers: tuple[str, ...] = ()


class SessionSpec(SandboxTemplate):
    family: Family
    policy_ref: PolicyRef | None = None
    pool_ref: PolicyRef | None = None
    """A SessionPool to claim a warm sandbox from (same shape as a policy reference)."""
    gateway: str | None = None
    lifetime: Lifetime = Lifetime()
    suspend: bool = False
    ports: tuple[Port, ...] | None = None
    """None (absent): the family's default ports; an empty list exposes none."""


@dataclass(frozen=True)
class SessionMeta:
    """Identity of one session object, from its metadata."""

    namespace: str
    name: str
    uid: str
    generation: int
    created_at: datetime

    @classmethod
    def from_body(cls, body: Any) -> SessionMeta:
        meta = body["metadata"]
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            generation=int(meta.get("generation", 1)),
            created_at=datetime.fromisoformat(meta["creationTimestamp"].replace("Z", "+00:00")),
        )


_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> timedelta:
    """A Go duration ("1h30m", "90s", "1.5h"), as the CRD's CEL `duration()` accepts it."""
    position, seconds = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(f"{text!r} is not a duration such as 30m or 1h30m")
    return timedelta(seconds=seconds)


def ttl_end(spec: SessionSpec, meta: SessionMeta) -> datetime | None:
    """Creation time plus the TTL; None for a session that never expires. (A lease renewal
    may extend it: `core.lifetime`.)"""
    if spec.lifetime.ttl is None:
        return None
    return meta.created_at + parse_duration(spec.lifetime.ttl)


def session_ports(spec: SessionSpec, defaults: FamilyDefaults) -> tuple[Port, ...]:
    """The ports to expose: the spec's own list when it has one, else the family's."""
    if spec.ports is not None:
        return spec.ports
    return defaults.ports or ()


def ports_digest(ports: tuple[Port, ...]) -> str:
    """Identifies a set of exposed ports whatever their order: recorded with the sandbox, so
    a change of spec.ports is told without asking the gateway."""
    canonical = json.dumps(sorted([p.name, p.port, p.authorization] for p in ports))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SandboxShape:
    """Everything that decides what runs in the sandbox apart from its policy.

    None of it but the providers can change on a live sandbox, so a change of the rest
    recreates the sandbox; `digest` (stored on the sandbox as an annotation) is how a later
    reconcile tells. The providers are attached and detached on the live sandbox instead
    (`core.providers`), so they are sent with the create but are no part of the digest.
    """

    image: str
    command: tuple[str, ...]
    cpu: str
    memory: str
    gpu: int
    env: tuple[tuple[str, str], ...]
    providers: tuple[str, ...]

    @property
    def digest(self) -> str:
        canonical = json.dumps(
            {
                "image": self.image,
                "command": list(self.command),
                "cpu": self.cpu,
                "memory": self.memory,
                "gpu": self.gpu,
                # The sandbox gets env as a mapping: reordering the list changes nothing.
                "env": sorted(list(e) for e in self.env),
                # Kept, empty: sandboxes created while providers were part of the shape (most
                # have none) keep their digest, so an upgrade does not recreate them.
                "providers": [],
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def sandbox_spec(self) -> models.SandboxSpec:
        """What the gateway is asked to run."""
        return models.SandboxSpec(
            image=self.image,
            command=self.command,
            env=dict(self.env),
            resources={"limits": {"cpu": self.cpu, "memory": self.memory}},
            gpu=self.gpu,
            providers=self.providers,
        )


def sandbox_shape(spec: SandboxTemplate, defaults: FamilyDefaults) -> SandboxShape:
    """The spec's own values where given, the family defaults elsewhere."""
    resources = spec.resources
    return SandboxShape(
        image=spec.image or defaults.image,
        command=tuple(spec.command) if spec.command else defaults.command,
        cpu=str(resources.cpu) if resources.cpu is not None else defaults.resources.cpu,
        memory=str(resources.memory) if resources.memory is not None else defaults.resources.memory,
        gpu=resources.gpu if resources.gpu is not None else defaults.resources.gpu,
        env=tuple((e.name, e.value) for e in spec.env),
        providers=tuple(spec.providers),
    )
