"""A SidecarPolicy's status, computed from its spec and the sessions bound to it.

Pure: validity and revision come from translating the spec; the session counts come from
each bound session's own status.policy (which copies what the gateway reports loaded), so
`loaded` means loaded on the gateway, not merely sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from helmdeck_operator.core.conditions import Condition, Status, merge_conditions
from helmdeck_operator.core.plan import EventSpec
from helmdeck_operator.policy import errors, revision, translate

__all__ = ["PolicyReport", "report_policy"]


@dataclass(frozen=True)
class PolicyReport:
    status: dict[str, Any]
    revision: str | None
    """None when the spec does not translate."""
    events: tuple[EventSpec, ...]
    settled: bool
    """Every bound session has loaded the revision or been refused it, or the spec does not
    translate: nothing to wait for."""


def report_policy(
    spec: Mapping[str, Any],
    generation: int,
    bound: Iterable[Mapping[str, Any]],
    old: Mapping[str, Any],
    now: datetime,
) -> PolicyReport:
    """`bound` holds each bound session's status.policy."""
    sessions = list(bound)
    try:
        rev: str | None = revision.revision(translate.to_sandbox_policy(dict(spec)))
    except errors.PolicyValidationError as err:
        rev = None
        problem = str(err)
    loaded = sum(1 for s in sessions if rev is not None and s.get("revision") == rev)
    failed = sum(
        1
        for s in sessions
        if rev is not None and s.get("desiredRevision") == rev and s.get("state") == "Failed"
    )
    pending = len(sessions) - loaded - failed

    if rev is None:
        valid = Condition("Valid", Status.FALSE, "Invalid", problem)
        applied = Condition("Applied", Status.FALSE, "Invalid", "the spec does not translate")
    else:
        valid = Condition("Valid", Status.TRUE, "Translated", f"translates to {rev}")
        if failed:
            applied = Condition(
                "Applied",
                Status.FALSE,
                "SessionsRefused",
                f"{failed} of {len(sessions)} bound sessions could not load {rev}; "
                "see their PolicyApplied condition",
            )
        elif pending:
            applied = Condition(
                "Applied",
                Status.FALSE,
                "Progressing",
                f"{loaded} of {len(sessions)} bound sessions have loaded {rev}",
            )
        elif sessions:
            applied = Condition(
                "Applied", Status.TRUE, "Loaded", f"all {len(sessions)} bound sessions run {rev}"
            )
        else:
            applied = Condition("Applied", Status.TRUE, "NoSessions", "no session uses this policy")

    status = {
        "observedGeneration": generation,
        "revision": rev,
        "sessions": {
            "bound": len(sessions),
            "loaded": loaded,
            "pending": pending,
            "failed": failed,
        },
        "conditions": merge_conditions(
            old.get("conditions", []), (valid, applied), generation=generation, now=now
        ),
    }
    # An invalid spec gives sessions nothing to load: waiting on them would poll until it is fixed.
    settled = rev is None or pending == 0
    return PolicyReport(status, rev, _events(old, valid, applied, rev, len(sessions)), settled)


def _events(
    old: Mapping[str, Any], valid: Condition, applied: Condition, rev: str | None, bound: int
) -> tuple[EventSpec, ...]:
    before = {c.get("type"): c for c in old.get("conditions", [])}
    events = []
    old_valid = before.get("Valid", {})
    if valid.status is Status.FALSE and (
        old_valid.get("status") != "False" or old_valid.get("message") != valid.message
    ):
        events.append(EventSpec("Warning", "Invalid", valid.message))
    old_applied = before.get("Applied", {})
    if applied.reason == "Loaded" and (
        old_applied.get("reason") != "Loaded" or old.get("revision") != rev
    ):
        events.append(EventSpec("Normal", "Applied", f"{rev} loaded on all {bound} bound sessions"))
    if applied.reason == "SessionsRefused" and old_applied.get("reason") != "SessionsRefused":
        events.append(EventSpec("Warning", "SessionsRefused", applied.message))
    return tuple(events)
