"""One reconcile pass of a SidecarPolicy: validity, revision, progress over bound sessions.

The hot-reload fan-out itself happens in each bound session's own pass (level-triggered:
desired revision vs loaded revision, per session); this pass reports how far it got and
wakes the bound sessions when the revision changes, so they do not wait for their resync.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from helmdeck_operator.core.policy_status import PolicyReport, report_policy
from helmdeck_operator.kube import POLICIES, status_changed
from helmdeck_operator.observability.tracing import reconcile_span
from helmdeck_operator.runtime import Runtime

__all__ = ["reconcile_policy"]


async def reconcile_policy(
    rt: Runtime, body: Mapping[str, Any], bound: Iterable[Mapping[str, Any]]
) -> PolicyReport:
    """`bound`: index entries ({"uid", "policy"}) of the sessions referencing this policy."""
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    with reconcile_span("policy", meta["namespace"], meta["name"], meta["uid"]) as span:
        sessions = list(bound)
        old = dict(body.get("status") or {})
        report = report_policy(
            body.get("spec") or {},
            int(meta.get("generation", 1)),
            [s.get("policy") or {} for s in sessions],
            old,
            rt.clock(),
        )
        span.set_attribute("helmdeck.policy.revision", report.revision or "")
        span.set_attribute("helmdeck.policy.bound", len(sessions))
        if report.revision != old.get("revision"):
            for session in sessions:
                rt.wake(session["uid"])
        _measure_propagation(rt, key, report, len(sessions))
        if status_changed(old, report.status):
            await rt.kube.patch_status(POLICIES, meta["namespace"], meta["name"], report.status)
        return report


def _measure_propagation(
    rt: Runtime, key: tuple[str, str], report: PolicyReport, bound: int
) -> None:
    """From the first pass that sees a revision to the pass that sees it loaded everywhere;
    measured once per revision."""
    if report.revision is None or bound == 0:
        rt.propagation.pop(key, None)
        return
    revision, started = rt.propagation.get(key, ("", None))
    if revision != report.revision:
        revision, started = report.revision, time.monotonic()
        rt.propagation[key] = (revision, started)
    if started is not None and report.status["sessions"]["loaded"] == bound:
        rt.metrics.record_propagation(time.monotonic() - started)
        rt.propagation[key] = (revision, None)
