"""Can a policy change be hot-reloaded into a running sandbox?

OpenShell applies only some changes to a live sandbox and refuses the rest with
INVALID_ARGUMENT. The operator must know before sending anything, so that `staticChanges:
Reject` can keep sessions on their revision with a clear reason and `Recreate` can replace
them, instead of learning it from a failed push per session. The rules (OPENSHELL.md):

- `network_policies` and `network_middlewares` are live (a first raw-TCP endpoint too: the
  gateway has no rule against adding one);
- filesystem paths may be added but not removed, and `include_workdir` is fixed;
- `landlock` and `process` must stay identical.

`version` is the schema version, not content, and is not compared.
"""

from __future__ import annotations

from openshell._proto import sandbox_pb2

from helmdeck_operator.policy.change import Blocker, ChangeClass

__all__ = ["classify_change"]


def classify_change(old: sandbox_pb2.SandboxPolicy, new: sandbox_pb2.SandboxPolicy) -> ChangeClass:
    """Classify the change from `old` (what a sandbox runs) to `new` (what is desired)."""
    return ChangeClass(
        blockers=(
            *_filesystem(old.filesystem, new.filesystem),
            *_identical(
                "landlock.compatibility",
                old.landlock.compatibility,
                new.landlock.compatibility,
                "Landlock",
            ),
            *_identical(
                "process.run_as_user",
                old.process.run_as_user,
                new.process.run_as_user,
                "the process user",
            ),
            *_identical(
                "process.run_as_group",
                old.process.run_as_group,
                new.process.run_as_group,
                "the process group",
            ),
        )
    )


def _filesystem(
    old: sandbox_pb2.FilesystemPolicy, new: sandbox_pb2.FilesystemPolicy
) -> list[Blocker]:
    blockers = []
    if old.include_workdir != new.include_workdir:
        blockers.append(
            Blocker(
                "filesystem.include_workdir",
                f"changed from {old.include_workdir} to {new.include_workdir}; "
                "it is fixed when the sandbox starts",
            )
        )
    for field in ("read_only", "read_write"):
        for path in sorted(set(getattr(old, field)) - set(getattr(new, field))):
            blockers.append(
                Blocker(
                    f"filesystem.{field}",
                    f"path {path!r} removed; paths can only be added to a running sandbox",
                )
            )
    return blockers


def _identical(field: str, old: str, new: str, what: str) -> list[Blocker]:
    if old == new:
        return []
    return [
        Blocker(
            field, f"changed from {old!r} to {new!r}; {what} cannot change on a running sandbox"
        )
    ]
