"""Tenancy enforced by the operator when admission is bypassed (the chart's
ValidatingAdmissionPolicies are not installed here): each rule of the namespace's
TenantPolicy refused again before any gateway call, naming the field and the rule; a
namespace at its totals makes a session wait, and it proceeds when room frees; a namespace
naming a TenantPolicy that does not exist gets nothing until it exists.

The operator runs as a subprocess against the real apiserver, the gateway is the emulator.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from helmdeck_dev.controlplane import ControlPlane
from helmdeck_dev.emulator_process import EmulatorProcess
from helmdeck_dev.objects import condition, phase, session
from tests.support.cluster import Kube
from tests.support.tenancy import LABEL, RULE_CASES, STRICT, tenant_policy

pytestmark = pytest.mark.usefixtures("operator")


@pytest.fixture
def rules(cluster: ControlPlane) -> Iterator[Any]:
    """Create TenantPolicies (cluster-scoped) for one test and delete them after it."""
    made: list[str] = []

    def make(spec: dict[str, Any]) -> str:
        name = f"tp-{secrets.token_hex(4)}"
        docs = json.dumps(tenant_policy(name, spec))
        assert cluster.kubectl("apply", "-f", "-", stdin=docs).returncode == 0
        made.append(name)
        return name

    yield make
    for name in made:
        cluster.kubectl("delete", "tenantpolicy", name, "--ignore-not-found")


def select(cluster: ControlPlane, namespace: str, policy: str) -> None:
    labelled = cluster.kubectl("label", "--overwrite", "namespace", namespace, f"{LABEL}={policy}")
    assert labelled.returncode == 0, labelled.stderr


def on_gateway(gateway: EmulatorProcess, namespace: str) -> list[str]:
    """The names of the namespace's sessions that have a sandbox on the gateway."""
    prefix = f"{namespace}/"
    return sorted(
        s["annotations"]["helmdeck.dev/session"][len(prefix) :]
        for s in gateway.snapshot()["sandboxes"]
        if s["annotations"].get("helmdeck.dev/session", "").startswith(prefix)
    )


def test_each_rule_is_refused_again_by_the_operator_naming_field_and_rule(
    cluster: ControlPlane, kube: Kube, eventually: Any, gateway: EmulatorProcess, rules: Any
) -> None:
    select(cluster, kube.namespace, rules(STRICT))
    for case in RULE_CASES:
        obj = json.loads(json.dumps(case.obj))
        obj["metadata"]["name"] = case.id
        if case.kind == "SidecarPolicy":
            kube.apply(obj, session(case.id, "python", policyRef={"name": case.id}))
        else:
            kube.apply(obj)
    for case in RULE_CASES:
        kind = "hdp" if case.kind == "SessionPool" else "hds"
        found = eventually(
            kube.when(
                kind, case.id, lambda o: condition(o, "Ready").get("reason") == "TenancyRefused"
            ),
            f"{case.id} refused by the operator",
        )
        message = condition(found, "Ready")["message"]
        print(f"{case.id}: {phase(found)} {message}")
        assert case.field in message, message
        assert case.says in message, message
    # Refused before any gateway call: no sandbox for any of them.
    assert on_gateway(gateway, kube.namespace) == []


def test_a_session_within_the_rules_runs(
    cluster: ControlPlane, kube: Kube, eventually: Any, gateway: EmulatorProcess, rules: Any
) -> None:
    select(cluster, kube.namespace, rules(STRICT))
    kube.apply(
        session("fits", "python", providers=["github"], resources={"cpu": "2", "memory": "4Gi"})
    )
    eventually(kube.in_phase("fits", "Ready"), "fits Ready")
    assert on_gateway(gateway, kube.namespace) == ["fits"]


def test_a_session_over_the_namespace_totals_waits_then_proceeds(
    cluster: ControlPlane, kube: Kube, eventually: Any, gateway: EmulatorProcess, rules: Any
) -> None:
    select(cluster, kube.namespace, rules({"perNamespace": {"sessions": 2, "cpu": "3"}}))
    kube.apply(session("one", "python", resources={"cpu": "1"}))
    kube.apply(session("two", "python", resources={"cpu": "1"}))
    eventually(lambda: on_gateway(gateway, kube.namespace) == ["one", "two"], "two sandboxes")
    kube.apply(session("three", "python", resources={"cpu": "1"}))
    waiting = eventually(
        kube.when("hds", "three", lambda o: condition(o, "Ready").get("reason") == "QuotaExceeded"),
        "three waiting for room",
    )
    print("three:", phase(waiting), condition(waiting, "Ready")["message"])
    assert phase(waiting) == "Pending"
    assert "perNamespace.sessions: 2" in condition(waiting, "Ready")["message"]
    assert on_gateway(gateway, kube.namespace) == ["one", "two"]
    kube.run("delete", "hds", "one")
    eventually(kube.in_phase("three", "Ready"), "three Ready once one is gone")
    assert on_gateway(gateway, kube.namespace) == ["three", "two"]
    # The cpu total binds too: with two gone, 1 + 2.5 is more than 3.
    kube.run("delete", "hds", "two")
    eventually(lambda: on_gateway(gateway, kube.namespace) == ["three"], "two's sandbox gone")
    kube.apply(session("big", "python", resources={"cpu": "2500m"}))
    big = eventually(
        kube.when("hds", "big", lambda o: condition(o, "Ready").get("reason") == "QuotaExceeded"),
        "big waiting for cpu",
    )
    assert "perNamespace.cpu: 3" in condition(big, "Ready")["message"]


def test_a_namespace_naming_a_missing_tenant_policy_gets_nothing_until_it_exists(
    cluster: ControlPlane, kube: Kube, eventually: Any, gateway: EmulatorProcess, rules: Any
) -> None:
    missing = f"tp-missing-{secrets.token_hex(3)}"
    select(cluster, kube.namespace, missing)
    kube.apply(session("early", "python"))
    refused = eventually(
        kube.when(
            "hds", "early", lambda o: condition(o, "Ready").get("reason") == "TenancyRefused"
        ),
        "early refused",
    )
    assert f"TenantPolicy {missing}" in condition(refused, "Ready")["message"]
    assert "does not exist" in condition(refused, "Ready")["message"]
    assert on_gateway(gateway, kube.namespace) == []
    created = json.dumps(tenant_policy(missing, {}))
    assert cluster.kubectl("apply", "-f", "-", stdin=created).returncode == 0
    try:
        eventually(kube.in_phase("early", "Ready"), "early Ready once its TenantPolicy exists")
    finally:
        cluster.kubectl("delete", "tenantpolicy", missing, "--ignore-not-found")
