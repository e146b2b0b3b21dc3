"""Tenancy: what a namespace may ask for, decided from its TenantPolicy. Pure.

A namespace is a tenant. The platform team writes cluster-scoped TenantPolicy objects; a
namespace selects one with its label `helmdeck.dev/tenant-policy` (absent: the one named
`default`; when no TenantPolicy of that name exists, the built-in `SAFE_DEFAULT`). The same
rules are checked at admission by the chart's ValidatingAdmissionPolicies (CEL, without a
webhook) and here, by the operator, before it calls a gateway: a rule an object breaks is
refused naming the field and the rule; a namespace over its totals makes the session wait.

Fields of a rule that are absent allow anything; a list given empty allows nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from pydantic.alias_generators import to_camel

from helmdeck_operator.config import TenancyFallback
from helmdeck_operator.core.session import SandboxShape, SandboxTemplate
from helmdeck_operator.policy.guard import NO_ALLOWANCE, EgressAllowance

__all__ = [
    "DEFAULT_POLICY",
    "LABEL_TENANT_POLICY",
    "OPEN",
    "SAFE_DEFAULT",
    "Ask",
    "Selected",
    "TenantRules",
    "Unresolved",
    "Usage",
    "Violation",
    "ask_of",
    "over_quota",
    "parse_quantity",
    "policy_refusal",
    "policy_violations",
    "refusal",
    "select_rules",
    "violations",
]

#: The namespace label naming the namespace's TenantPolicy.
LABEL_TENANT_POLICY = "helmdeck.dev/tenant-policy"
#: The TenantPolicy a namespace without the label gets.
DEFAULT_POLICY = "default"


class _Rules(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True
    )


class PerSession(_Rules):
    cpu: int | str | None = None
    memory: int | str | None = None
    gpu: int | None = None
    ports: int | None = None


class PerNamespace(_Rules):
    sessions: int | None = None
    cpu: int | str | None = None
    memory: int | str | None = None
    gpu: int | None = None


class PolicyModes(_Rules):
    allow_audit: bool = False
    allow_tls_skip: bool = False


class EgressExceptions(_Rules):
    allow: tuple[str, ...] = ()
    _allowance: EgressAllowance = PrivateAttr(default=NO_ALLOWANCE)

    def model_post_init(self, context: Any, /) -> None:
        # Parsed once, with the TenantPolicy (each entry a CIDR, an address or a DNS name,
        # else ValueError), not on every pass that sends a policy.
        self._allowance = EgressAllowance.of(self.allow)

    @property
    def allowance(self) -> EgressAllowance:
        """`allow` parsed: what these rules let through the platform's egress guard."""
        return self._allowance


class TenantRules(_Rules):
    """A TenantPolicy's spec."""

    gateways: tuple[str, ...] | None = None
    image_prefixes: tuple[str, ...] | None = None
    providers: tuple[str, ...] | None = None
    per_session: PerSession = Field(default_factory=PerSession)
    per_namespace: PerNamespace = Field(default_factory=PerNamespace)
    policy: PolicyModes = Field(default_factory=PolicyModes)
    egress: EgressExceptions = Field(default_factory=EgressExceptions)


#: No rules at all: what a namespace without a TenantPolicy gets under `tenancy.fallback:
#: Open` (the operator's default, for clusters without tenants).
OPEN = TenantRules(policy=PolicyModes(allow_audit=True, allow_tls_skip=True))

#: What a namespace gets when it names no TenantPolicy and none is called `default`, under
#: `tenancy.fallback: Safe` (the chart's setting): safe on a shared cluster. Only the
#: families' default images (the platform's), no providers (they inject the gateway's
#: credentials), modest sizes, no GPUs, no audit-only or uninspected-TLS endpoints. No
#: namespace totals: those are the platform's sizing (the chart's `default` sets them).
SAFE_DEFAULT = TenantRules(
    image_prefixes=(),
    providers=(),
    per_session=PerSession(cpu="4", memory="8Gi", gpu=0, ports=8),
)


@dataclass(frozen=True)
class Selected:
    """The rules a namespace is under, and where they come from (for messages)."""

    name: str
    """The TenantPolicy's name, or `built-in default`."""
    rules: TenantRules


