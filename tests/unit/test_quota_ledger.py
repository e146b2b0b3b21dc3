"""`QuotaLedger`: which sessions of a namespace hold a sandbox, what they take together, and
who is woken when one gives its room back.

A session holds room when its status records a sandbox, or from the moment the shell takes
it for a create; it gives the room back when it is deleted, or Failed or Expired without a
sandbox. Stored sessions are plain dicts here, as kopf's index holds them.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from helmdeck_operator.core.tenancy import Ask, Usage
from helmdeck_operator.quota import QuotaLedger


def asked(cpu: str = "1", memory: str = "1Gi", gpu: int = 0) -> Ask:
    return Ask(gateway="pods", image=None, providers=(), cpu=cpu, memory=memory, gpu=gpu, ports=1)


def body(
    cpu: str = "1",
    *,
    sandbox: str | None = None,
    phase: str | None = None,
    readable: bool = True,
) -> dict[str, Any]:
    """A stored session asking for `cpu`, holding `sandbox` (its id) if given."""
    status: dict[str, Any] = {}
    if sandbox is not None:
        status["sandbox"] = {"id": sandbox, "name": "hd-x"}
    if phase is not None:
        status["phase"] = phase
    spec = {"cpu": cpu} if readable else {"garbled": True}
    return {"spec": spec, "status": status}


class Recorder:
    """The ledger's `ask_of`: a session's cpu from its spec; None when unreadable."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, stored: Mapping[str, Any]) -> Ask | None:
        self.calls += 1
        cpu = stored["spec"].get("cpu")
        return asked(cpu) if cpu is not None else None


def ledger() -> tuple[QuotaLedger, Recorder]:
    recorder = Recorder()
    return QuotaLedger(recorder), recorder


def cpu(usage: Usage) -> Decimal:
    return usage.cpu


# -- build ----------------------------------------------------------------------------


def test_build_counts_the_stored_sessions_that_hold_a_sandbox() -> None:
    book, _ = ledger()

    book.build(
        lambda: [
            ("a", "s1", body("1", sandbox="sbx-1")),
            ("a", "s2", body("2", sandbox="sbx-2", phase="Suspended")),
            ("a", "waiting", body("8", phase="Pending")),  # no sandbox: takes nothing
            ("a", "empty-id", body("8", sandbox="")),
            ("b", "s3", body("4", sandbox="sbx-3")),
        ]
    )

    assert book.usage("a", excluding="") == Usage(
        sessions=2, cpu=Decimal(3), memory=2 * Decimal(2) ** 30
    )
    assert book.usage("b", excluding="").sessions == 1
    assert book.usage("c", excluding="") == Usage()


def test_build_happens_once() -> None:
    book, _ = ledger()
    book.build(lambda: [("a", "s1", body("1", sandbox="sbx-1"))])
    listed: list[str] = []

    def later() -> list[tuple[str, str, dict[str, Any]]]:
        listed.append("again")
        return [("a", "s2", body("2", sandbox="sbx-2"))]

    book.build(later)  # a later pass: already built, and the sessions are not even listed

    assert cpu(book.usage("a", excluding="")) == 1
    assert listed == []


def test_a_session_whose_spec_cannot_be_read_takes_nothing() -> None:
    book, _ = ledger()

    book.build(lambda: [("a", "s1", body(sandbox="sbx-1", readable=False))])

    assert book.usage("a", excluding="") == Usage()


# -- usage ----------------------------------------------------------------------------


def test_usage_leaves_out_the_session_being_checked() -> None:
    book, _ = ledger()
    book.take("a", "s1", asked("1"))
    book.take("a", "s2", asked("2"))

    assert cpu(book.usage("a", excluding="s1")) == 2
    assert cpu(book.usage("a", excluding="s2")) == 1
    assert book.usage("a", excluding="s1").sessions == 1


def test_taking_again_replaces_what_the_session_takes() -> None:
    book, _ = ledger()
    book.take("a", "s1", asked("1"))

    book.take("a", "s1", asked("3"))  # recreated with another size

    assert book.usage("a", excluding="") == Usage().plus(asked("3"))


# -- track ----------------------------------------------------------------------------


def test_a_session_recorded_with_a_sandbox_holds_room_and_is_asked_once() -> None:
    book, recorder = ledger()

    assert book.track("a", "s1", body("2", sandbox="sbx-1")) == []
    assert book.track("a", "s1", body("2", sandbox="sbx-1", phase="Ready")) == []

    assert cpu(book.usage("a", excluding="")) == 2
    assert recorder.calls == 1


def test_what_was_taken_for_a_create_is_kept_once_the_status_shows_the_sandbox() -> None:
    book, recorder = ledger()
    book.take("a", "s1", asked("2"))

    book.track("a", "s1", body("2", sandbox="sbx-1"))

    assert recorder.calls == 0
    assert book.usage("a", excluding="") == Usage().plus(asked("2"))


