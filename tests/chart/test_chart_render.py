"""What the chart renders, checked offline: lint, the operator configuration, the Deployment,
the optional objects. RBAC has its own module; the apiserver's verdict is in test_chart_apiserver.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from helmdeck_operator.config import (
    FAMILIES,
    FAMILY_PORTS,
    Concurrency,
    EgressGuardConfig,
    Intervals,
    Observability,
    OperatorConfig,
    Port,
    RateLimits,
    Sessions,
    load_config,
)
from helmdeck_operator.gateway.config import GatewayConfig, RateLimit, RetryPolicy, WorkspaceMode
from helmdeck_operator.runtime import load_family_policy
from tests.support.chart import (
    FULLNAME,
    POSTURES,
    RELEASE,
    RELEASE_NAMESPACE,
    Helm,
    find,
    one,
    posture,
)
from tests.support.repo import CHART


@pytest.mark.parametrize("name", sorted(POSTURES))
def test_lint_strict(helm: Helm, name: str) -> None:
    result = helm.run("lint", "--strict", str(CHART), values=posture(name))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_kube_version_older_than_131_is_refused(helm: Helm) -> None:
    result = helm.render(None, "--kube-version", "1.30.0")
    assert result.returncode != 0
    assert "requires kubeVersion: >=1.31.0-0" in result.stderr


def load_rendered_config(helm: Helm, values: dict[str, Any], workdir: Path) -> OperatorConfig:
    """The rendered config.yaml and policies/, laid out as the pod mounts them, through the
    operator's own loader (the gateway credential paths need not exist to validate)."""
    objects = helm.objects(values)
    config_text = one(objects, "ConfigMap", f"{FULLNAME}-config")["data"]["config.yaml"]
    (workdir / "policies").mkdir()
    for name, text in one(objects, "ConfigMap", f"{FULLNAME}-policies")["data"].items():
        (workdir / "policies" / name).write_text(text)
    (workdir / "config.yaml").write_text(config_text)
    return load_config(workdir / "config.yaml", environ={})


@pytest.mark.parametrize("name", sorted(POSTURES))
def test_rendered_config_is_valid_for_the_operator(helm: Helm, name: str, tmp_path: Path) -> None:
    config = load_rendered_config(helm, posture(name), tmp_path)
    for family in FAMILIES:
        policy_file = config.families[family].policy_file
        assert policy_file == tmp_path / "policies" / f"{family}.yaml"
        assert (
            load_family_policy(family, policy_file, config.egress_guard.guard()).name
            == f"helmdeck-default-{family}"
        )


