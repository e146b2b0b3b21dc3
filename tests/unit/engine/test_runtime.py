"""The runtime's bookkeeping: own writes overlaid on the store until the watch delivers
them, merge patches, rollout slots and their waiters."""

from __future__ import annotations

from typing import Any

from helmdeck_operator.runtime import Key, Kind, RolloutSlots, Runtime, Stores, merge_patch

KEY = Key(Kind.SESSION, "team", "s1")


def body(resource_version: str, phase: str = "Provisioning") -> dict[str, Any]:
    return {
        "metadata": {"name": "s1", "namespace": "team", "resourceVersion": resource_version},
        "spec": {"family": "python"},
        "status": {"phase": phase, "policy": {"name": "p", "state": "Pending"}},
    }


def bare_runtime() -> Runtime:
    rt = Runtime.__new__(Runtime)  # only the bookkeeping fields are used below
    rt.stores = Stores({"session_bodies": {}, "policy_bodies": {}, "pool_bodies": {}})
    return rt


def test_merge_patch_sets_merges_and_removes() -> None:
    target = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1]}
    patch = {"a": None, "b": {"c": 9, "d": None}, "e": [2], "f": {"g": 1}}

    assert merge_patch(target, patch) == {"b": {"c": 9}, "e": [2], "f": {"g": 1}}
    assert target == {"a": 1, "b": {"c": 2, "d": 3}, "e": [1]}  # untouched


def test_an_own_write_is_read_back_until_the_store_catches_up() -> None:
    rt = bare_runtime()
    rt.written = {}
    status = {"phase": "Ready", "policy": {"state": "Loaded"}}
    rt.wrote(KEY, "12", {"status": status})

    stale = rt._overlaid(KEY, body("10"))
    assert stale is not None
    assert stale["status"]["phase"] == "Ready"
    assert stale["status"]["policy"] == {"name": "p", "state": "Loaded"}
    assert stale["metadata"]["resourceVersion"] == "12"

    assert rt.own_event(KEY, "12")  # the echo of our write: nothing to react to
    assert KEY not in rt.written
    current = rt._overlaid(KEY, body("12", phase="Ready"))
    assert current is not None
    assert current["metadata"]["resourceVersion"] == "12"


def test_a_newer_change_by_someone_else_drops_the_overlay() -> None:
    rt = bare_runtime()
    rt.written = {}
    rt.wrote(KEY, "12", {"status": {"phase": "Ready"}})

    assert not rt.own_event(KEY, "15")
    assert KEY not in rt.written
    rt.wrote(KEY, "20", {"status": {"phase": "Ready"}})
    newer = rt._overlaid(KEY, body("21", phase="Suspended"))
    assert newer is not None
    assert newer["status"]["phase"] == "Suspended"
    assert KEY not in rt.written


def test_successive_own_writes_combine() -> None:
    rt = bare_runtime()
    rt.written = {}
    rt.wrote(KEY, "11", {"metadata": {"finalizers": ["f"]}})
    rt.wrote(KEY, "12", {"status": {"phase": "Provisioning"}})

    overlaid = rt._overlaid(KEY, body("10", phase=""))
    assert overlaid is not None
    assert overlaid["metadata"]["finalizers"] == ["f"]
    assert overlaid["status"]["phase"] == "Provisioning"


def test_the_echo_of_an_earlier_own_write_is_not_a_change() -> None:
    """A pass that writes twice (the finalizer, then the status) hears two echoes: neither
    is a change to react to, while someone else's write between them is."""
    rt = bare_runtime()
    rt.written = {}
    rt.wrote(KEY, "11", {"metadata": {"finalizers": ["f"]}})
    rt.wrote(KEY, "13", {"status": {"phase": "Failed"}})

    assert rt.own_event(KEY, "11")
    assert KEY in rt.written  # still ahead of the store: keep reading it back
    assert not rt.own_event(KEY, "12")  # another client's write in between
    assert rt.own_event(KEY, "13")
    assert KEY not in rt.written


def test_a_freed_rollout_slot_wakes_the_sessions_waiting_for_one() -> None:
    slots = RolloutSlots()
    policy = ("team", "p")
    slots.take(policy, "uid-1")
    assert not slots.may_recreate(policy, "uid-2", limit=1)
    waiting = Key(Kind.SESSION, "team", "s2")
    slots.wait(policy, waiting)

    assert slots.release("uid-1") == [waiting]
    assert slots.may_recreate(policy, "uid-2", limit=1)
    assert slots.release("uid-1") == []


def test_a_write_the_watch_already_delivered_is_not_kept() -> None:
    rt = bare_runtime()
    rt.written = {}
    rt.stores = Stores(
        {"session_bodies": {("team", "s1"): [body("12")]}, "policy_bodies": {}, "pool_bodies": {}}
    )

    rt.wrote(KEY, "12", {"status": {"phase": "Ready"}})  # the echo came first

    assert KEY not in rt.written


def session(name: str, policy: str | None, revision: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"family": "python"}
    if policy:
        spec["policyRef"] = {"name": policy}
    status = {"policy": {"revision": revision, "desiredRevision": "r2", "state": "Loaded"}}
    return {"metadata": {"name": name, "namespace": "team"}, "spec": spec, "status": status}


def test_the_store_keeps_who_references_a_policy_and_their_tally_event_by_event() -> None:
    index = {("team", "a"): [session("a", "p", "r1")], ("team", "b"): [session("b", "p", "r2")]}
    stores = Stores({"session_bodies": index, "policy_bodies": {}, "pool_bodies": {}})

    # Built from the index at the first use ...
    assert stores.bound_names("team", "p") == ["a", "b"]
    assert stores.tally("team", "p") == {("r1", "r2", "Loaded"): 1, ("r2", "r2", "Loaded"): 1}
    # ... then kept by each event: a loads r2, b moves to policy q, c appears, a goes.
    assert stores.track("team", "a", session("a", "p", "r2")) == "p"
    assert stores.tally("team", "p") == {("r2", "r2", "Loaded"): 2}
    assert stores.track("team", "b", session("b", "q", "r2")) == "p"
    assert stores.track("team", "c", session("c", None)) is None
    assert stores.bound_names("team", "p") == ["a"]
    assert stores.bound_names("team", "q") == ["b"]
    assert stores.track("team", "a", None) == "p"
    assert stores.bound_names("team", "p") == []
    assert stores.tally("team", "p") == {}
