"""The one error a SidecarPolicy spec can fail with, whatever is wrong with it.

Callers (the reconciler setting `Valid=False`, the `policy render` CLI exiting 2) need every
problem at once, each with the field path a user can find in their YAML, and must never have
to catch pydantic's, protobuf's or the standard library's exceptions. So validation failures
of any kind become a `PolicyValidationError` here, and pydantic's `ValidationError` is
translated in exactly one place: `from_pydantic`.

    PolicyValidationError(ValueError)
        .issues: tuple[Issue(path, message), ...]
        EgressGuardError: valid, but it opens what the platform's egress guard closes
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pydantic
import pydantic_core

__all__ = [
    "SPEC_ROOT",
    "EgressGuardError",
    "Issue",
    "PolicyValidationError",
    "field_path",
    "from_pydantic",
]

#: Field paths are reported from the object root, as the apiserver reports them.
SPEC_ROOT = "spec"


@dataclass(frozen=True)
class Issue:
    """One problem in a spec."""

    #: Where, as the apiserver spells it: `spec.network[0].endpoints[1].host`.
    path: str
    #: What is wrong, in words a user can act on.
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class PolicyValidationError(ValueError):
    """A SidecarPolicy spec that cannot become an OpenShell policy.

    A `ValueError` so generic callers treat it as bad input; `issues` is never empty.
    """

    def __init__(self, issues: Iterable[Issue]) -> None:
        self.issues: tuple[Issue, ...] = tuple(issues)
        if not self.issues:
            raise ValueError("a PolicyValidationError needs at least one issue")
        super().__init__("; ".join(str(issue) for issue in self.issues))


class EgressGuardError(PolicyValidationError):
    """A spec the CRD accepts that would open an address or name the platform's egress
    guard closes (`guard`): refused, never sent. A subclass, so that every caller that
    reports validation problems reports these too, and those that care tell them apart."""


def field_path(location: Iterable[int | str], root: str = SPEC_ROOT) -> str:
    """Spell a location the way the apiserver does: `.name` for fields, `[i]` for items."""
    path = root
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            # pydantic's marker for "the key of this map entry", not a field name.
            path += "[key]"
        else:
            path += f".{part}" if path else part
    return path


def from_pydantic(exc: pydantic.ValidationError, root: str = SPEC_ROOT) -> PolicyValidationError:
    """The only translation of pydantic's error into ours; keeps pydantic's wording."""
    return PolicyValidationError(
        Issue(field_path(error["loc"], root), error["msg"])
        for error in exc.errors(include_url=False)
        if not _is_echo(error)
    )


def _is_echo(error: pydantic_core.ErrorDetails) -> bool:
    """pydantic checks a tuple's minimum length after dropping the items that failed, so
    one bad endpoint of one also reports "endpoints: at least 1 item". The input had enough
    items; the real error is already reported at the item."""
    if error["type"] != "too_short":
        return False
    given = error["input"]
    needed = (error.get("ctx") or {}).get("min_length", 0)
    return isinstance(given, list | tuple) and len(given) >= needed
