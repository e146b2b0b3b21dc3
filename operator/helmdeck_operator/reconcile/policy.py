"""One reconcile pass of a SidecarPolicy: validity, revision, progress over bound sessions.

The hot-reload fan-out itself happens in each bound session's own pass (level-triggered:
desired revision vs loaded revision, per session); this pass reports how far it got and
wakes the bound sessions when the revision changes, so they do not wait for their resync.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from helmdeck_operator.core.policy_status import PolicyReport, report_policy
from helmdeck_operator.kube import POLICIES, status_changed
from helmdeck_operator.runtime import Runtime

__all__ = ["reconcile_policy"]


async def reconcile_policy(
    rt: Runtime, body: Mapping[str, Any], bound: Iterable[Mapping[str, Any]]
) -> PolicyReport:
    """`bound`: index entries ({"uid", "policy"}) of the sessions referencing this policy."""
    meta = body["metadata"]
    sessions = list(bound)
    old = dict(body.get("status") or {})
    report = report_policy(
        body.get("spec") or {},
        int(meta.get("generation", 1)),
        [s.get("policy") or {} for s in sessions],
        old,
        rt.clock(),
    )
    if report.revision != old.get("revision"):
        for session in sessions:
            rt.wake(session["uid"])
    if status_changed(old, report.status):
        await rt.kube.patch_status(POLICIES, meta["namespace"], meta["name"], report.status)
    return report