def test_rendered_config_follows_the_values(helm: Helm, tmp_path: Path) -> None:
    values = posture("gateways")
    values["config"] = {
        "instance": "team-blue",
        "defaultGateway": "microvm",
        "onSandboxLost": "Fail",
        "intervals": {"resyncSeconds": 15, "orphanGraceSeconds": 0, "outageGraceSeconds": 0},
        "concurrency": {"workers": 4, "gatewayMutations": 8, "gatewayWatches": 0},
        "rateLimits": {
            "kubeQps": 0,
            "kubeBurst": 1,
            "eventsQps": 2.5,
            "eventsBurst": 7,
            "eventsBacklog": 100,
            "recoveryWakesPerSecond": 0,
        },
        "observability": {
            "followDenials": False,
            "denialPollMinSeconds": 0.5,
            "denialPollMaxSeconds": 0.5,
            "denialPollsPerSecond": 3,
            "denialWindowSeconds": 5,
        },
    }
    values["gateways"][1]["rateLimit"] = {"qps": 0, "burst": 5}
    values["gateways"][2]["rateLimit"] = {"qps": 12.5}
    values["families"] = {"vision": {"image": "registry.local:5000/vision@sha256:" + "0" * 64}}
    config = load_rendered_config(helm, values, tmp_path)

    assert (config.instance, config.default_gateway, config.on_sandbox_lost) == (
        "team-blue",
        "microvm",
        "Fail",
    )
    assert config.namespaces == ()
    assert config.intervals.model_dump() == {
        "resync_seconds": 15,
        "pending_seconds": 1,  # untouched values keep their defaults
        "orphan_sweep_seconds": 300,
        "orphan_grace_seconds": 0,
        "outage_grace_seconds": 0,
    }
    assert config.concurrency.model_dump() == {
        "workers": 4,
        "gateway_mutations": 8,
        "gateway_watches": 0,
    }
    assert config.rate_limits.model_dump() == {
        "kube_qps": 0,
        "kube_burst": 1,
        "events_qps": 2.5,
        "events_burst": 7,
        "events_backlog": 100,
        "recovery_wakes_per_second": 0,
    }
    assert config.observability.model_dump() == {
        "follow_denials": False,
        "denial_poll_min_seconds": 0.5,
        "denial_poll_max_seconds": 0.5,
        "denial_polls_per_second": 3,
        "denial_window_seconds": 5,
    }
    assert config.families["vision"].image.startswith("registry.local:5000/vision@sha256:")
    assert config.families["vision"].command == (
        "/usr/local/bin/helmdeck-sidecar",
        "--mode",
        "desktop",
    )
    assert config.families["vision"].resources.memory == "2Gi"

    pods, microvm, static = config.gateways
    d = Path("/etc/helmdeck/gateways")
    assert pods.tls is not None
    assert microvm.tls is not None
    assert static.tls is not None
    assert (pods.tls.ca_file, pods.tls.cert_file, pods.tls.key_file) == (
        d / "pods/ca.crt",
        d / "pods/tls.crt",
        d / "pods/tls.key",
    )
    assert pods.auth.type == "mtls"
    assert (microvm.driver, microvm.workspace, microvm.deadline_seconds) == ("vm", "agents", 20)
    assert (microvm.workspaces, microvm.workspace_prefix) == (WorkspaceMode.PER_NAMESPACE, "vm-")
    assert pods.workspaces is WorkspaceMode.SHARED  # left out: today's behaviour
    assert (microvm.tls.ca_file, microvm.tls.cert_file, microvm.tls.server_name) == (
        d / "microvm/ca.crt",
        None,
        "vm",
    )
    assert microvm.auth.model_dump() == {
        "type": "oidc",
        "issuer": "https://login.example.com/realms/platform",
        "token_url": None,
        "client_id": "helmdeck-operator",
        "client_secret_file": d / "microvm/client-secret",
        "audience": "openshell",
        "scopes": ("sandboxes",),
        "ca_file": d / "microvm/oidc-ca.crt",
    }
    assert microvm.retry.model_dump() == {
        "max_attempts": 6,
        "initial_backoff": 0.5,
        "max_backoff": 10,
        "multiplier": 3,
    }
    assert microvm.rate_limit.model_dump() == {"qps": 0, "burst": 5}
    assert static.endpoint == "[fd00::10]:9443"
    assert static.auth.model_dump() == {"type": "bearer", "token_file": d / "static/token"}
    assert static.rate_limit.model_dump() == {"qps": 12.5, "burst": 2000}  # burst: default
    assert pods.rate_limit == RateLimit()  # no rateLimit value: the operator's default


def test_chart_defaults_are_the_operators_defaults(helm: Helm, tmp_path: Path) -> None:
    """values.yaml repeats the operator's defaults (so they are documented where users look);
    here they must not drift apart."""
    config = load_rendered_config(helm, {}, tmp_path)
    assert config.intervals == Intervals()
    assert config.concurrency == Concurrency()
    assert config.rate_limits == RateLimits()
    assert config.observability == Observability()
    assert config.sessions == Sessions()
    assert {f: d.ports for f, d in config.families.items()} == FAMILY_PORTS
    (pods,) = config.gateways
    assert (pods.deadline_seconds, pods.retry, pods.rate_limit) == (
        GatewayConfig.model_fields["deadline_seconds"].default,
        RetryPolicy(),
        RateLimit(),
    )
    assert config.on_sandbox_lost == "Recreate"


def test_the_default_instance_is_derived_from_the_release(helm: Helm, tmp_path: Path) -> None:
    """Left empty, the operator derives the instance from the cluster and the release the
    chart names: nothing random is rendered, so every render (Argo CD syncs) is the same."""
    config = load_rendered_config(helm, {}, tmp_path)
    assert (config.instance, config.release) == ("", f"{RELEASE_NAMESPACE}/{RELEASE}")
    assert helm.template() == helm.template()
    other = helm.objects(namespace="team-a", release="hd2")
    text = one(other, "ConfigMap", "hd2-helmdeck-operator-config")["data"]["config.yaml"]
    assert yaml.safe_load(text)["release"] == "team-a/hd2"


def test_values_yaml_writes_the_family_ports_out(helm: Helm) -> None:
    """The defaults are in the file, not left to the operator: what values.yaml shows is what
    the operator gets (python and node expose none)."""
    config_text = one(helm.objects(), "ConfigMap", f"{FULLNAME}-config")["data"]["config.yaml"]
    families = yaml.safe_load(config_text)["families"]
    assert {f: [Port.model_validate(p) for p in d["ports"]] for f, d in families.items()} == {
        f: list(ports) for f, ports in FAMILY_PORTS.items()
    }


