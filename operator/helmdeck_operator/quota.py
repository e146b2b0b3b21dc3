"""The namespaces' ledger: which sessions hold a sandbox, what each takes, who waits for room.

A namespace's totals (TenantPolicy perNamespace) count the sessions that hold a sandbox:
those whose status records one, and those this process has just decided to create one for
(taken before the create call, with no await in between the check and the taking, so two
passes of one namespace never both fit into the last room). A session gives its room back
when it is deleted, or when its status (or the plan of a pass) shows no sandbox and it is
Failed or Expired; the sessions waiting in that namespace are then woken and check again.
After a restart the ledger is rebuilt from the sessions' statuses at first use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from helmdeck_operator.core.tenancy import Ask, Usage
from helmdeck_operator.vocabulary import Phase

__all__ = ["QuotaLedger"]

#: Phases in which a session without a sandbox will not get one without a change.
_GIVEN_UP = frozenset({Phase.FAILED, Phase.EXPIRED})


class QuotaLedger:
    def __init__(self, ask_of: Callable[[Mapping[str, Any]], Ask | None]) -> None:
        self._ask_of = ask_of
        """What a session (its stored body) takes; None when it cannot be told (a spec the
        operator cannot read takes nothing)."""
        self._taken: dict[str, dict[str, Usage]] = {}
        """Per namespace: what each session holding (or being given) a sandbox takes."""
        self._totals: dict[str, Usage] = {}
        """Per namespace: the sum of `_taken`, kept as it changes, so a check is O(1)."""
        self._held_back: dict[str, set[str]] = {}
        """Per namespace: sessions refused or waiting for room, woken when either may end."""
        self._built = False

    def build(self, sessions: Callable[[], Iterable[tuple[str, str, Mapping[str, Any]]]]) -> None:
        """Fill the ledger from every stored session, once (the first pass after a start):
        `sessions` is called that once only."""
        if self._built:
            return
        self._built = True
        for namespace, name, body in sessions():
            if _holds(body):
                self._note(namespace, name, body)

    def track(self, namespace: str, name: str, body: Mapping[str, Any] | None) -> list[str]:
        """Record a session as stored now (None: deleted); the sessions of its namespace to
        wake because room was given back."""
        if body is None:
            self._held_back.get(namespace, set()).discard(name)
            return self._give_back(namespace, name)
        if _holds(body):
            self._note(namespace, name, body)
            return []
        return self.settled(namespace, name, (body.get("status") or {}).get("phase"))

    def settled(self, namespace: str, name: str, phase: str | None) -> list[str]:
        """A session without a sandbox is (or is planned to be) in `phase`: Failed or
        Expired gives its room back; the sessions of its namespace to wake. Called by the
        pass as well as by `track`: a pass takes room before it plans, and a plan that
        creates nothing may write no status, so no watch event would give the room back."""
        return self._give_back(namespace, name) if phase in _GIVEN_UP else []

    def usage(self, namespace: str, excluding: str) -> Usage:
        """What the namespace's other sessions take."""
        total = self._totals.get(namespace, Usage())
        own = self._taken.get(namespace, {}).get(excluding)
        return total - own if own is not None else total

    def take(self, namespace: str, name: str, ask: Ask) -> None:
        """The session is about to get a sandbox."""
        self._put(namespace, name, ask)
        self._held_back.get(namespace, set()).discard(name)

    def hold_back(self, namespace: str, name: str) -> None:
        """The session waits for room, or is refused until the rules change."""
        self._held_back.setdefault(namespace, set()).add(name)

    def held_back(self, namespace: str | None = None) -> list[tuple[str, str]]:
        """The sessions held back, in one namespace or in all."""
        spaces = [namespace] if namespace is not None else list(self._held_back)
        return [(ns, name) for ns in spaces for name in sorted(self._held_back.get(ns, ()))]

    def _note(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        if name not in self._taken.get(namespace, {}):
            ask = self._ask_of(body)
            if ask is not None:
                self._put(namespace, name, ask)

    def _put(self, namespace: str, name: str, ask: Ask) -> None:
        share = Usage().plus(ask)
        old = self._taken.setdefault(namespace, {}).get(name)
        self._taken[namespace][name] = share
        total = self._totals.get(namespace, Usage()) + share
        self._totals[namespace] = total - old if old is not None else total

    def _give_back(self, namespace: str, name: str) -> list[str]:
        share = self._taken.get(namespace, {}).pop(name, None)
        if share is None:
            return []
        self._totals[namespace] = self._totals[namespace] - share
        return sorted(self._held_back.get(namespace, ()))


def _holds(body: Mapping[str, Any]) -> bool:
    return bool(((body.get("status") or {}).get("sandbox") or {}).get("id"))
