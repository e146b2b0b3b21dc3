"""A SidecarPolicy's status, computed from its spec and the sessions bound to it.

Pure: validity and revision come from translating the spec; the session counts come from
each bound session's own status.policy (which copies what the gateway reports loaded), so
`loaded` means loaded on the gateway, not merely sent; `egressGuard` says what the platform's
egress guard did to the policy (how much it guards, and each allowedIps entry it narrowed),
and a policy the guard refuses is not Valid (EgressGuarded). The sessions arrive as a tally of
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
from helmdeck_operator.core.plan import DesiredPolicy, EventSpec, PolicyProblem
from helmdeck_operator.policy.guard import EgressReport
from helmdeck_operator.vocabulary import ConditionType, EventReason, EventType, PolicyState, Reason

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
    desired: DesiredPolicy | PolicyProblem,
    generation: int,
    bound: Mapping[SessionPolicy, int],
    old: Mapping[str, Any],
    now: datetime,
) -> PolicyReport:
    """`desired`: the policy's spec as translated (once per generation, by the shell);
    `bound`: how many bound sessions report each (revision, desiredRevision, state)."""
    rev = desired.revision if isinstance(desired, DesiredPolicy) else None
    total = sum(bound.values())
    loaded = sum(n for (loaded_rev, _, _), n in bound.items() if rev and loaded_rev == rev)
    failed = sum(
        n
        for (_, wanted, state), n in bound.items()
        if rev and wanted == rev and state == PolicyState.FAILED
    )
    pending = total - loaded - failed

    if isinstance(desired, PolicyProblem):
        why = desired.reason if desired.reason in _PLATFORM_REFUSALS else Reason.INVALID
        valid = Condition(ConditionType.VALID, Status.FALSE, why, desired.message)
        applied = Condition(
            ConditionType.APPLIED,
            Status.FALSE,
            why,
            _PLATFORM_REFUSALS.get(why, "the spec does not translate"),
        )
    else:
        valid = Condition(
            ConditionType.VALID, Status.TRUE, Reason.TRANSLATED, f"translates to {rev}"
        )
        if failed:
            applied = Condition(
                ConditionType.APPLIED,
                Status.FALSE,
                Reason.SESSIONS_REFUSED,
                f"{failed} of {total} bound sessions could not load {rev}; "
                "see their PolicyApplied condition",
            )
        elif pending:
            applied = Condition(
                ConditionType.APPLIED,
                Status.FALSE,
                Reason.PROGRESSING,
                f"{loaded} of {total} bound sessions have loaded {rev}",
            )
        elif total:
            applied = Condition(
                ConditionType.APPLIED,
                Status.TRUE,
                Reason.LOADED,
                f"all {total} bound sessions run {rev}",
            )
        else:
            applied = Condition(
                ConditionType.APPLIED,
                Status.TRUE,
                Reason.NO_SESSIONS,
                "no session uses this policy",
            )

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
        # None removes it (a merge patch): nothing was guarded, or nothing is sent.
        "egressGuard": _egress(desired.egress) if isinstance(desired, DesiredPolicy) else None,
    }
    # An invalid spec gives sessions nothing to load: waiting on them would poll until it is fixed.
    settled = rev is None or pending == 0
    return PolicyReport(status, rev, _events(old, valid, applied, rev, total), settled)


def _egress(report: EgressReport | None) -> dict[str, Any] | None:
    """status.egressGuard: counts of what is guarded (the ranges and names themselves are
    the platform's, not the tenant's to read), and each narrowing."""
    if report is None:
        return None
    return {
        "cidrs": report.cidrs,
        "hosts": report.hosts,
        "exemptions": report.exemptions,
        "narrowed": [
            {"field": n.field, "entry": n.entry, "kept": list(n.kept), "guard": list(n.guarded)}
            for n in report.narrowings
        ],
    }


#: Policies the platform's rules refuse (not a translation problem): what Applied says.
_PLATFORM_REFUSALS = {
    Reason.EGRESS_GUARDED: "the platform's egress guard refuses the policy: it is not sent",
    Reason.TENANCY_REFUSED: "the namespace's TenantPolicy refuses the policy: it is not sent",
}


def _events(
    old: Mapping[str, Any], valid: Condition, applied: Condition, rev: str | None, bound: int
) -> tuple[EventSpec, ...]:
    before = {c.get("type"): c for c in old.get("conditions", [])}
    events = []
    old_valid = before.get(ConditionType.VALID, {})
    if valid.status is Status.FALSE and (
        old_valid.get("status") != Status.FALSE or old_valid.get("message") != valid.message
    ):
        event = {
            Reason.EGRESS_GUARDED: EventReason.EGRESS_GUARDED,
            Reason.TENANCY_REFUSED: EventReason.TENANCY_REFUSED,
        }.get(Reason(valid.reason), EventReason.INVALID)
        events.append(EventSpec(EventType.WARNING, event, valid.message))
    old_applied = before.get(ConditionType.APPLIED, {})
    if applied.reason is Reason.LOADED and (
        old_applied.get("reason") != Reason.LOADED or old.get("revision") != rev
    ):
        events.append(
            EventSpec(
                EventType.NORMAL, EventReason.APPLIED, f"{rev} loaded on all {bound} bound sessions"
            )
        )
    refused = Reason.SESSIONS_REFUSED
    if applied.reason is refused and old_applied.get("reason") != refused:
        events.append(EventSpec(EventType.WARNING, EventReason.SESSIONS_REFUSED, applied.message))
    return tuple(events)
