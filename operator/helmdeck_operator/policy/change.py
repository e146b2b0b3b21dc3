"""The verdict on a policy change (`classify.classify_change` decides it).

Apart from the classifier so that the core can read a verdict without importing the
OpenShell protobuf stubs (whose package brings gRPC with it).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Blocker", "ChangeClass"]


@dataclass(frozen=True)
class Blocker:
    """One reason a change cannot be applied to a running sandbox."""

    #: The OpenShell policy field, e.g. `filesystem.read_only` or `process.run_as_user`.
    field: str
    #: Why, naming the offending value, for conditions and Events.
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


@dataclass(frozen=True)
class ChangeClass:
    """The verdict on one old -> new change."""

    #: Everything that prevents a hot reload; empty when the change is live.
    blockers: tuple[Blocker, ...] = ()

    @property
    def live(self) -> bool:
        """True when the new policy can be pushed to running sandboxes as it is (a no-op
        change is live). Derived from `blockers` so the two cannot disagree."""
        return not self.blockers
