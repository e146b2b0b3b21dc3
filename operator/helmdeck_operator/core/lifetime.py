"""When a session ends: its TTL, extended by lease renewals, and its idle clock. Pure.

The consumer of a session writes `status.lease` (the one part of the status the operator
never writes; docs/helmdeck.md): `renewTime` says "in use now" and resets the idle clock,
`expireTime` asks the lifetime to end later (helmdeck's ExtendTimeout). Both are requests,
read here against what the operator last granted and recorded in the status:

- The lifetime ends at creation + `lifetime.ttl`, or at the latest `expireTime` granted
  (`status.extendedTo`), whichever is later. A request past creation + the configured
  maximum lifetime is refused whole (condition LifetimeExtended False, ExtensionRefused) and
  the end granted before stays; a session without a TTL has no end to extend.
- The idle clock runs from the latest activity: a renewal, sandbox activity the operator
  saw, or the sandbox becoming Ready or being started again (`status.lastActivityAt` keeps
  the latest). It starts once the session was first Ready. A renewal dated in the future
  counts as now, so a skewed clock cannot buy idle time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from helmdeck_operator.core.conditions import Condition, Status, format_time
from helmdeck_operator.core.session import SessionMeta, SessionSpec, parse_duration, ttl_end
from helmdeck_operator.vocabulary import ConditionType, Reason

__all__ = ["Lifetime", "idle_at", "lifetime", "parse_time"]


@dataclass(frozen=True)
class Lifetime:
    """A session's end and idle clock as of one pass."""

    expires_at: datetime | None
    """The effective end: the TTL's, or a later one granted by a renewal."""
    extended_to: datetime | None
    """The latest end a renewal was granted (recorded as status.extendedTo)."""
    extension: Condition | None
    """LifetimeExtended, once the consumer has asked for an extension."""
    idle_timeout: timedelta | None
    on_idle: str
    activity: datetime | None
    """The latest activity known from the status and the consumer's renewal; None before
    the session was first Ready (the idle clock has not started)."""


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time from the status, or None when absent or not a time."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def lifetime(
    spec: SessionSpec,
    meta: SessionMeta,
    status: Mapping[str, Any],
    max_lifetime: timedelta,
    now: datetime,
) -> Lifetime:
    """The session's end and idle clock from its spec, its status and the consumer's lease."""
    lease = status.get("lease") or {}
    ttl = ttl_end(spec, meta)
    granted = parse_time(status.get("extendedTo"))
    extension = None
    wanted = parse_time(lease.get("expireTime"))
    if wanted is not None:
        granted, extension = _extend(ttl, granted, wanted, meta.created_at + max_lifetime)
    expires = ttl if ttl is None or granted is None else max(ttl, granted)
    timeout = spec.lifetime.idle_timeout
    activity = None
    if status.get("readyAt"):
        known = [
            t
            for t in (
                parse_time(status.get("readyAt")),
                parse_time(status.get("lastActivityAt")),
                parse_time(lease.get("renewTime")),
            )
            if t is not None
        ]
        activity = min(max(known), now) if known else None
    return Lifetime(
        expires_at=expires,
        extended_to=granted,
        extension=extension,
        idle_timeout=parse_duration(timeout) if timeout else None,
        on_idle=spec.lifetime.on_idle,
        activity=activity,
    )


def _extend(
    ttl: datetime | None, granted: datetime | None, wanted: datetime, limit: datetime
) -> tuple[datetime | None, Condition]:
    """The end granted after the request `wanted`, and the LifetimeExtended condition."""
    asked = f"status.lease.expireTime {format_time(wanted)}"
    if ttl is None:
        return granted, Condition(
            ConditionType.LIFETIME_EXTENDED,
            Status.FALSE,
            Reason.EXTENSION_REFUSED,
            f"{asked} refused: the session has no lifetime.ttl, so it never expires",
        )
    if wanted > limit:
        current = ttl if granted is None else max(ttl, granted)
        return granted, Condition(
            ConditionType.LIFETIME_EXTENDED,
            Status.FALSE,
            Reason.EXTENSION_REFUSED,
            f"{asked} refused: past the maximum lifetime, which ends at {format_time(limit)}"
            f" (creation plus the operator's sessions.max_lifetime_seconds); the session"
            f" still expires at {format_time(current)}",
        )
    granted = wanted if granted is None else max(granted, wanted)
    end = max(ttl, granted)
    return granted, Condition(
        ConditionType.LIFETIME_EXTENDED,
        Status.TRUE,
        Reason.EXTENDED,
        f"{asked} granted: the session expires at {format_time(end)}",
    )


def idle_at(activity: datetime | None, timeout: timedelta | None) -> datetime | None:
    """When a session goes idle after `activity`; None when it never does (yet)."""
    if activity is None or timeout is None:
        return None
    return activity + timeout