@dataclass(frozen=True)
class Unresolved:
    """The namespace names a TenantPolicy that does not exist: nothing is allowed."""

    message: str


def select_rules(
    namespace: str,
    labels: Mapping[str, str] | None,
    policy: Callable[[str], TenantRules | None],
    fallback: TenancyFallback = TenancyFallback.OPEN,
) -> Selected | Unresolved:
    """The rules of `namespace`, from its label and `policy`, which gives a TenantPolicy's
    rules by name (None: it does not exist)."""
    named = (labels or {}).get(LABEL_TENANT_POLICY)
    if named is not None:
        rules = policy(named)
        if rules is not None:
            return Selected(f"TenantPolicy {named}", rules)
        return Unresolved(
            f"namespace {namespace} selects TenantPolicy {named} (label {LABEL_TENANT_POLICY}),"
            " which does not exist; nothing is allowed until the platform team creates it or"
            " changes the label"
        )
    rules = policy(DEFAULT_POLICY)
    if rules is not None:
        return Selected(f"TenantPolicy {DEFAULT_POLICY}", rules)
    if fallback is TenancyFallback.SAFE:
        return Selected("the operator's built-in default tenancy rules", SAFE_DEFAULT)
    return Selected("no TenantPolicy", OPEN)


@dataclass(frozen=True)
class Ask:
    """What one sandbox asks for: a session's (or a pool template's) spec after the family
    defaults. `image` is None when the spec leaves it to the family default."""

    gateway: str
    image: str | None
    providers: tuple[str, ...]
    cpu: str
    memory: str
    gpu: int
    ports: int


def ask_of(spec: SandboxTemplate, shape: SandboxShape, gateway: str, ports: int = 0) -> Ask:
    """What a session's (or a pool template's) spec asks for: `shape` is the spec with the
    family defaults filling what it leaves out (`core.session.sandbox_shape`)."""
    return Ask(
        gateway=gateway,
        image=spec.image,
        providers=shape.providers,
        cpu=shape.cpu,
        memory=shape.memory,
        gpu=shape.gpu,
        ports=ports,
    )