def test_family_ports_and_sessions_follow_the_values(helm: Helm, tmp_path: Path) -> None:
    values = {
        "families": {
            "node": {
                "ports": [
                    {"name": "app", "port": 3000, "authorization": "BearerPassthrough"},
                    {"name": "inspector", "port": 9229},
                ]
            },
            "browser": {"ports": []},
            "vision": {"ports": None},
        },
        "config": {
            "sessions": {
                "maxLifetimeSeconds": 86400.5,
                "copyLabels": ["helmdeck.dev/run-id", "team", "example.com/cost-centre"],
            }
        },
    }
    config = load_rendered_config(helm, values, tmp_path)
    assert config.families["node"].ports == (
        Port(name="app", port=3000, authorization="BearerPassthrough"),
        Port(name="inspector", port=9229, authorization="Strip"),
    )
    assert config.families["browser"].ports == ()  # an empty list exposes none
    assert config.families["vision"].ports == FAMILY_PORTS["vision"]  # null: built-in
    assert config.families["python"].ports == ()
    assert config.sessions == Sessions(
        max_lifetime_seconds=86400.5,
        copy_labels=("helmdeck.dev/run-id", "team", "example.com/cost-centre"),
    )


def test_sessions_copy_no_labels_and_a_left_out_lifetime(helm: Helm, tmp_path: Path) -> None:
    values: dict[str, Any] = {
        "config": {"sessions": {"maxLifetimeSeconds": None, "copyLabels": []}}
    }
    config = load_rendered_config(helm, values, tmp_path)
    assert config.sessions == Sessions(copy_labels=())


def test_a_value_left_out_is_the_operators_default(helm: Helm, tmp_path: Path) -> None:
    """A chart default removed with null (or a gateway field not given) is left out of the
    file, never written as null: the operator's own default applies."""
    values = {
        "config": {"intervals": {"outageGraceSeconds": None}, "rateLimits": None},
        "gateways": [
            {
                "name": "pods",
                "endpoint": "127.0.0.1:8080",
                "plaintext": True,
                "rateLimit": {"burst": 3},
                "egress": [{"ipBlock": {"cidr": "127.0.0.1/32"}}],
            }
        ],
    }
    config = load_rendered_config(helm, values, tmp_path)
    assert config.intervals.outage_grace_seconds == Intervals().outage_grace_seconds
    assert config.rate_limits == RateLimits()
    assert config.gateways[0].rate_limit == RateLimit(burst=3)


def test_namespaced_mode_writes_the_namespaces_into_the_config(helm: Helm, tmp_path: Path) -> None:
    config = load_rendered_config(helm, posture("namespaced"), tmp_path)
    assert config.namespaces == ("team-a", "team-b")


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(container)


@pytest.mark.parametrize("name", sorted(POSTURES))
def test_pod_is_locked_down(helm: Helm, name: str) -> None:
    objects = helm.objects(posture(name))
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["enableServiceLinks"] is False
    assert pod["serviceAccountName"] == FULLNAME
    container = _container(objects)
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    metrics = {"metrics": 9090} if posture(name).get("metrics", {}).get("enabled") else {}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "health": 8080,
        **metrics,
    }


def test_image_defaults_to_the_app_version_and_can_be_pinned_by_digest(helm: Helm) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    default = _container(helm.objects())
    assert default["image"] == f"ghcr.io/helmdeck/helmdeck-operator:{app_version}"
    assert default["imagePullPolicy"] == "IfNotPresent"
    pinned = _container(helm.objects(posture("gateways")))
    assert pinned["image"] == "ghcr.io/helmdeck/helmdeck-operator:0.1.0@sha256:" + "ab" * 32


_ELECTION = ["--leader-election", "--lease-name", FULLNAME, "--lease-namespace", RELEASE_NAMESPACE]
_PORTS = ["--health-port", "8080"]


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("default", ["run", *_ELECTION, *_PORTS]),
        (
            "namespaced",
            ["run", *_ELECTION, *_PORTS, "--namespace", "team-a", "--namespace", "team-b"],
        ),
        ("single", ["run", *_PORTS]),
        ("servicemonitor", ["run", *_ELECTION, *_PORTS, "--metrics-port", "9090"]),
    ],
)
def test_args(helm: Helm, name: str, args: list[str]) -> None:
    assert _container(helm.objects(posture(name)))["args"] == args


