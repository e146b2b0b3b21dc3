"""values.schema.json (and the chart's own cross-field checks) refuse bad values, naming the field.

Each case is one kind of mistake a user makes; helm must fail before rendering anything, with
an error that points at the value to fix.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.chart import Helm, posture

_GATEWAY = {"name": "pods", "endpoint": "openshell.openshell.svc:8080", "auth": {"type": "mtls"}}

#: id -> (values, text the error must contain: the field's path and what is wrong)
BAD_VALUES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "rbac-scope-not-in-enum": (
        {"rbac": {"scope": "cluster-wide"}},
        ["/rbac/scope", "'cluster', 'namespaces'"],
    ),
    "namespaces-mode-without-namespaces": (
        {"rbac": {"scope": "namespaces"}},
        ["/watchNamespaces", "minItems"],
    ),
    "namespaces-with-cluster-scope": (
        {"watchNamespaces": ["team-a"]},
        ["/watchNamespaces", "maxItems"],
    ),
    "namespace-not-a-dns-label": (
        {"rbac": {"scope": "namespaces"}, "watchNamespaces": ["Team_A"]},
        ["/watchNamespaces/0", "does not match pattern"],
    ),
    "replicas-negative": ({"replicas": -1}, ["/replicas", "minimum"]),
    "two-replicas-without-leader-election": (
        {"leaderElection": {"enabled": False}},
        ["/replicas", "maximum: got 2, want 1"],
    ),
    "image-tag-latest": ({"image": {"tag": "latest"}}, ["/image/tag", "'not' failed"]),
    "image-tag-empty": ({"image": {"tag": ""}}, ["/image/tag", "minLength"]),
    "image-digest-malformed": ({"image": {"digest": "sha256:abc"}}, ["/image/digest"]),
    "family-image-latest": (
        {"families": {"node": {"image": "ghcr.io/x/node:latest"}}},
        ["/families/node/image"],
    ),
    "unknown-top-level-key": ({"replicaCount": 2}, ["additional properties 'replicaCount'"]),
    "unknown-nested-key": ({"rbac": {"scopes": "cluster"}}, ["/rbac", "'scopes' not allowed"]),
    "gateway-without-endpoint": (
        {"gateways": [{"name": "pods", "auth": {"type": "mtls"}}]},
        ["/gateways/0", "missing property 'endpoint'"],
    ),
    "gateway-endpoint-without-port": (
        {"gateways": [{**_GATEWAY, "endpoint": "openshell.openshell.svc"}]},
        ["/gateways/0/endpoint", "does not match pattern"],
    ),
    "gateway-name-too-long-for-its-volume": (
        {"gateways": [{**_GATEWAY, "name": "g" * 56}], "config": {"defaultGateway": "g" * 56}},
        ["/gateways/0/name", "maxLength"],
    ),
    "no-gateway": ({"gateways": []}, ["/gateways", "minItems"]),
    "auth-type-unknown": (
        {"gateways": [{**_GATEWAY, "auth": {"type": "basic"}}]},
        ["/gateways/0/auth/type", "'none', 'mtls', 'bearer', 'oidc'"],
    ),
    "bearer-without-token-secret": (
        {"gateways": [{**_GATEWAY, "auth": {"type": "bearer"}}]},
        ["/gateways/0/auth", "missing property 'tokenSecret'"],
    ),
    "oidc-without-client-secret": (
        {
            "gateways": [
                {**_GATEWAY, "auth": {"type": "oidc", "issuer": "https://id", "clientId": "op"}}
            ]
        },
        ["/gateways/0/auth", "missing property 'clientSecret'"],
    ),
    "mtls-without-client-certificate": (
        {"gateways": [_GATEWAY]},
        ["/gateways/0", "missing property 'tls'"],
    ),
    "gateway-driver-unknown": (
        {"gateways": [{**_GATEWAY, "driver": "firecracker"}]},
        ["/gateways/0/driver"],
    ),
    "resources-not-an-object": ({"resources": "500m"}, ["/resources", "want object"]),
    "resource-quantity-malformed": (
        {"resources": {"limits": {"memory": "lots"}}},
        ["/resources/limits/memory", "does not match pattern"],
    ),
    "servicemonitor-enabled-not-boolean": (
        {"serviceMonitor": {"enabled": "yes"}},
        ["/serviceMonitor/enabled", "want boolean"],
    ),
    "resync-interval-zero": (
        {"config": {"intervals": {"resyncSeconds": 0}}},
        ["/config/intervals/resyncSeconds", "exclusiveMinimum"],
    ),
    "pending-interval-too-long": (
        {"config": {"intervals": {"pendingSeconds": 61}}},
        ["/config/intervals/pendingSeconds", "maximum"],
    ),
    "concurrency-zero": (
        {"config": {"concurrency": {"gatewayMutations": 0}}},
        ["/config/concurrency/gatewayMutations", "minimum"],
    ),
    "workers-zero": (
        {"config": {"concurrency": {"workers": 0}}},
        ["/config/concurrency/workers", "minimum"],
    ),
    "gateway-watches-negative": (
        {"config": {"concurrency": {"gatewayWatches": -1}}},
        ["/config/concurrency/gatewayWatches", "minimum"],
    ),
    "outage-grace-too-long": (
        {"config": {"intervals": {"outageGraceSeconds": 3601}}},
        ["/config/intervals/outageGraceSeconds", "maximum"],
    ),
    "kube-qps-negative": (
        {"config": {"rateLimits": {"kubeQps": -1}}},
        ["/config/rateLimits/kubeQps", "minimum"],
    ),
    "kube-burst-zero": (
        {"config": {"rateLimits": {"kubeBurst": 0}}},
        ["/config/rateLimits/kubeBurst", "minimum"],
    ),
    "events-backlog-not-an-integer": (
        {"config": {"rateLimits": {"eventsBacklog": 1.5}}},
        ["/config/rateLimits/eventsBacklog", "want integer"],
    ),
    "denial-poll-min-zero": (
        {"config": {"observability": {"denialPollMinSeconds": 0}}},
        ["/config/observability/denialPollMinSeconds", "exclusiveMinimum"],
    ),
    "denial-polls-per-second-too-high": (
        {"config": {"observability": {"denialPollsPerSecond": 10001}}},
        ["/config/observability/denialPollsPerSecond", "maximum"],
    ),
    "max-followers-is-gone": (
        {"config": {"observability": {"maxFollowers": 1000}}},
        ["/config/observability", "'maxFollowers' not allowed"],
    ),
    "gateway-rate-limit-burst-zero": (
        {
            "gateways": [
                {**_GATEWAY, "tls": {"clientCertSecret": {"name": "c"}}, "rateLimit": {"burst": 0}}
            ]
        },
        ["/gateways/0/rateLimit/burst", "minimum"],
    ),
    "on-sandbox-lost-unknown": (
        {"config": {"onSandboxLost": "Ignore"}},
        ["/config/onSandboxLost", "'Recreate', 'Fail'"],
    ),
    "instance-not-a-dns-label": ({"config": {"instance": "Helmdeck_1"}}, ["/config/instance"]),
    "family-gpu-out-of-range": (
        {"families": {"vision": {"resources": {"gpu": 9}}}},
        ["/families/vision/resources/gpu", "maximum"],
    ),
    "family-without-command": (
        {"families": {"python": {"command": []}}},
        ["/families/python/command", "minItems"],
    ),
    "family-port-out-of-range": (
        {"families": {"node": {"ports": [{"name": "app", "port": 70000}]}}},
        ["/families/node/ports/0/port", "maximum"],
    ),
    "family-port-authorization-unknown": (
        {
            "families": {
                "node": {"ports": [{"name": "app", "port": 3000, "authorization": "Basic"}]}
            }
        },
        ["/families/node/ports/0/authorization", "'Strip', 'BearerPassthrough'"],
    ),
    "family-port-name-with-double-dash": (
        {"families": {"node": {"ports": [{"name": "my--app", "port": 3000}]}}},
        ["/families/node/ports/0/name", "'not' failed"],
    ),
    "family-port-name-too-long": (
        {"families": {"node": {"ports": [{"name": "a" * 20, "port": 3000}]}}},
        ["/families/node/ports/0/name", "maxLength"],
    ),
    "family-port-without-number": (
        {"families": {"node": {"ports": [{"name": "app"}]}}},
        ["/families/node/ports/0", "missing property 'port'"],
    ),
    "family-port-unknown-key": (
        {"families": {"node": {"ports": [{"name": "app", "port": 3000, "protocol": "TCP"}]}}},
        ["/families/node/ports/0", "'protocol' not allowed"],
    ),
    "family-ports-too-many": (
        {"families": {"node": {"ports": [{"name": f"p{i}", "port": 3000 + i} for i in range(33)]}}},
        ["/families/node/ports", "maxItems"],
    ),
    "max-lifetime-zero": (
        {"config": {"sessions": {"maxLifetimeSeconds": 0}}},
        ["/config/sessions/maxLifetimeSeconds", "exclusiveMinimum"],
    ),
    "max-lifetime-over-a-year": (
        {"config": {"sessions": {"maxLifetimeSeconds": 8760 * 3600 + 1}}},
        ["/config/sessions/maxLifetimeSeconds", "maximum"],
    ),
    "copy-labels-not-a-label-key": (
        {"config": {"sessions": {"copyLabels": ["run id"]}}},
        ["/config/sessions/copyLabels/0", "does not match pattern"],
    ),
    "sessions-unknown-key": (
        {"config": {"sessions": {"maxLifetime": "7d"}}},
        ["/config/sessions", "'maxLifetime' not allowed"],
    ),
    "gateway-without-egress-peers-under-the-default-network-policy": (
        {"gateways": [{**_GATEWAY, "tls": {"clientCertSecret": {"name": "c"}}}]},
        ["/gateways/0", "missing property 'egress'"],
    ),
    "metrics-behind-the-network-policy-without-scrapers": (
        {"metrics": {"enabled": True}},
        ["/networkPolicy/metricsFrom", "minItems"],
    ),
    "service-monitor-without-metrics": (
        {"serviceMonitor": {"enabled": True}},
        ["/metrics/enabled", "value must be true"],
    ),
    "egress-guard-cidr-not-an-address": (
        {"config": {"egressGuard": {"serviceCidrs": ["kubernetes"]}}},
        ["/config/egressGuard/serviceCidrs/0", "does not match pattern"],
    ),
    "egress-guard-host-with-a-scheme": (
        {"config": {"egressGuard": {"hosts": ["http://metadata"]}}},
        ["/config/egressGuard/hosts/0", "does not match pattern"],
    ),
    "egress-guard-link-local-cannot-be-switched-off": (
        {"config": {"egressGuard": {"linkLocal": False}}},
        ["/config/egressGuard", "'linkLocal' not allowed"],
    ),
    "instance-with-a-trailing-dash": ({"config": {"instance": "hd-"}}, ["/config/instance"]),
    "health-port-is-the-metrics-port": ({"healthPort": 9090}, ["/healthPort"]),
    "log-level-unknown": ({"logLevel": "TRACE"}, ["/logLevel"]),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_schema_rejects(helm: Helm, case: str) -> None:
    values, expected = BAD_VALUES[case]
    result = helm.render(values)
    assert result.returncode != 0, f"{case}: accepted"
    assert "values don't meet the specifications of the schema" in result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(
            {"config": {"defaultGateway": "vm"}},
            'config.defaultGateway: "vm" is not one of the gateways: pods',
            id="default-gateway-unknown",
        ),
        pytest.param(
            {"gateways": [posture("networkpolicy")["gateways"][0]] * 2},
            'gateways: the name "pods" is used twice',
            id="gateway-names-repeated",
        ),
        pytest.param(
            {"config": {"observability": {"denialPollMinSeconds": 600}}},
            "config.observability: denialPollMinSeconds (600) must not exceed "
            "denialPollMaxSeconds (300)",
            id="denial-poll-min-above-max",
        ),
        pytest.param(
            {"families": {"vision": {"ports": [{"name": "vnc", "port": 6080}] * 2}}},
            'families.vision.ports: the name "vnc" is listed twice',
            id="family-port-names-repeated",
        ),
        pytest.param(
            {
                "families": {
                    "node": {
                        "ports": [{"name": "app", "port": 3000}, {"name": "api", "port": 3000}]
                    }
                }
            },
            "families.node.ports: the port 3000 is listed twice",
            id="family-port-numbers-repeated",
        ),
        pytest.param(
            {"serviceAccount": {"create": False}},
            "serviceAccount.name must name an existing ServiceAccount",
            id="existing-serviceaccount-without-name",
        ),
    ],
)
def test_cross_field_rules_fail_the_render(
    helm: Helm, values: dict[str, Any], expected: str
) -> None:
    result = helm.render(values)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr


def test_documented_examples_are_accepted(helm: Helm) -> None:
    """The rejections above are not the schema refusing everything."""
    for name in ("default", "namespaced", "networkpolicy", "gateways", "single", "upgrade"):
        result = helm.render(posture(name))
        assert result.returncode == 0, f"{name}: {result.stderr}"
