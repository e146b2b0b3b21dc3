"""The chart's RBAC is minimal: one permission fewer breaks the named operation.

Only under `make e2e` (--local-state), where the suite runs the operator itself as the
chart's ServiceAccount: the chart's role is replaced by a copy without `patch` on
`helmdecksessions/status`, the operator restarted, and a new session must then never get a
status while the operator's log shows the apiserver refusing exactly that call. Restoring
the role (and restarting) makes the same session Ready, so nothing else was missing.
"""

from __future__ import annotations

import copy
import json
import re
import time
from typing import Any

import pytest

from e2e_support import GatewayAdmin, Kubectl, phase, session, unique

pytestmark = pytest.mark.local

#: The permission taken away, as (apiGroup, resource, verb).
REMOVED = ("helmdeck.dev", "helmdecksessions/status", "patch")
#: How long the session is watched for a status that must never come: several of the
#: operator's retries (its pending interval is about a second).
NO_STATUS_S = 15.0


def without(rules: list[dict[str, Any]], removed: tuple[str, str, str]) -> list[dict[str, Any]]:
    """`rules` minus one (group, resource, verb) grant, every other grant kept.

    A rule granting it is split: the same rule without that resource, plus that resource
    with the rule's other verbs."""
    group, resource, verb = removed
    out: list[dict[str, Any]] = []
    for rule in rules:
        grants = (
            group in rule.get("apiGroups", [])
            and resource in rule.get("resources", [])
            and verb in rule.get("verbs", [])
        )
        if not grants:
            out.append(rule)
            continue
        others = [r for r in rule["resources"] if r != resource]
        if others:
            out.append({**rule, "resources": others})
        verbs = [v for v in rule["verbs"] if v != verb]
        if verbs:
            out.append({**rule, "resources": [resource], "verbs": verbs})
    return out


def granting_roles(kubectl: Kubectl, names: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The chart's (Cluster)Roles that grant the permission, as stored now."""
    found = []
    for ref in names:
        where = ["-n", ref["namespace"]] if ref.get("namespace") else []
        obj = kubectl.json("get", ref["kind"], ref["name"], *where)
        if without(obj.get("rules") or [], REMOVED) != (obj.get("rules") or []):
            found.append(obj)
    return found


def replace_rules(kubectl: Kubectl, obj: dict[str, Any], rules: list[dict[str, Any]]) -> None:
    meta = obj["metadata"]
    where = ["-n", meta["namespace"]] if meta.get("namespace") else []
    current = kubectl.json("get", obj["kind"], meta["name"], *where)
    current["rules"] = rules
    kubectl.ok("replace", "-f", "-", stdin=json.dumps(current))


def test_without_patch_on_session_status_a_session_never_gets_a_status(
    kubectl: Kubectl,
    namespace: str,
    eventually: Any,
    local_operator: Any,
    gateway: GatewayAdmin | None,
) -> None:
    if local_operator is None:
        pytest.skip("needs make e2e's out-of-cluster operator (--local-state)")
    roles = granting_roles(kubectl, local_operator.state["roles"])
    assert len(roles) == 1, f"exactly one chart role grants {REMOVED}: {roles}"
    original = copy.deepcopy(roles[0])
    reduced = without(original["rules"], REMOVED)
    user = local_operator.state["serviceaccount_user"]

    name = unique("no-status")
    replace_rules(kubectl, original, reduced)
    try:
        local_operator.restart()
        kubectl.apply(namespace, session(name, "python"))

        expected = 'cannot patch resource "helmdecksessions/status"'
        log = eventually(
            lambda: (
                (text := local_operator.log_text()) and expected in text and user in text and text
            ),
            "the operator log shows the apiserver refusing the status patch",
            timeout=60,
        )
        line = next(li for li in log.splitlines() if expected in li)
        assert "forbidden" in line, line
        assert f'"{name}"' in line, line
        # The HTTP exchange itself, when the client's request log is on (INFO): a 403.
        if "HTTP Request:" in log:
            call = re.compile(
                rf"PATCH \S+/namespaces/{namespace}/helmdecksessions/{name}/status\S* "
                r'"HTTP/1.1 403'
            )
            assert call.search(log), "no 403 logged for the status PATCH"

        deadline = time.monotonic() + NO_STATUS_S
        while True:
            obj = kubectl.get("hds", name, namespace)
            assert obj is not None
            assert not obj.get("status"), f"a status was written: {obj.get('status')}"
            if time.monotonic() > deadline:
                break
            time.sleep(1)
        # Everything before the status write worked: the finalizer is on (a patch of the
        # object itself) and, when the gateway can be asked, the sandbox exists.
        assert "helmdeck.dev/sandbox-cleanup" in obj["metadata"].get("finalizers", [])
        if gateway is not None:
            assert gateway.sandbox_of(obj) is not None
    finally:
        replace_rules(kubectl, original, original["rules"])
        local_operator.restart()

    # With the permission back, the same session becomes Ready: nothing else was missing.
    eventually(
        lambda: phase(kubectl.get("hds", name, namespace)) == "Ready",
        "Ready once the permission is restored",
        timeout=120,
    )


def test_without_one_grant_keeps_every_other_grant() -> None:
    rules = [
        {
            "apiGroups": ["helmdeck.dev"],
            "resources": ["helmdecksessions/status", "sidecarpolicies/status"],
            "verbs": ["patch", "update"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
    assert without(rules, REMOVED) == [
        {
            "apiGroups": ["helmdeck.dev"],
            "resources": ["sidecarpolicies/status"],
            "verbs": ["patch", "update"],
        },
        {
            "apiGroups": ["helmdeck.dev"],
            "resources": ["helmdecksessions/status"],
            "verbs": ["update"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
