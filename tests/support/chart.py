"""The Helm chart in tests: `helm` against the chart, the values postures, finding objects.

The postures are the values sets a user would install with; each is linted, rendered,
checked offline and applied to the real apiserver (server dry-run). The `helm` binary is
hack/build-tools.sh's (tests.support.tools.build_tools).
"""

from __future__ import annotations

import copy
import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.repo import CHART

__all__ = ["FULLNAME", "POSTURES", "RELEASE", "RELEASE_NAMESPACE", "Helm", "find", "one", "posture"]

RELEASE = "hd"
RELEASE_NAMESPACE = "helmdeck-system"
FULLNAME = f"{RELEASE}-helmdeck-operator"

# Two gateways as a production install would have them: pods over mTLS from a cert-manager
# Secret, MicroVMs with an OIDC client secret and a corporate CA for the identity provider.
_GATEWAYS: list[dict[str, Any]] = [
    {
        "name": "pods",
        "endpoint": "openshell.openshell.svc:8080",
        "driver": "kubernetes",
        "tls": {
            "caSecret": {"name": "openshell-pods-client"},
            "clientCertSecret": {"name": "openshell-pods-client"},
        },
        "auth": {"type": "mtls"},
        "egress": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "openshell"}}}
        ],
    },
    {
        "name": "microvm",
        "endpoint": "openshell-vm.example.net:443",
        "driver": "vm",
        "workspace": "agents",
        "workspaces": "PerNamespace",
        "workspacePrefix": "vm-",
        "tls": {"caSecret": {"name": "openshell-vm-ca", "key": "bundle.pem"}, "serverName": "vm"},
        "auth": {
            "type": "oidc",
            "issuer": "https://login.example.com/realms/platform",
            "clientId": "helmdeck-operator",
            "clientSecret": {"name": "helmdeck-oidc", "key": "secret"},
            "audience": "openshell",
            "scopes": ["sandboxes"],
            "caSecret": {"name": "corporate-ca"},
        },
        "deadlineSeconds": 20,
        "retry": {"maxAttempts": 6, "initialBackoff": 0.5, "maxBackoff": 10, "multiplier": 3},
        "egress": [{"ipBlock": {"cidr": "203.0.113.0/24"}}],
    },
    {
        "name": "static",
        "endpoint": "[fd00::10]:9443",
        "tls": {"caSecret": {"name": "openshell-static-ca"}},
        "auth": {"type": "bearer", "tokenSecret": {"name": "openshell-static-token"}},
        "egress": [{"ipBlock": {"cidr": "fd00::10/128"}}],
    },
]

#: Where kube-prometheus-stack usually runs: the peer allowed to scrape /metrics.
_PROMETHEUS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}

#: name -> values overriding values.yaml. Each one is linted, rendered, applied (dry-run).
POSTURES: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {"rbac": {"scope": "namespaces"}, "watchNamespaces": ["team-a", "team-b"]},
    "servicemonitor": {
        "metrics": {"enabled": True},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "grafanaDashboard": {"enabled": True},
        "networkPolicy": {"metricsFrom": [_PROMETHEUS]},
    },
    "networkpolicy": {
        "metrics": {"enabled": True},
        "networkPolicy": {
            "enabled": True,
            "apiServer": {"cidrs": ["10.0.0.1/32", "172.18.0.2/32"], "ports": [443, 6443]},
            "metricsFrom": [_PROMETHEUS],
            "extraEgress": [
                {"to": [{"ipBlock": {"cidr": "198.51.100.7/32"}}], "ports": [{"port": 443}]}
            ],
        },
        "gateways": _GATEWAYS,
        "config": {"defaultGateway": "microvm"},
    },
    # An upgrade from 0.1 keeping its sandboxes (the old default instance pinned: no grant on
    # kube-system), on a CNI without NetworkPolicy support.
    "upgrade": {"config": {"instance": "helmdeck-operator"}, "networkPolicy": {"enabled": False}},
    "ha": {"replicas": 3},
    "single": {"replicas": 1, "leaderElection": {"enabled": False}},
    # A platform with its own tenants: a TenantPolicy per kind of team, admission checked in
    # the tenants' namespaces only, no built-in rules for a namespace that selects none.
    "tenancy": {
        "tenancy": {
            "policies": {
                "agents": {
                    "gateways": ["pods"],
                    "imagePrefixes": ["registry.example.com/agents/"],
                    "providers": ["github"],
                    "perSession": {"cpu": "1500m", "memory": "3Gi", "gpu": 1, "ports": 4},
                    "perNamespace": {"sessions": 10, "cpu": 12, "memory": "24Gi", "gpu": 2},
                    "policy": {"allowAudit": True},
                }
            },
            "fallback": "Open",
            "admission": {"namespaceSelector": {"matchLabels": {"helmdeck.dev/tenant": "true"}}},
        }
    },
    "gateways": {"gateways": _GATEWAYS, "image": {"tag": "0.1.0", "digest": "sha256:" + "ab" * 32}},
}


@dataclass(frozen=True)
class Helm:
    """`helm` against the chart with a values posture written to a file."""

    binary: Path
    workdir: Path

    def run(
        self, *args: str, values: dict[str, Any] | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), *args]
        if values:
            text = yaml.safe_dump(values)
            path = self.workdir / f"values-{hashlib.sha256(text.encode()).hexdigest()[:16]}.yaml"
            path.write_text(text)
            argv += ["--values", str(path)]
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)

    def template(
        self,
        values: dict[str, Any] | None = None,
        *extra: str,
        namespace: str = RELEASE_NAMESPACE,
        release: str = RELEASE,
    ) -> str:
        result = self.render(values, *extra, namespace=namespace, release=release)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def render(
        self,
        values: dict[str, Any] | None = None,
        *extra: str,
        namespace: str = RELEASE_NAMESPACE,
        release: str = RELEASE,
    ) -> subprocess.CompletedProcess[str]:
        return self.run("template", release, str(CHART), "-n", namespace, *extra, values=values)

    def objects(self, values: dict[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        return [doc for doc in yaml.safe_load_all(self.template(values, **kwargs)) if doc]


def posture(name: str) -> dict[str, Any]:
    """A copy of the values of posture `name`, to edit."""
    return copy.deepcopy(POSTURES[name])


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} rendered"
    return found[0]
