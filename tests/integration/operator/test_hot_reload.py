"""Hot reload as a platform engineer relies on it: edit a policy, every bound sandbox loads
the new revision in place (no restart), and the policy reports its progress; changes that
cannot be hot-reloaded follow staticChanges; failed loads keep the old revision."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from helmdeck_dev.emulator_process import EmulatorProcess
from helmdeck_dev.objects import condition, phase, policy, session
from helmdeck_operator.policy import revision, translate
from tests.support import policies

pytestmark = pytest.mark.usefixtures("operator")

BASE = policies.pypi_spec()
EXTRA_RULE = policies.files_rule()


def rev(spec: dict[str, Any]) -> str:
    return revision.revision(translate.to_sandbox_policy(spec))


def bind(kube: Any, eventually: Any, count: int, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """`count` sessions on policy `p`, all Ready on its current revision."""
    kube.apply(policy("p", **spec))
    kube.apply(*(session(f"s{i:03d}", "python", policyRef={"name": "p"}) for i in range(count)))

    def all_loaded() -> list[dict[str, Any]] | None:
        items = kube.list("hds")
        ok = len(items) == count and all(
            phase(s) == "Ready" and s["status"]["policy"].get("revision") == rev(spec)
            for s in items
        )
        return items if ok else None

    return eventually(all_loaded, f"{count} sessions Ready on {rev(spec)}", timeout=120)


def policy_status(kube: Any) -> dict[str, Any]:
    return (kube.get("scp", "p") or {}).get("status") or {}


def by_session(
    gateway: EmulatorProcess, sessions: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    uids = {s["metadata"]["uid"] for s in sessions}
    return {
        s["labels"]["helmdeck.dev/session-uid"]: s
        for s in gateway.snapshot()["sandboxes"]
        if s.get("labels", {}).get("helmdeck.dev/session-uid") in uids
    }


def test_a_policy_edit_reaches_fifty_sessions_without_restarting_them(
    kube: Any, eventually: Any, gateway: EmulatorProcess
) -> None:
    sessions = bind(kube, eventually, 50, BASE)
    before = by_session(gateway, sessions)
    assert len(before) == 50
    assert {s["boots"] for s in before.values()} == {1}

    edited = copy.deepcopy(BASE)
    edited["network"].append(EXTRA_RULE)
    kube.apply(policy("p", **edited))

    def everywhere() -> list[dict[str, Any]] | None:
        items = kube.list("hds")
        done = all(
            s["status"]["policy"].get("revision") == rev(edited)
            and s["status"]["policy"].get("state") == "Loaded"
            and s["status"]["policy"].get("gatewayVersion") == 2
            for s in items
        )
        return items if done else None

    items = eventually(everywhere, "all 50 sessions report the new revision loaded", timeout=120)
    assert all(condition(s, "PolicyApplied")["status"] == "True" for s in items)
    assert all(phase(s) == "Ready" for s in items)

    after = by_session(gateway, items)
    assert after.keys() == before.keys()
    for uid, sandbox in after.items():
        assert sandbox["id"] == before[uid]["id"], "sandbox replaced"
        assert sandbox["boots"] == 1, "sandbox restarted"
        assert sandbox["current_policy_version"] == 2

    status = eventually(
        lambda: (st := policy_status(kube)).get("sessions", {}).get("loaded") == 50 and st,
        "policy status counts all 50 loaded",
    )
    assert status["sessions"] == {"bound": 50, "loaded": 50, "pending": 0, "failed": 0}
    assert status["revision"] == rev(edited)
    assert condition({"status": status}, "Applied")["status"] == "True"
    assert ("Normal", "Applied") in kube.events("p")


def test_a_static_change_under_reject_keeps_the_old_revision(
    kube: Any, eventually: Any, gateway: EmulatorProcess
) -> None:
    sessions = bind(kube, eventually, 3, BASE)
    before = by_session(gateway, sessions)
    changed = copy.deepcopy(BASE)
    changed["process"] = {"runAsUser": "2000", "runAsGroup": "2000"}
    kube.apply(policy("p", **changed))

    def refused() -> list[dict[str, Any]] | None:
        items = kube.list("hds")
        ok = all(
            condition(s, "PolicyApplied").get("reason") == "StaticChangeRejected" for s in items
        )
        return items if ok else None

    items = eventually(refused, "every session refuses the static change")
    for s in items:
        assert s["status"]["policy"]["revision"] == rev(BASE)
        assert s["status"]["policy"]["state"] == "Failed"
        assert "process.run_as_user" in condition(s, "PolicyApplied")["message"]
        assert phase(s) == "Ready"
    status = eventually(
        lambda: (st := policy_status(kube)).get("sessions", {}).get("failed") == 3 and st,
        "policy counts the refusals",
    )
    assert condition({"status": status}, "Applied")["reason"] == "SessionsRefused"
    assert ("Warning", "PolicyRejected") in kube.events(items[0]["metadata"]["name"])
    after = by_session(gateway, items)
    assert {uid: s["id"] for uid, s in after.items()} == {uid: s["id"] for uid, s in before.items()}
    assert all(s["current_policy_version"] == 1 for s in after.values())


def test_a_static_change_under_recreate_rolls_new_sandboxes(
    kube: Any, eventually: Any, gateway: EmulatorProcess
) -> None:
    spec = {**copy.deepcopy(BASE), "staticChanges": "Recreate", "rollout": {"maxUnavailable": 2}}
    sessions = bind(kube, eventually, 4, spec)
    before = by_session(gateway, sessions)
    changed = copy.deepcopy(spec)
    changed["filesystem"] = {"readOnly": ["/usr"], "readWrite": []}  # /tmp removed: static
    kube.apply(policy("p", **changed))

    def recreated() -> list[dict[str, Any]] | None:
        items = kube.list("hds")
        ok = all(
            phase(s) == "Ready" and s["status"]["policy"].get("revision") == rev(changed)
            for s in items
        )
        return items if ok else None

    items = eventually(
        recreated, "every session runs the new revision in a new sandbox", timeout=120
    )
    after = by_session(gateway, items)
    for uid, sandbox in after.items():
        assert sandbox["id"] != before[uid]["id"]
        assert sandbox["current_policy_version"] == 1  # a fresh sandbox started on it
    assert all(("Normal", "Recreating") in kube.events(s["metadata"]["name"]) for s in items)


def test_a_failed_load_keeps_the_previous_revision_and_says_why(
    kube: Any, eventually: Any, gateway: EmulatorProcess
) -> None:
    [only] = bind(kube, eventually, 1, BASE)
    gateway.set_faults({"policy_load_failures": {"next": 1, "message": "proxy refused rule files"}})
    edited = copy.deepcopy(BASE)
    edited["network"].append(EXTRA_RULE)
    kube.apply(policy("p", **edited))

    failed = eventually(
        lambda: (
            (s := kube.get("hds", only["metadata"]["name"]))
            and condition(s, "PolicyApplied").get("reason") == "PolicyLoadFailed"
            and s
        ),
        "PolicyApplied False with the gateway's reason",
    )
    assert "proxy refused rule files" in condition(failed, "PolicyApplied")["message"]
    assert failed["status"]["policy"]["revision"] == rev(BASE)
    assert failed["status"]["policy"]["desiredRevision"] == rev(edited)
    assert failed["status"]["policy"]["state"] == "Failed"
    assert phase(failed) == "Ready"
    assert ("Warning", "PolicyRejected") in kube.events(only["metadata"]["name"])
