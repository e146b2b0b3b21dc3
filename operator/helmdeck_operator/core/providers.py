"""A session's credential providers on its live sandbox, and what changes them. Pure.

The providers (`spec.providers`) are attached with the create, and later on the live
sandbox by AttachSandboxProvider and DetachSandboxProvider: a change never recreates the
sandbox. They are the whole truth, as the ports are: a provider the spec does not name is
detached, whoever attached it. Unlike endpoints, the gateway's sandbox record carries its
providers, so what is attached is read from the sandbox, never remembered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ProviderChanges", "provider_changes"]


@dataclass(frozen=True)
class ProviderChanges:
    """What to ask the gateway so that the sandbox's providers are the wanted ones."""

    attach: tuple[str, ...]
    detach: tuple[str, ...]

    def describe(self) -> str:
        """E.g. "attaching github; detaching gitlab"."""
        parts = [
            f"{verb} {', '.join(names)}"
            for verb, names in (("detaching", self.detach), ("attaching", self.attach))
            if names
        ]
        return "; ".join(parts)


def provider_changes(wanted: Iterable[str], attached: Iterable[str]) -> ProviderChanges:
    """Attach every wanted provider not attached, detach every attached one not wanted
    (each sorted: the same calls in the same order on every pass)."""
    wanted_set, attached_set = set(wanted), set(attached)
    return ProviderChanges(
        attach=tuple(sorted(wanted_set - attached_set)),
        detach=tuple(sorted(attached_set - wanted_set)),
    )
