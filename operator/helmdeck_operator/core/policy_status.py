"""A SidecarPolicy's status, computed from its spec and the sessions bound to it.

Pure: validity and revision come from translating the spec; the session counts come from
each bound session's own status.policy (which copies what the gateway reports loaded), so
`loaded` means loaded on the gateway, not merely sent. The sessions arrive as a tally of
their (revision, desiredRevision, state): the operator keeps it current event by event, so
a policy with thousands of sessions is counted in a few steps, not by reading every one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from helmdeck_operator.core.conditions import Condition, Status, merge_conditions
from helmdeck_operator.core.plan import EventSpec
from helmdeck_operator.policy import errors, revision, translate

__all__ = ["PolicyReport", "SessionPolicy", "report_policy", "session_policy", "tally"]

SessionPolicy = tuple[str | None, str | None, str | None]
"""What a policy's counts read of a bound session: status.policy's revision (loaded),
desiredRevision and state."""


def session_policy(status_policy: Mapping[str, Any] | None) -> SessionPolicy:
    policy = status_policy or {}
    return (policy.get("revision"), policy.get("desiredRevision"), policy.get("state"))


def tally(statuses: Iterable[Mapping[str, Any] | None]) -> Counter[SessionPolicy]:
    """The tally of some sessions' status.policy, as `report_policy` takes it."""
    return Counter(session_policy(s) for s in statuses)


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
    bound: Mapping[SessionPolicy, int],
    old: Mapping[str, Any],
    now: datetime,
) -> PolicyReport:
    """`bound`: how many bound sessions report each (revision, desiredRevision, state)."""
    try:
        rev: str | None = revision.revision(translate.to_sandbox_policy(dict(spec)))
    except errors.PolicyValidationError as err:
        rev = None
        problem = str(err)
    total = sum(bound.values())
    loaded = sum(n for (loaded_rev, _, _), n in bound.items() if rev and loaded_rev == rev)
    failed = sum(
        n
        for (_, desired, state), n in bound.items()
        if rev and desired == rev and state == "Failed"
    )
    pending = total - loaded - failed

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
                f"{failed} of {total} bound sessions could not load {rev}; "
                "see their PolicyApplied condition",
            )
        elif pending:
            applied = Condition(
                "Applied",
                Status.FALSE,
                "Progressing",
                f"{loaded} of {total} bound sessions have loaded {rev}",
            )
        elif total:
            applied = Condition(
                "Applied", Status.TRUE, "Loaded", f"all {total} bound sessions run {rev}"
            )
        else:
            applied = Condition("Applied", Status.TRUE, "NoSessions", "no session uses this policy")

    status = {
        "observedGeneration": generation,
        "revision": rev,
        "sessions": {
            "bound": total,
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
    return PolicyReport(status, rev, _events(old, valid, applied, rev, total), settled)


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
