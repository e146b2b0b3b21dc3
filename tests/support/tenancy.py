"""Tenancy test data shared by the admission tests (the chart's ValidatingAdmissionPolicies)
and the operator tests (the same rules checked again when admission is bypassed): one strict
TenantPolicy, and one object per rule that breaks it, with the field and the rule its
refusal must name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from helmdeck_dev import objects
from tests.support import policies

__all__ = ["LABEL", "RULE_CASES", "STRICT", "RuleCase", "tenant_policy"]

#: The namespace label naming its TenantPolicy.
LABEL = "helmdeck.dev/tenant-policy"

#: What the tests' tenant may ask for.
STRICT: dict[str, Any] = {
    "gateways": ["pods"],
    "imagePrefixes": ["registry.example.com/agents/"],
    "providers": ["github"],
    "perSession": {"cpu": "2", "memory": "4Gi", "gpu": 1, "ports": 2},
    "policy": {"allowAudit": False, "allowTlsSkip": False},
}


def tenant_policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "helmdeck.dev/v1alpha1",
        "kind": "TenantPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


@dataclass(frozen=True)
class RuleCase:
    """An object breaking one rule of STRICT; its refusal names `field` and says `says`."""

    id: str
    obj: dict[str, Any]
    field: str
    says: str

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])


def _session(**spec: Any) -> dict[str, Any]:
    return objects.session("breaks", family="python", **spec)


def _pool(**template: Any) -> dict[str, Any]:
    return objects.pool("breaks", family="python", replicas=1, template=template)


def _endpoint(**fields: Any) -> dict[str, Any]:
    return objects.policy("breaks", **policies.with_endpoint("api", **fields))


_PORTS = [{"name": f"p{i}", "port": 8000 + i} for i in range(3)]

RULE_CASES = [
    RuleCase("session-gateway", _session(gateway="microvm"), "spec.gateway", "gateways: pods"),
    RuleCase(
        "session-image",
        _session(image="ghcr.io/someone/tool:1.0"),
        "spec.image",
        "imagePrefixes",
    ),
    RuleCase(
        "session-provider",
        _session(providers=["github", "aws-admin"]),
        "spec.providers",
        "provider aws-admin is not allowed",
    ),
    RuleCase(
        "session-cpu",
        _session(resources={"cpu": "2500m"}),
        "spec.resources.cpu",
        "perSession.cpu: 2",
    ),
    RuleCase(
        "session-memory",
        _session(resources={"memory": "5Gi"}),
        "spec.resources.memory",
        "perSession.memory: 4Gi",
    ),
    RuleCase(
        "session-gpu", _session(resources={"gpu": 2}), "spec.resources.gpu", "perSession.gpu: 1"
    ),
    RuleCase("session-ports", _session(ports=_PORTS), "spec.ports", "perSession.ports: 2"),
    RuleCase(
        "pool-image",
        _pool(image="ghcr.io/someone/tool:1.0"),
        "spec.template.image",
        "imagePrefixes",
    ),
    RuleCase(
        "pool-provider",
        _pool(providers=["aws-admin"]),
        "spec.template.providers",
        "provider aws-admin is not allowed",
    ),
    RuleCase(
        "pool-cpu", _pool(resources={"cpu": 3}), "spec.template.resources.cpu", "perSession.cpu: 2"
    ),
    RuleCase(
        "policy-audit",
        _endpoint(protocol="rest", access="read-only", enforcement="audit"),
        "enforcement",
        "policy.allowAudit: false",
    ),
    RuleCase("policy-tls-skip", _endpoint(tls="skip"), "tls", "policy.allowTlsSkip: false"),
]
