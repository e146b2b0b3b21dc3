"""Suspend and resume, and TTL expiry both ways (Delete and Retain)."""

from __future__ import annotations

from typing import Any

import pytest

from helmdeck_dev.emulator_process import EmulatorProcess
from helmdeck_dev.objects import condition, phase, session

pytestmark = pytest.mark.usefixtures("operator")


def sandbox_phase(gateway: EmulatorProcess, namespace: str, name: str) -> str | None:
    for s in gateway.snapshot()["sandboxes"]:
        if s["annotations"].get("helmdeck.dev/session") == f"{namespace}/{name}":
            return str(s["phase"])
    return None


def test_suspend_stops_the_sandbox_and_resume_starts_it(
    kube: Any, eventually: Any, gateway: EmulatorProcess
) -> None:
    kube.apply(session("nap", "node"))
    eventually(lambda: phase(kube.get("hds", "nap")) == "Ready", "Ready")

    kube.run("patch", "hds", "nap", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    suspended = eventually(
        lambda: (
            (s := kube.get("hds", "nap"))
            and phase(s) == "Suspended"
            and condition(s, "Ready").get("reason") == "Suspended"
            and s
        ),
        "Suspended",
    )
    assert suspended["status"]["sandbox"]["phase"] == "STOPPED"
    assert sandbox_phase(gateway, kube.namespace, "nap") == "STOPPED"

    kube.run("patch", "hds", "nap", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    eventually(lambda: phase(kube.get("hds", "nap")) == "Ready", "Ready again")
    assert sandbox_phase(gateway, kube.namespace, "nap") == "READY"
    reasons = [reason for _, reason in kube.events("nap")]
    assert "Suspended" in reasons
    assert "Resumed" in reasons


def test_ttl_expiry_deletes_or_retains(
    kube: Any, eventually: Any, gateway: EmulatorProcess, scrape: Any
) -> None:
    before = scrape()
    # The CRD's smallest TTL is one minute: both sessions expire in the same minute.
    kube.apply(
        session("gone", "python", lifetime={"ttl": "1m", "onExpiry": "Delete"}),
        session("kept", "python", lifetime={"ttl": "1m", "onExpiry": "Retain"}),
    )
    eventually(lambda: all(phase(s) == "Ready" for s in kube.list("hds")), "both Ready")
    kept = kube.get("hds", "kept")
    assert kept["status"]["expiresAt"]

    eventually(lambda: kube.get("hds", "gone") is None, "Delete: the session is gone", timeout=120)
    expired = eventually(
        kube.in_phase("kept", "Expired"),
        "Retain: the session is Expired",
        timeout=30,
    )
    assert condition(expired, "Ready")["reason"] == "Expired"
    eventually(
        lambda: (
            sandbox_phase(gateway, kube.namespace, "kept") is None
            and sandbox_phase(gateway, kube.namespace, "gone") is None
        ),
        "both sandboxes deleted",
    )
    assert ("Normal", "Expired") in kube.events("kept")
    # Deleted with its session, the Expired Event of the other one is posted all the same.
    eventually(lambda: ("Normal", "Expired") in kube.events("gone"), "Expired posted for gone")
    after = scrape()
    for on_expiry in ("Delete", "Retain"):
        key = f'helmdeck_session_expiries_total{{family="python",on_expiry="{on_expiry}"}}'
        assert after.get(key, 0) >= before.get(key, 0) + 1