def test_a_taken_session_without_a_sandbox_yet_keeps_its_room() -> None:
    """Taken before the create: the status shows no sandbox until the gateway answers."""
    book, _ = ledger()
    book.take("a", "s1", asked("2"))
    book.hold_back("a", "s2")

    for phase in ("Pending", "Provisioning", None):
        assert book.track("a", "s1", body("2", phase=phase)) == []

    assert cpu(book.usage("a", excluding="")) == 2


def test_failed_or_expired_without_a_sandbox_gives_room_back_and_wakes_the_held_back() -> None:
    for phase in ("Failed", "Expired"):
        book, _ = ledger()
        book.take("a", "s1", asked("2"))
        book.take("a", "s2", asked("1"))
        book.hold_back("a", "w2")
        book.hold_back("a", "w1")
        book.hold_back("b", "elsewhere")

        woken = book.track("a", "s1", body("2", phase=phase))

        assert woken == ["w1", "w2"], phase  # that namespace's, sorted
        assert cpu(book.usage("a", excluding="")) == 1
        # Given back once: the next event of the same session wakes nobody.
        assert book.track("a", "s1", body("2", phase=phase)) == []
        # The woken stay held back until they take room (or go): one may not fit yet.
        assert book.held_back("a") == [("a", "w1"), ("a", "w2")]


def test_failed_with_its_sandbox_still_there_keeps_holding() -> None:
    book, _ = ledger()
    book.take("a", "s1", asked("2"))
    book.hold_back("a", "w")

    assert book.track("a", "s1", body("2", sandbox="sbx-1", phase="Failed")) == []
    assert cpu(book.usage("a", excluding="")) == 2


def test_a_session_that_held_nothing_wakes_nobody_when_it_fails() -> None:
    book, _ = ledger()
    book.hold_back("a", "w")

    assert book.track("a", "refused", body("2", phase="Failed")) == []


def test_a_pass_that_ends_failed_or_expired_without_a_sandbox_gives_room_back() -> None:
    """`settled`: the pass's own word, for a plan whose status write may change nothing."""
    book, _ = ledger()
    book.take("a", "s1", asked("2"))
    book.hold_back("a", "w")

    for phase in ("Pending", "Provisioning", "Ready", "Suspended", None):
        assert book.settled("a", "s1", phase) == []
    assert cpu(book.usage("a", excluding="")) == 2

    assert book.settled("a", "s1", "Expired") == ["w"]
    assert book.usage("a", excluding="") == Usage()
    assert book.settled("a", "s1", "Failed") == []  # nothing left to give back


def test_deletion_gives_room_back_and_wakes_the_held_back() -> None:
    book, _ = ledger()
    book.take("a", "s1", asked("2"))
    book.hold_back("a", "w")

    assert book.track("a", "s1", None) == ["w"]
    assert book.usage("a", excluding="") == Usage()
    assert book.track("a", "s1", None) == []  # deleted already


def test_a_held_back_session_that_is_deleted_is_forgotten_and_wakes_nobody() -> None:
    book, _ = ledger()
    book.take("a", "s1", asked("2"))
    book.hold_back("a", "w1")
    book.hold_back("a", "w2")

    assert book.track("a", "w1", None) == []  # it held no room

    assert book.held_back("a") == [("a", "w2")]
    assert book.track("a", "s1", None) == ["w2"]


def test_tracking_an_unknown_namespace_changes_nothing() -> None:
    book, _ = ledger()

    assert book.track("new", "s1", None) == []
    assert book.track("new", "s1", body(phase="Failed")) == []
    assert book.usage("new", excluding="") == Usage()
    assert book.held_back() == []


# -- take, hold_back, held_back -------------------------------------------------------


def test_taking_room_ends_being_held_back() -> None:
    book, _ = ledger()
    book.hold_back("a", "s1")
    book.hold_back("a", "s1")  # a second refusal: still once

    assert book.held_back("a") == [("a", "s1")]
    book.take("a", "s1", asked())
    assert book.held_back("a") == []


def test_held_back_lists_one_namespace_or_all_names_sorted() -> None:
    book, _ = ledger()
    for namespace, name in [("a", "z"), ("b", "y"), ("a", "m"), ("b", "c")]:
        book.hold_back(namespace, name)

    assert book.held_back("a") == [("a", "m"), ("a", "z")]
    assert book.held_back("b") == [("b", "c"), ("b", "y")]
    assert book.held_back("c") == []
    assert sorted(book.held_back()) == [("a", "m"), ("a", "z"), ("b", "c"), ("b", "y")]
