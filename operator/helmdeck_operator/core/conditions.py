"""Kubernetes-style conditions, computed and merged by pure functions.

Conditions follow the API convention (`type`, `status`, `reason`, `message`,
`observedGeneration`, `lastTransitionTime`). `lastTransitionTime` moves only when `status`
changes, so rewriting an unchanged condition is a no-op and status writes can be skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from helmdeck_operator.vocabulary import ConditionType, Reason

__all__ = ["Condition", "Status", "format_time", "merge_conditions"]


class Status(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


@dataclass(frozen=True)
class Condition:
    """One desired condition; the time of transition is decided by `merge_conditions`."""

    type: ConditionType
    status: Status
    reason: Reason
    message: str


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes writes timestamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    existing: Sequence[Mapping[str, Any]],
    desired: Iterable[Condition],
    *,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """The condition list to write: desired conditions in order, then untouched others.

    A condition keeps its `lastTransitionTime` when its status is unchanged.
    """
    by_type = {c["type"]: c for c in existing}
    merged: list[dict[str, Any]] = []
    seen: set[str] = set()
    for cond in desired:
        seen.add(cond.type)
        previous = by_type.get(cond.type)
        unchanged = previous is not None and previous.get("status") == cond.status.value
        merged.append(
            {
                "type": cond.type,
                "status": cond.status.value,
                "reason": cond.reason,
                "message": cond.message,
                "observedGeneration": generation,
                "lastTransitionTime": (
                    previous["lastTransitionTime"]
                    if unchanged and previous is not None
                    else format_time(now)
                ),
            }
        )
    merged.extend(dict(c) for c in existing if c["type"] not in seen)
    return merged