@dataclass(frozen=True)
class Violation:
    """One rule an object breaks: the field, and a sentence naming the rule and the fix."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def violations(selected: Selected, ask: Ask, prefix: str = "spec") -> tuple[Violation, ...]:
    """Every per-object rule `ask` breaks (`prefix` is where its fields sit: `spec` for a
    session, `spec.template` for a pool's sandboxes)."""
    rules, who = selected.rules, selected.name
    found: list[Violation] = []
    if rules.gateways is not None and ask.gateway not in rules.gateways:
        found.append(
            Violation(
                "spec.gateway",
                f"gateway {ask.gateway} is not allowed by {who} (gateways: "
                f"{_listed(rules.gateways)})",
            )
        )
    prefixes = rules.image_prefixes
    image = ask.image
    if prefixes is not None and image is not None and not image.startswith(tuple(prefixes)):
        allowed = f"an image starting with {_listed(prefixes)}" if prefixes else "none"
        found.append(
            Violation(
                f"{prefix}.image",
                f"image {image} is not allowed by {who} (imagePrefixes: {allowed};"
                " leave the image out for the family's default image)",
            )
        )
    if rules.providers is not None:
        for i, provider in enumerate(ask.providers):
            if provider not in rules.providers:
                found.append(
                    Violation(
                        f"{prefix}.providers[{i}]",
                        f"provider {provider} is not allowed by {who} (providers: "
                        f"{_listed(rules.providers)})",
                    )
                )
    per = rules.per_session
    for name, asked, most in (
        ("cpu", ask.cpu, per.cpu),
        ("memory", ask.memory, per.memory),
        ("gpu", ask.gpu, per.gpu),
    ):
        if most is not None and parse_quantity(asked) > parse_quantity(most):
            found.append(
                Violation(
                    f"{prefix}.resources.{name}",
                    f"{name} {asked} is more than {who} allows per session "
                    f"(perSession.{name}: {most})",
                )
            )
    if per.ports is not None and ask.ports > per.ports:
        found.append(
            Violation(
                "spec.ports",
                f"{ask.ports} ports are more than {who} allows per session "
                f"(perSession.ports: {per.ports})",
            )
        )
    return tuple(found)


def policy_violations(selected: Selected, spec: Mapping[str, Any]) -> tuple[Violation, ...]:
    """The endpoints of a SidecarPolicy's spec (as stored, already admitted by its schema)
    that use a mode the tenant may not use."""
    modes, who = selected.rules.policy, selected.name
    found: list[Violation] = []
    for i, rule in enumerate(spec.get("network") or ()):
        for j, endpoint in enumerate(rule.get("endpoints") or ()):
            field = f"spec.network[{i}].endpoints[{j}]"
            if endpoint.get("enforcement") == "audit" and not modes.allow_audit:
                found.append(
                    Violation(
                        f"{field}.enforcement",
                        f"enforcement audit (log only) is not allowed by {who} "
                        "(policy.allowAudit: false); use enforce",
                    )
                )
            if endpoint.get("tls") == "skip" and not modes.allow_tls_skip:
                found.append(
                    Violation(
                        f"{field}.tls",
                        f"tls skip is not allowed by {who} (policy.allowTlsSkip: false); "
                        "use terminate or passthrough",
                    )
                )
    return tuple(found)


def refusal(
    selected: Selected | Unresolved, ask: Ask, prefix: str = "spec", only: str = ""
) -> str | None:
    """Why the rules refuse `ask`, every broken rule in one sentence (only those of fields
    starting with `only`, when given); None when they allow it."""
    if isinstance(selected, Unresolved):
        return selected.message
    broken = [v for v in violations(selected, ask, prefix) if v.field.startswith(only)]
    return "; ".join(map(str, broken)) or None


def policy_refusal(selected: Selected | Unresolved, spec: Mapping[str, Any]) -> str | None:
    """Why the rules refuse a SidecarPolicy's spec; None when they allow it."""
    if isinstance(selected, Unresolved):
        return selected.message
    return "; ".join(map(str, policy_violations(selected, spec))) or None


@dataclass(frozen=True)
class Usage:
    """What a namespace's sessions that hold a sandbox take together."""

    sessions: int = 0
    cpu: Decimal = Decimal(0)
    memory: Decimal = Decimal(0)
    gpu: int = 0

    def plus(self, ask: Ask) -> Usage:
        return self + Usage(1, parse_quantity(ask.cpu), parse_quantity(ask.memory), ask.gpu)

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.sessions + other.sessions,
            self.cpu + other.cpu,
            self.memory + other.memory,
            self.gpu + other.gpu,
        )

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            self.sessions - other.sessions,
            self.cpu - other.cpu,
            self.memory - other.memory,
            self.gpu - other.gpu,
        )


def over_quota(selected: Selected, usage: Usage, ask: Ask) -> str | None:
    """Why `ask` must wait for room in its namespace (whose other sessions take `usage`),
    or None when it fits."""
    most, who = selected.rules.per_namespace, selected.name
    after = usage.plus(ask)
    for name, total, bound in (
        ("sessions", Decimal(after.sessions), most.sessions),
        ("cpu", after.cpu, most.cpu),
        ("memory", after.memory, most.memory),
        ("gpu", Decimal(after.gpu), most.gpu),
    ):
        if bound is not None and total > parse_quantity(bound):
            return (
                f"waiting for room: the namespace's sessions would take {_shown(name, total)} "
                f"{name}, more than {who} allows (perNamespace.{name}: {bound}); it proceeds "
                "when another session of the namespace ends"
            )
    return None


_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_SCALE = {
    None: Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


def parse_quantity(value: int | str) -> Decimal:
    """A Kubernetes quantity (`500m`, `2`, `4Gi`, `1e3`) as a number (cores, bytes)."""
    if isinstance(value, int):
        return Decimal(value)
    found = _QUANTITY.match(value.strip())
    if found is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    try:
        return Decimal(found.group(1)) * _SCALE[found.group(2)]
    except InvalidOperation as err:
        raise ValueError(f"{value!r} is not a Kubernetes quantity") from err


def _listed(values: tuple[str, ...]) -> str:
    return ", ".join(values) if values else "none"


def _shown(name: str, total: Decimal) -> str:
    if name == "memory":
        return f"{total / Decimal(2) ** 30:.2f}Gi"
    return f"{total.normalize():f}"
