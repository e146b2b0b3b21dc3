"""What a status must say, asserted alike whoever wrote it (the operator on a cluster, or a
pass on the fake Kubernetes edge)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["READY_CONDITIONS", "assert_ready_status"]

#: A Ready session's conditions: (type, reason), each True.
READY_CONDITIONS = (
    ("Ready", "SandboxReady"),
    ("Provisioned", "SandboxCreated"),
    ("PolicyApplied", "PolicyLoaded"),
)


def assert_ready_status(status: Mapping[str, Any], policy: str) -> None:
    """Ready, running `policy` at the revision it wants (gateway version 1: the policy it
    booted with), with its sandbox, timestamps and the three conditions True for this
    generation."""
    assert status["phase"] == "Ready"
    assert status["policy"]["name"] == policy
    assert status["policy"]["state"] == "Loaded"
    assert status["policy"]["gatewayVersion"] == 1
    assert status["policy"]["revision"] == status["policy"]["desiredRevision"]
    assert status["sandbox"]["id"]
    assert status["readyAt"]
    assert status["expiresAt"]
    conditions = {c["type"]: c for c in status["conditions"]}
    for type_, reason in READY_CONDITIONS:
        cond = conditions[type_]
        assert (cond["status"], cond["reason"], cond["observedGeneration"]) == (
            "True",
            reason,
            status["observedGeneration"],
        ), type_
