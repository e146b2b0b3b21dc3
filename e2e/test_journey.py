"""A user's journey with an installed operator: CRDs there, a session of each family Ready,
a policy edit hot-reloaded into the running sandbox, suspend and resume, TTL expiry, and
deletion leaving no sandbox behind."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from e2e_support import (
    CRDS,
    GatewayAdmin,
    Kubectl,
    condition,
    phase,
    policy,
    session,
    status,
    unique,
)

FAMILIES = ("browser", "python", "node", "vision")

#: A python policy that hot-reloads: L7 (rest) rules only change live.
PYPI: dict[str, Any] = {
    "network": [
        {
            "name": "pypi",
            "endpoints": [
                {"host": "pypi.org", "port": 443, "protocol": "rest", "access": "read-only"}
            ],
        }
    ],
    "filesystem": {"includeWorkdir": True, "readOnly": ["/usr", "/lib", "/etc"]},
    "process": {"runAsUser": "1000", "runAsGroup": "1000"},
    "staticChanges": "Reject",
}
FILES_RULE = {
    "name": "files",
    "endpoints": [
        {"host": "files.pythonhosted.org", "port": 443, "protocol": "rest", "access": "read-only"}
    ],
}


def ready(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any] | None:
    obj = kubectl.get("hds", name, namespace)
    return obj if phase(obj) == "Ready" else None


def test_the_crds_are_established_and_serve_v1alpha1(kubectl: Kubectl) -> None:
    for name in CRDS:
        crd = kubectl.get("crd", name)
        assert crd is not None, f"{name} is not installed"
        established = [c for c in crd["status"]["conditions"] if c["type"] == "Established"]
        assert established, f"{name} has no Established condition"
        assert established[0]["status"] == "True", name
        served = {v["name"] for v in crd["spec"]["versions"] if v["served"]}
        assert "v1alpha1" in served, name
        if crd["spec"]["scope"] == "Namespaced":  # TenantPolicy: cluster-scoped, no status
            assert crd["spec"]["versions"][0]["subresources"].get("status") == {}, name


def test_a_session_of_each_family_becomes_ready_with_its_status(
    kubectl: Kubectl, namespace: str, eventually: Any, gateway: GatewayAdmin | None
) -> None:
    pol = unique("pypi")
    kubectl.apply(namespace, policy(pol, **PYPI))
    names = {family: unique(family) for family in FAMILIES}
    kubectl.apply(
        namespace,
        *(
            session(name, family, **({"policyRef": {"name": pol}} if family == "python" else {}))
            for family, name in names.items()
        ),
    )

    for family, name in names.items():
        obj = eventually(lambda n=name: ready(kubectl, namespace, n), f"{family} session Ready")
        st = status(obj)
        for type_ in ("Ready", "Provisioned", "PolicyApplied"):
            assert condition(obj, type_).get("status") == "True", (family, type_, st)
        assert condition(obj, "Ready")["reason"] == "SandboxReady"
        assert condition(obj, "Ready")["observedGeneration"] == obj["metadata"]["generation"]
        sandbox = st["sandbox"]
        for key in ("name", "id", "gateway"):
            assert sandbox.get(key), (family, key, sandbox)
        assert sandbox["phase"] == "READY"
        assert st["readyAt"]
        assert st["policy"]["state"] == "Loaded"
        assert st["policy"]["revision"] == st["policy"]["desiredRevision"]
        expected_policy = pol if family == "python" else f"helmdeck-default-{family}"
        assert st["policy"]["name"] == expected_policy
        # The finalizer that deletes the sandbox with the session.
        assert "helmdeck.dev/sandbox-cleanup" in obj["metadata"]["finalizers"]
        if gateway is not None:
            on_gateway = gateway.sandbox_of(obj)
            assert on_gateway is not None, f"no sandbox on the gateway for {family}"
            assert on_gateway["id"] == sandbox["id"]
            assert on_gateway["phase"] == "READY"

    # The policy's own status counts the session bound to it.
    scp = eventually(
        lambda: (
            (p := kubectl.get("scp", pol, namespace))
            and (status(p).get("sessions") or {}).get("loaded") == 1
            and p
        ),
        "the policy counts its loaded session",
    )
    assert condition(scp, "Valid")["status"] == "True"
    assert condition(scp, "Applied")["status"] == "True"
    assert status(scp)["sessions"] == {"bound": 1, "loaded": 1, "pending": 0, "failed": 0}


def test_a_policy_edit_is_hot_reloaded_into_the_same_sandbox(
    kubectl: Kubectl, namespace: str, eventually: Any, gateway: GatewayAdmin | None
) -> None:
    pol, name = unique("pypi"), unique("reload")
    kubectl.apply(namespace, policy(pol, **PYPI), session(name, "python", policyRef={"name": pol}))
    before = eventually(lambda: ready(kubectl, namespace, name), "Ready")
    old = status(before)
    before_gw = gateway.sandbox_of(before) if gateway else None

    edited = copy.deepcopy(PYPI)
    edited["network"].append(FILES_RULE)
    kubectl.apply(namespace, policy(pol, **edited))

    def reloaded() -> dict[str, Any] | None:
        obj = kubectl.get("hds", name, namespace)
        pst = status(obj).get("policy") or {}
        moved = pst.get("revision") not in (None, old["policy"]["revision"])
        return obj if moved and pst.get("state") == "Loaded" else None

    after = eventually(reloaded, "the new revision loaded")
    new = status(after)
    assert phase(after) == "Ready", "a hot reload never takes the session out of Ready"
    assert new["sandbox"]["id"] == old["sandbox"]["id"], "same sandbox: not recreated"
    assert new["policy"]["gatewayVersion"] == old["policy"]["gatewayVersion"] + 1
    assert new["policy"]["revision"] == new["policy"]["desiredRevision"]
    assert condition(after, "PolicyApplied")["status"] == "True"
    if gateway is not None and before_gw is not None:
        after_gw = gateway.sandbox_of(after)
        assert after_gw is not None
        assert after_gw["id"] == before_gw["id"]
        assert after_gw["boots"] == before_gw["boots"], "the sandbox was not restarted"
        assert after_gw["current_policy_version"] == before_gw["current_policy_version"] + 1

    scp = eventually(
        lambda: (
            (p := kubectl.get("scp", pol, namespace))
            and status(p).get("revision") == new["policy"]["revision"]
            and (status(p).get("sessions") or {}).get("loaded") == 1
            and p
        ),
        "the policy reports the new revision loaded",
    )
    assert condition(scp, "Applied")["status"] == "True"


def test_suspend_then_resume(
    kubectl: Kubectl, namespace: str, eventually: Any, gateway: GatewayAdmin | None
) -> None:
    name = unique("nap")
    kubectl.apply(namespace, session(name, "node"))
    first = eventually(lambda: ready(kubectl, namespace, name), "Ready")

    kubectl.patch("hds", name, namespace, {"spec": {"suspend": True}})
    suspended = eventually(
        lambda: (
            (s := kubectl.get("hds", name, namespace))
            and phase(s) == "Suspended"
            and condition(s, "Ready").get("reason") == "Suspended"
            and s
        ),
        "Suspended",
    )
    assert status(suspended)["sandbox"]["phase"] == "STOPPED"
    if gateway is not None:
        on_gateway = gateway.sandbox_of(suspended)
        assert on_gateway is not None
        assert on_gateway["phase"] == "STOPPED"

    kubectl.patch("hds", name, namespace, {"spec": {"suspend": False}})
    resumed = eventually(lambda: ready(kubectl, namespace, name), "Ready again")
    assert status(resumed)["sandbox"]["id"] == status(first)["sandbox"]["id"]
    reasons = {e["reason"] for e in events(kubectl, namespace, name)}
    assert {"Suspended", "Resumed"} <= reasons, reasons


@pytest.mark.slow
def test_a_ttl_of_one_minute_with_on_expiry_delete_removes_the_session(
    kubectl: Kubectl, namespace: str, eventually: Any, gateway: GatewayAdmin | None
) -> None:
    # The CRD's smallest TTL is one minute.
    name = unique("ttl")
    kubectl.apply(namespace, session(name, "python", lifetime={"ttl": "1m", "onExpiry": "Delete"}))
    obj = eventually(lambda: ready(kubectl, namespace, name), "Ready")
    assert status(obj)["expiresAt"]
    eventually(
        lambda: kubectl.get("hds", name, namespace) is None,
        "the session deleted itself at expiry",
        timeout=60 + 90,
    )
    if gateway is not None:
        eventually(lambda: gateway.sandbox_of(obj) is None, "its sandbox is gone", timeout=60)


def test_deleting_sessions_leaves_no_sandbox(
    kubectl: Kubectl, namespace: str, eventually: Any, gateway: GatewayAdmin | None
) -> None:
    names = [unique(f"bye-{family}") for family in FAMILIES]
    kubectl.apply(namespace, *(session(n, f) for n, f in zip(names, FAMILIES, strict=True)))
    objs = [eventually(lambda n=n: ready(kubectl, namespace, n), f"{n} Ready") for n in names]

    # --wait: kubectl returns once the finalizer (the sandbox delete) has let go.
    kubectl.ok("delete", "hds", *names, "-n", namespace, "--wait=true", "--timeout=120s")
    for n in names:
        assert kubectl.get("hds", n, namespace) is None
    if gateway is not None:
        eventually(
            lambda: all(gateway.sandbox_of(o) is None for o in objs),
            "no sandbox left on the gateway",
            timeout=60,
        )


def events(kubectl: Kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    listing = kubectl.json(
        "get", "events", "-n", namespace, f"--field-selector=involvedObject.name={name}"
    )
    return list(listing["items"])