def test_environment(helm: Helm) -> None:
    values = {"extraEnv": [{"name": "HELMDECK_INTERVALS__RESYNC_SECONDS", "value": "10"}]}
    env = {e["name"]: e for e in _container(helm.objects(values))["env"]}
    assert env["HELMDECK_CONFIG"]["value"] == "/etc/helmdeck/config.yaml"
    assert env["HELMDECK_LOG_LEVEL"]["value"] == "INFO"
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["HELMDECK_INTERVALS__RESYNC_SECONDS"]["value"] == "10"


def test_gateway_credentials_are_mounted_from_the_named_secrets(helm: Helm) -> None:
    objects = helm.objects(posture("gateways"))
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in _container(objects)["volumeMounts"]}
    assert mounts["config"] == {
        "name": "config",
        "mountPath": "/etc/helmdeck/config.yaml",
        "subPath": "config.yaml",
        "readOnly": True,
    }
    assert mounts["policies"]["mountPath"] == "/etc/helmdeck/policies"
    volumes = {v["name"]: v for v in pod["volumes"]}
    files: dict[str, dict[str, tuple[str, str]]] = {}
    for gateway in ("pods", "microvm", "static"):
        mount = mounts[f"gateway-{gateway}"]
        assert (mount["mountPath"], mount["readOnly"]) == (
            f"/etc/helmdeck/gateways/{gateway}",
            True,
        )
        projected = volumes[f"gateway-{gateway}"]["projected"]
        assert projected["defaultMode"] == 0o440
        files[gateway] = {
            item["path"]: (source["secret"]["name"], item["key"])
            for source in projected["sources"]
            for item in source["secret"]["items"]
        }
    assert files == {
        "pods": {
            "ca.crt": ("openshell-pods-client", "ca.crt"),
            "tls.crt": ("openshell-pods-client", "tls.crt"),
            "tls.key": ("openshell-pods-client", "tls.key"),
        },
        "microvm": {
            "ca.crt": ("openshell-vm-ca", "bundle.pem"),
            "client-secret": ("helmdeck-oidc", "secret"),
            "oidc-ca.crt": ("corporate-ca", "ca.crt"),
        },
        "static": {
            "ca.crt": ("openshell-static-ca", "ca.crt"),
            "token": ("openshell-static-token", "token"),
        },
    }
    # One source per Secret, even when a Secret provides several files.
    assert len(volumes["gateway-pods"]["projected"]["sources"]) == 1


def _checksum(objects: list[dict[str, Any]]) -> str:
    annotations = one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    return str(annotations["checksum/config"])


def test_a_config_change_rolls_the_pods_and_a_replica_change_does_not(helm: Helm) -> None:
    base = _checksum(helm.objects())
    assert _checksum(helm.objects({"config": {"intervals": {"resyncSeconds": 10}}})) != base
    assert _checksum(helm.objects({"families": {"node": {"image": "n:1.0.1"}}})) != base
    assert _checksum(helm.objects({"replicas": 3})) == base


@pytest.mark.parametrize(
    ("name", "pdb", "strategy"),
    [
        ("default", True, "RollingUpdate"),
        ("ha", True, "RollingUpdate"),
        ("single", False, "Recreate"),
    ],
)
def test_replicas_pdb_and_strategy(helm: Helm, name: str, pdb: bool, strategy: str) -> None:
    values = posture(name)
    objects = helm.objects(values)
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == values.get("replicas", 2)
    assert deployment["spec"]["strategy"]["type"] == strategy
    budgets = find(objects, "PodDisruptionBudget")
    assert bool(budgets) is pdb
    if pdb:
        assert budgets[0]["spec"]["maxUnavailable"] == 1
        assert budgets[0]["spec"]["selector"] == deployment["spec"]["selector"]


def test_metrics_are_off_by_default(helm: Helm) -> None:
    """No metrics port, Service, ServiceMonitor or NetworkPolicy rule unless metrics.enabled
    (the operator serves /metrics only with --metrics-port); metrics.service.enabled, on in
    values.yaml, does not turn them on alone."""
    default = helm.objects()
    assert "--metrics-port" not in _container(default)["args"]
    assert not find(default, "Service")
    assert not find(default, "ServiceMonitor")
    policy = one(default, "NetworkPolicy", FULLNAME)["spec"]
    assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == ["health"]


def test_metrics_without_a_service(helm: Helm) -> None:
    values = posture("networkpolicy")
    values["metrics"]["service"] = {"enabled": False}
    objects = helm.objects(values)
    assert "--metrics-port" in _container(objects)["args"]
    assert not find(objects, "Service")


def test_metrics_service_and_service_monitor(helm: Helm) -> None:
    objects = helm.objects(posture("servicemonitor"))
    service = one(objects, "Service", f"{FULLNAME}-metrics")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    # honorLabels keeps helmdeck_policy_denials_total's own (session) namespace label.
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "honorLabels": True, "interval": "30s"}
    ]


_HEALTH_FROM_ANYWHERE = {"ports": [{"port": "health", "protocol": "TCP"}]}
_OPENSHELL = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "openshell"}}}


def test_network_policy_by_default(helm: Helm) -> None:
    """On by default and complete without an address: out, DNS to kube-dns, the apiserver's
    ports anywhere (a render cannot look its addresses up), the gateway's port to its peers;
    in, the health port only, from anywhere (the kubelet's probes)."""
    objects = helm.objects()
    policy = one(objects, "NetworkPolicy", FULLNAME)["spec"]
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [_HEALTH_FROM_ANYWHERE]
    dns, apiserver, gateway = policy["egress"]
    assert dns == {
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
        "to": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
    }
    assert apiserver == {
        "ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]
    }
    assert gateway == {"ports": [{"port": 8080, "protocol": "TCP"}], "to": [_OPENSHELL]}


def test_network_policy_can_be_turned_off(helm: Helm) -> None:
    assert not find(helm.objects(posture("upgrade")), "NetworkPolicy")


def test_network_policy(helm: Helm) -> None:
    policy = one(helm.objects(posture("networkpolicy")), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [
        _HEALTH_FROM_ANYWHERE,
        {
            "ports": [{"port": "metrics", "protocol": "TCP"}],
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                    }
                }
            ],
        },
    ]
    dns, apiserver, pods, microvm, static, extra = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert apiserver == {
        "ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}, {"ipBlock": {"cidr": "172.18.0.2/32"}}],
    }
    assert pods == {"ports": [{"port": 8080, "protocol": "TCP"}], "to": [_OPENSHELL]}
    assert microvm == {
        "ports": [{"port": 443, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}],
    }
    assert static["ports"] == [{"port": 9443, "protocol": "TCP"}]
    assert extra == {"to": [{"ipBlock": {"cidr": "198.51.100.7/32"}}], "ports": [{"port": 443}]}


def test_network_policy_needs_a_peer_for_every_gateway(helm: Helm) -> None:
    values = posture("networkpolicy")
    del values["gateways"][1]["egress"]
    result = helm.render(values)
    assert result.returncode != 0
    assert "/gateways/1" in result.stderr
    assert "missing property 'egress'" in result.stderr


def test_grafana_dashboard(helm: Helm) -> None:
    assert not find(helm.objects(), "ConfigMap", f"{FULLNAME}-dashboard")
    dashboard = one(helm.objects(posture("servicemonitor")), "ConfigMap", f"{FULLNAME}-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["helmdeck-operator.json"]) == json.loads(
        (CHART / "dashboards" / "helmdeck-operator.json").read_text()
    )


def test_the_egress_guard_defaults_to_the_api_server_names_and_metadata_services(
    helm: Helm, tmp_path: Path
) -> None:
    """The chart guards more than the operator alone (link-local only): the in-cluster API
    server names and the cloud metadata services; the cluster's ranges are the user's to
    give (values.yaml says how to find them)."""
    guard = load_rendered_config(helm, {}, tmp_path).egress_guard
    assert guard.api_server == (
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    )
    assert (guard.service_cidrs, guard.pod_cidrs) == ((), ())
    assert "metadata.google.internal" in guard.hosts
    assert "fd00:ec2::254/128" in guard.cidrs


def test_the_egress_guard_follows_the_values(helm: Helm, tmp_path: Path) -> None:
    values = {
        "config": {
            "egressGuard": {
                "apiServer": ["10.96.0.1", "kubernetes.default.svc"],
                "serviceCidrs": ["10.96.0.0/12"],
                "podCidrs": ["10.244.0.0/16", "fd00:10:244::/56"],
                "hosts": None,
                "cidrs": [],
            }
        }
    }
    guard = load_rendered_config(helm, values, tmp_path).egress_guard
    assert guard == EgressGuardConfig(
        api_server=("10.96.0.1", "kubernetes.default.svc"),
        service_cidrs=("10.96.0.0/12",),
        pod_cidrs=("10.244.0.0/16", "fd00:10:244::/56"),
    )
