"""`plan_pool`, one pass of a SessionPool, and the pure helpers around it.

The tests follow the rules of `core.pool`'s docstring, in order: forgotten claims (1),
claims whose session is gone or elsewhere (2), the answers to waiting sessions (3), broken
and stale idle sandboxes (4), scale-down (5), refill (6) and release on deletion (7); then
the Ready condition, `member` (a gateway record as the plan sees it), `claims_of`,
`pool_status`, and properties that hold for any pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helmdeck_operator.core.conditions import Condition, Status, format_time
from helmdeck_operator.core.naming import ANNOTATION_INITIAL_POLICY
from helmdeck_operator.core.plan import ANNOTATION_SHAPE
from helmdeck_operator.core.pool import (
    MAX_CLAIMS,
    Claim,
    ClaimRequest,
    Holder,
    Member,
    MemberState,
    PoolFacts,
    PoolPlan,
    claims_of,
    member,
    plan_pool,
    pool_status,
)
from helmdeck_operator.gateway import models as gw
from helmdeck_operator.vocabulary import ConditionType, Reason
from tests.support.builders import NOW, REV_A, REV_B, SHAPE, sandbox

P = gw.SandboxPhase
S = MemberState

POOL_UID = "9d0e8f7a-1b2c-4d3e-8f90-a1b2c3d4e5f6"
OTHER_SHAPE = "fedcba9876543210"
BASELINE = ("base", REV_A)
#: What `holders` says of a claim's session: one of the Holders, or absent from the map.
MISSING = None


# -- builders ----------------------------------------------------------------------------


def pool(**overrides: Any) -> PoolFacts:
    """Pool `warm` of browser sandboxes on gateway `pods`: 2 replicas, baseline `base`."""
    values: dict[str, Any] = {
        "uid": POOL_UID,
        "name": "warm",
        "generation": 3,
        "family": "browser",
        "gateway": "pods",
        "replicas": 2,
        "max_provisioning": 10,
        "shape_digest": SHAPE,
        "baseline": BASELINE,
    }
    values.update(overrides)
    return PoolFacts(**values)


def mem(name: str, state: MemberState = S.READY, *, age: int = 0, current: bool = True) -> Member:
    """A member created `age` seconds before NOW (the larger, the older)."""
    return Member(name, state, current, NOW - timedelta(seconds=age))


def claim(sandbox_name: str, uid: str = "", session: str = "") -> Claim:
    return Claim(sandbox_name, session or f"sess-{sandbox_name}", uid or f"uid-{sandbox_name}", "")


def request(uid: str = "r1", **overrides: Any) -> ClaimRequest:
    """A session `s-<uid>` that fits pool `warm` and whose policy is a live change."""
    values: dict[str, Any] = {
        "uid": uid,
        "session": f"s-{uid}",
        "family": "browser",
        "gateway": "pods",
        "shape_digest": SHAPE,
    }
    values.update(overrides)
    return ClaimRequest(**values)


def plan(
    facts: PoolFacts,
    members: Sequence[Member] = (),
    holders: Mapping[str, Holder] | None = None,
    requests: Sequence[ClaimRequest] = (),
    now: datetime = NOW,
) -> PoolPlan:
    return plan_pool(facts, members, holders or {}, requests, now)


def holders_of(claims: Sequence[Claim], holder: Holder | None) -> dict[str, Holder]:
    """Every claim's session saying `holder` (MISSING: none of them in the map)."""
    return {} if holder is None else {c.uid: holder for c in claims}


def answer(p: PoolPlan, uid: str) -> tuple[str, str]:
    """(reason, message) of the one refusal of request `uid`; ("Granted", sandbox) if granted."""
    refused = [r for r in p.refused if r.uid == uid]
    granted = [c for c in p.granted if c.uid == uid]
    assert len(refused) + len(granted) == 1, (refused, granted)
    if granted:
        return "Granted", granted[0].sandbox
    return refused[0].reason.value, refused[0].message


def ready_condition(p: PoolPlan) -> tuple[str, str, str]:
    return p.condition.status.value, p.condition.reason.value, p.condition.message


# -- 1. a claim whose sandbox is no longer the pool's is forgotten ------------------------


def test_a_claim_whose_sandbox_is_not_a_member_is_forgotten() -> None:
    gone, kept = claim("hp-gone"), claim("hp-kept")
    facts = pool(claims=(gone, kept))

    p = plan(facts, [mem("hp-kept")], {gone.uid: Holder.RECORDED, kept.uid: Holder.RECORDED})

    assert p.claims == (kept,)
    assert "hp-gone" not in p.delete  # nothing of that name left to delete


@pytest.mark.parametrize("holder", [*Holder, MISSING], ids=lambda h: str(h or "missing"))
def test_a_claim_whose_sandbox_is_still_a_member_is_kept_whatever_its_holder(
    holder: Holder | None,
) -> None:
    held = claim("hp-a")

    p = plan(pool(claims=(held,)), [mem("hp-a")], holders_of([held], holder))

    assert p.claims == (held,)


def test_a_forgotten_claim_frees_nothing_for_a_new_session() -> None:
    """The forgotten claim's sandbox is gone; a request is answered from what is left."""
    p = plan(pool(claims=(claim("hp-gone"),)), [], {}, [request()])

    assert answer(p, "r1") == ("PoolEmpty", "SessionPool warm has no ready sandbox")
    assert p.claims == ()


# -- 2. a claim whose session is gone or elsewhere has its sandbox deleted --------------


@pytest.mark.parametrize(
    "holder", [Holder.GONE, Holder.ELSEWHERE, MISSING], ids=["gone", "elsewhere", "missing"]
)
@pytest.mark.parametrize("state", [S.READY, S.BOOTING, S.BROKEN])
def test_a_claim_of_a_session_gone_or_elsewhere_has_its_sandbox_deleted(
    holder: Holder | None, state: MemberState
) -> None:
    held = claim("hp-a")

    p = plan(pool(claims=(held,)), [mem("hp-a", state)], holders_of([held], holder))

    assert p.delete == ("hp-a",)
    assert p.claims == (held,)  # the claim goes with its sandbox (rule 1, a later pass)


@pytest.mark.parametrize(
    "holder", [Holder.GONE, Holder.ELSEWHERE, MISSING], ids=["gone", "elsewhere", "missing"]
)
def test_a_claimed_sandbox_being_deleted_already_is_not_deleted_again(
    holder: Holder | None,
) -> None:
    held = claim("hp-a")

    p = plan(pool(claims=(held,)), [mem("hp-a", S.DELETING)], holders_of([held], holder))

    assert p.delete == ()
    assert p.claims == (held,)


@pytest.mark.parametrize("holder", [Holder.RECORDED, Holder.UNRECORDED])
@pytest.mark.parametrize("state", [S.READY, S.BOOTING, S.BROKEN])
@pytest.mark.parametrize("current", [True, False], ids=["current", "stale"])
def test_a_claim_its_session_holds_or_may_still_record_keeps_its_sandbox(
    holder: Holder, state: MemberState, current: bool
) -> None:
    """Neither rule 2, nor rule 4 (broken, stale) nor rule 5 (replicas 0) touches it."""
    held = claim("hp-a")

    p = plan(
        pool(claims=(held,), replicas=0),
        [mem("hp-a", state, current=current)],
        holders_of([held], holder),
    )

    assert p.delete == ()
    assert p.claims == (held,)


def test_a_claimed_sandbox_is_not_counted_idle_and_is_replaced() -> None:
    held = claim("hp-a")

    p = plan(pool(claims=(held,), replicas=1), [mem("hp-a")], {held.uid: Holder.RECORDED})

    assert (p.ready, p.create, p.booting) == (0, 1, 1)
    assert ready_condition(p) == ("False", "PoolFilling", "0 of 1 ready, 1 booting")


@pytest.mark.parametrize("holder", [*Holder, MISSING], ids=lambda h: str(h or "missing"))
def test_a_claimed_sandbox_is_never_claimed_again(holder: Holder | None) -> None:
    held = claim("hp-a")

    p = plan(pool(claims=(held,)), [mem("hp-a")], holders_of([held], holder), [request()])

    assert answer(p, "r1") == ("PoolEmpty", "SessionPool warm has no ready sandbox")
    assert p.claims == (held,)


def test_scale_down_spares_claimed_sandboxes() -> None:
    held = claim("hp-held")

    p = plan(
        pool(claims=(held,), replicas=1),
        [mem("hp-held", age=99), mem("hp-old", age=50), mem("hp-new", age=1)],
        {held.uid: Holder.RECORDED},
    )

    assert p.delete == ("hp-new",)  # two idle above one replica; the oldest claimed stays
    assert (p.ready, p.create) == (1, 0)


def test_scale_down_to_zero_deletes_only_idle_sandboxes() -> None:
    held = claim("hp-held")

    p = plan(
        pool(claims=(held,), replicas=0),
        [mem("hp-held"), mem("hp-idle")],
        {held.uid: Holder.UNRECORDED},
    )

    assert p.delete == ("hp-idle",)


# -- 3. waiting sessions: refusals in order, then the oldest ready idle sandbox ----------


def test_a_pool_being_deleted_answers_pool_not_found_before_anything_else() -> None:
    misfit = request(family="python", gateway="other", shape_digest=OTHER_SHAPE, live=False)

    p = plan(pool(deleting=True), [mem("hp-a")], {}, [request("r1"), replace(misfit, uid="r2")])

    assert answer(p, "r1") == ("PoolNotFound", "SessionPool warm is being deleted")
    assert answer(p, "r2") == ("PoolNotFound", "SessionPool warm is being deleted")
    assert p.granted == ()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"family": "python"},
            "SessionPool warm boots browser sandboxes on gateway pods; "
            "this session is python on gateway pods",
        ),
        (
            {"gateway": "vms"},
            "SessionPool warm boots browser sandboxes on gateway pods; "
            "this session is browser on gateway vms",
        ),
        (
            {"family": "node", "gateway": "vms", "shape_digest": OTHER_SHAPE, "live": False},
            "SessionPool warm boots browser sandboxes on gateway pods; "
            "this session is node on gateway vms",
        ),
        (
            {"shape_digest": OTHER_SHAPE},
            "SessionPool warm boots another image, command, resources or env than this "
            "session asks for",
        ),
        (
            {"shape_digest": OTHER_SHAPE, "live": False, "not_live": "x"},
            "SessionPool warm boots another image, command, resources or env than this "
            "session asks for",
        ),
    ],
    ids=["family", "gateway", "family-before-shape-and-live", "shape", "shape-before-live"],
)
def test_a_session_of_another_shape_answers_pool_shape_mismatch(
    overrides: dict[str, Any], message: str
) -> None:
    p = plan(pool(), [mem("hp-a")], {}, [request(**overrides)])

    assert answer(p, "r1") == ("PoolShapeMismatch", message)
    assert p.claims == ()


@pytest.mark.parametrize(
    ("baseline", "named"), [(BASELINE, "base"), (None, "unresolved")], ids=["base", "unresolved"]
)
def test_a_session_whose_policy_is_not_live_answers_pool_policy_not_live(
    baseline: tuple[str, str] | None, named: str
) -> None:
    blocked = request(live=False, not_live="filesystem rules change; process identity changes")

    p = plan(pool(baseline=baseline), [mem("hp-a")], {}, [blocked])

    assert answer(p, "r1") == (
        "PoolPolicyNotLive",
        "the session's policy cannot be loaded into a running sandbox of SessionPool warm "
        f"(baseline {named}): filesystem rules change; process identity changes",
    )
    assert p.granted == ()


def test_not_live_is_answered_before_the_pool_is_found_empty() -> None:
    p = plan(pool(), [], {}, [request(live=False, not_live="why")])

    assert answer(p, "r1")[0] == "PoolPolicyNotLive"


def test_the_oldest_ready_idle_sandbox_is_claimed_first() -> None:
    members = [mem("hp-mid", age=20), mem("hp-old", age=30), mem("hp-new", age=10)]

    p = plan(pool(replicas=3), members, {}, [request()])

    assert answer(p, "r1") == ("Granted", "hp-old")


def test_equally_old_sandboxes_are_claimed_by_name() -> None:
    members = [mem("hp-c", age=5), mem("hp-a", age=5), mem("hp-b", age=5)]

    p = plan(pool(replicas=3), members, {}, [request()])

    assert answer(p, "r1") == ("Granted", "hp-a")


def test_a_sandbox_of_unknown_age_counts_as_the_oldest() -> None:
    members = [mem("hp-a", age=1000), Member("hp-z", S.READY, True, None)]

    p = plan(pool(), members, {}, [request()])

    assert answer(p, "r1") == ("Granted", "hp-z")


def test_the_age_order_holds_across_time_zones() -> None:
    east = timezone(timedelta(hours=9))
    older = Member("hp-b", S.READY, True, (NOW - timedelta(seconds=60)).astimezone(east))
    newer = Member("hp-a", S.READY, True, NOW)

    p = plan(pool(), [newer, older], {}, [request()])

    assert answer(p, "r1") == ("Granted", "hp-b")


def test_requests_are_answered_in_the_order_given_each_with_its_own_sandbox() -> None:
    members = [mem("hp-new", age=1), mem("hp-old", age=9)]

    p = plan(pool(), members, {}, [request("first"), request("second")])

    assert [(c.uid, c.sandbox) for c in p.granted] == [("first", "hp-old"), ("second", "hp-new")]
    assert p.refused == ()


def test_requests_beyond_the_ready_sandboxes_answer_pool_empty() -> None:
    members = [mem("hp-a", age=2), mem("hp-b", age=1)]

    p = plan(pool(), members, {}, [request("r1"), request("r2"), request("r3"), request("r4")])

    assert [c.uid for c in p.granted] == ["r1", "r2"]
    assert [(r.uid, r.reason) for r in p.refused] == [
        ("r3", Reason.POOL_EMPTY),
        ("r4", Reason.POOL_EMPTY),
    ]
    assert {r.message for r in p.refused} == {"SessionPool warm has no ready sandbox"}


def test_a_refused_request_takes_no_sandbox_from_the_next() -> None:
    p = plan(pool(), [mem("hp-a")], {}, [request("r1", gateway="vms"), request("r2")])

    assert answer(p, "r1")[0] == "PoolShapeMismatch"
    assert answer(p, "r2") == ("Granted", "hp-a")


@pytest.mark.parametrize(
    "unclaimable",
    [
        mem("hp-a", S.BOOTING),
        mem("hp-a", S.BROKEN),
        mem("hp-a", S.DELETING),
        mem("hp-a", S.READY, current=False),
        mem("hp-a", S.BOOTING, current=False),
    ],
    ids=["booting", "broken", "deleting", "stale-ready", "stale-booting"],
)
def test_only_a_ready_current_sandbox_is_claimed(unclaimable: Member) -> None:
    p = plan(pool(), [unclaimable], {}, [request()])

    assert answer(p, "r1") == ("PoolEmpty", "SessionPool warm has no ready sandbox")
    assert p.claims == ()


def test_a_ready_current_sandbox_is_claimed_past_unclaimable_older_ones() -> None:
    members = [
        mem("hp-booting", S.BOOTING, age=90),
        mem("hp-broken", S.BROKEN, age=80),
        mem("hp-deleting", S.DELETING, age=70),
        mem("hp-stale", S.READY, age=60, current=False),
        mem("hp-good", S.READY, age=1),
    ]

    p = plan(pool(), members, {}, [request()])

    assert answer(p, "r1") == ("Granted", "hp-good")


def test_a_granted_claim_names_the_session_and_the_time() -> None:
    old = claim("hp-held")
    east = timezone(timedelta(hours=2))
    now = datetime(2025, 6, 1, 14, 30, 15, 999_999, tzinfo=east)

    p = plan(
        pool(claims=(old,)),
        [mem("hp-held"), mem("hp-a")],
        {old.uid: Holder.RECORDED},
        [request("u-7", session="agent")],
        now,
    )

    new = Claim(sandbox="hp-a", session="agent", uid="u-7", claimed_at="2025-06-01T12:30:15Z")
    assert p.granted == (new,)
    assert new.claimed_at == format_time(now)
    assert p.claims == (old, new)  # the old ones first, then the new ones in order


def test_a_refusal_names_the_session() -> None:
    p = plan(pool(), [], {}, [request("u-9", session="agent")])

    assert [(r.uid, r.session) for r in p.refused] == [("u-9", "agent")]


def _full(count: int) -> tuple[PoolFacts, list[Member], dict[str, Holder]]:
    """A pool holding `count` recorded claims, with two ready idle sandboxes besides."""
    held = tuple(claim(f"hp-{i}") for i in range(count))
    members = [mem(c.sandbox) for c in held] + [mem("hp-free-1", age=2), mem("hp-free-2")]
    return pool(claims=held), members, holders_of(held, Holder.RECORDED)


def test_a_pool_holding_max_claims_answers_pool_empty() -> None:
    facts, members, holders = _full(MAX_CLAIMS)

    p = plan(facts, members, holders, [request()])

    assert answer(p, "r1") == (
        "PoolEmpty",
        f"SessionPool warm holds {MAX_CLAIMS} claims, the most one pool records",
    )
    assert len(p.claims) == MAX_CLAIMS


def test_claims_granted_in_the_same_pass_count_toward_max_claims() -> None:
    facts, members, holders = _full(MAX_CLAIMS - 1)

    p = plan(facts, members, holders, [request("r1"), request("r2")])

    assert answer(p, "r1") == ("Granted", "hp-free-1")
    assert answer(p, "r2")[1].endswith(f"holds {MAX_CLAIMS} claims, the most one pool records")
    assert len(p.claims) == MAX_CLAIMS


def test_forgotten_claims_do_not_count_toward_max_claims() -> None:
    facts, members, holders = _full(MAX_CLAIMS)
    members = [m for m in members if m.name != "hp-0"]  # one claimed sandbox is gone

    p = plan(facts, members, holders, [request()])

    assert answer(p, "r1") == ("Granted", "hp-free-1")
    assert len(p.claims) == MAX_CLAIMS


def test_a_claim_recorded_by_one_pass_is_not_granted_again_by_the_next() -> None:
    members = [mem("hp-a", age=2), mem("hp-b", age=1)]
    facts = pool()
    first = plan(facts, members, {}, [request("r1")])

    again = replace(facts, claims=claims_of(pool_status(facts, first, {}, NOW)))
    second = plan(again, members, {"r1": Holder.UNRECORDED}, [request("r2")])

    assert answer(first, "r1") == ("Granted", "hp-a")
    assert answer(second, "r2") == ("Granted", "hp-b")
    assert [c.sandbox for c in second.claims] == ["hp-a", "hp-b"]


# -- 4. idle broken or stale sandboxes are deleted ---------------------------------------


@pytest.mark.parametrize(
    "unusable",
    [
        mem("hp-x", S.BROKEN),
        mem("hp-x", S.BROKEN, current=False),
        mem("hp-x", S.READY, current=False),
        mem("hp-x", S.BOOTING, current=False),
    ],
    ids=["broken", "broken-stale", "stale-ready", "stale-booting"],
)
def test_an_idle_broken_or_stale_sandbox_is_deleted_and_replaced(unusable: Member) -> None:
    p = plan(pool(replicas=2), [mem("hp-good"), unusable])

    assert p.delete == ("hp-x",)
    assert (p.ready, p.create, p.booting) == (1, 1, 1)


def test_an_idle_sandbox_being_deleted_is_left_alone_and_not_counted() -> None:
    p = plan(pool(replicas=1), [mem("hp-going", S.DELETING)])

    assert p.delete == ()
    assert (p.ready, p.create) == (0, 1)


# -- 5. scale-down: booting first, then the newest ready ones ----------------------------


def test_surplus_is_deleted_booting_first_then_newest_ready_first() -> None:
    members = [
        mem("hp-ready-old", age=40),
        mem("hp-booting-old", S.BOOTING, age=35),
        mem("hp-ready-mid", age=30),
        mem("hp-ready-new", age=20),
        mem("hp-booting-new", S.BOOTING, age=10),
    ]

    p = plan(pool(replicas=1), members)

    assert p.delete == ("hp-booting-new", "hp-booting-old", "hp-ready-new", "hp-ready-mid")
    assert (p.ready, p.booting, p.create) == (1, 0, 0)


@pytest.mark.parametrize(
    ("replicas", "deleted"),
    [
        (4, ()),
        (3, ("hp-b2",)),
        (2, ("hp-b2", "hp-b1")),
        (1, ("hp-b2", "hp-b1", "hp-r2")),
        (0, ("hp-b2", "hp-b1", "hp-r2", "hp-r1")),
    ],
)
def test_surplus_deletes_exactly_the_idle_sandboxes_above_replicas(
    replicas: int, deleted: tuple[str, ...]
) -> None:
    members = [
        mem("hp-r1", age=40),
        mem("hp-r2", age=30),
        mem("hp-b1", S.BOOTING, age=20),
        mem("hp-b2", S.BOOTING, age=10),
    ]

    p = plan(pool(replicas=replicas), members)

    assert p.delete == deleted
    assert p.ready + p.booting == replicas
    assert p.create == 0


def test_surplus_is_counted_after_this_pass_claims() -> None:
    members = [mem("hp-a", age=3), mem("hp-b", age=2), mem("hp-c", age=1)]

    p = plan(pool(replicas=2), members, {}, [request()])

    assert answer(p, "r1") == ("Granted", "hp-a")
    assert p.delete == ()  # two idle left: exactly replicas
    assert (p.ready, p.create) == (2, 0)


def test_surplus_is_counted_after_broken_and_stale_ones_go() -> None:
    members = [mem("hp-a", age=3), mem("hp-broken", S.BROKEN), mem("hp-stale", current=False)]

    p = plan(pool(replicas=1), members)

    assert p.delete == ("hp-broken", "hp-stale")  # rule 4 only: hp-a is the one replica
    assert (p.ready, p.create) == (1, 0)


# -- 6. refill: below replicas, at most maxProvisioning booting --------------------------


@pytest.mark.parametrize(
    ("replicas", "max_provisioning", "ready", "booting", "create"),
    [
        (3, 10, 0, 0, 3),
        (3, 2, 0, 0, 2),
        (3, 2, 0, 1, 1),
        (3, 2, 0, 2, 0),
        (3, 1, 0, 2, 0),  # booting above maxProvisioning already: never negative
        (5, 2, 2, 0, 2),
        (5, 10, 2, 1, 2),
        (2, 10, 1, 0, 1),
        (2, 10, 2, 0, 0),
        (2, 10, 3, 0, 0),  # surplus: deleted, nothing created
        (2, 10, 0, 3, 0),
        (0, 10, 0, 0, 0),
        (5, 0, 0, 0, 0),
    ],
)
def test_create_fills_up_to_replicas_within_max_provisioning(
    replicas: int, max_provisioning: int, ready: int, booting: int, create: int
) -> None:
    members = [mem(f"hp-r{i}", age=100 - i) for i in range(ready)]
    members += [mem(f"hp-b{i}", S.BOOTING, age=50 - i) for i in range(booting)]

    p = plan(pool(replicas=replicas, max_provisioning=max_provisioning), members)

    assert p.create == create
    assert p.booting == min(booting, max(0, replicas - ready)) + create


def test_nothing_is_created_without_a_baseline_and_the_condition_says_why() -> None:
    message = "baseline SidecarPolicy team/base does not exist; waiting for it"
    facts = pool(baseline=None, baseline_problem=(Reason.POLICY_NOT_FOUND, message))

    p = plan(facts, [])

    assert p.create == 0
    assert p.condition == Condition(
        ConditionType.READY, Status.FALSE, Reason.POLICY_NOT_FOUND, message
    )


def test_a_baseline_problem_is_reported_even_when_the_pool_is_full() -> None:
    facts = pool(replicas=1, baseline_problem=(Reason.POLICY_INVALID, "bad baseline"))

    p = plan(facts, [mem("hp-a")])

    assert ready_condition(p) == ("False", "PolicyInvalid", "bad baseline")


def test_without_a_baseline_or_a_problem_the_condition_counts_what_is_there() -> None:
    p = plan(pool(baseline=None, replicas=2), [mem("hp-a")])

    assert p.create == 0
    assert ready_condition(p) == ("False", "PoolFilling", "1 of 2 ready, 0 booting")


def test_nothing_is_created_while_the_pool_is_being_deleted() -> None:
    p = plan(pool(deleting=True, replicas=5), [])

    assert (p.create, p.booting) == (0, 0)


# -- 7. a pool being deleted keeps nothing idle and is released when nothing is left -----


def test_a_pool_being_deleted_deletes_every_idle_sandbox() -> None:
    members = [
        mem("hp-r", age=9),
        mem("hp-b", S.BOOTING, age=5),
        mem("hp-broken", S.BROKEN),
        mem("hp-stale", current=False),
        mem("hp-going", S.DELETING),
    ]

    p = plan(pool(deleting=True), members)

    assert sorted(p.delete) == ["hp-b", "hp-broken", "hp-r", "hp-stale"]
    assert (p.ready, p.booting, p.create) == (0, 0, 0)
    assert not p.release  # they are still there


def test_a_pool_being_deleted_with_nothing_left_is_released() -> None:
    assert plan(pool(deleting=True), []).release


def test_a_pool_not_being_deleted_is_never_released() -> None:
    assert not plan(pool(replicas=0), []).release


@pytest.mark.parametrize("state", list(MemberState))
def test_a_pool_being_deleted_waits_for_every_unclaimed_member(state: MemberState) -> None:
    p = plan(pool(deleting=True), [mem("hp-a", state)])

    assert not p.release


def test_a_pool_being_deleted_is_released_when_every_claim_is_recorded() -> None:
    held = (claim("hp-a"), claim("hp-b"))
    members = [mem("hp-a"), mem("hp-b", S.DELETING)]

    p = plan(pool(deleting=True, claims=held), members, holders_of(held, Holder.RECORDED))

    assert p.release
    assert p.delete == ()  # the sessions own them now


@pytest.mark.parametrize(
    "holder",
    [Holder.UNRECORDED, Holder.ELSEWHERE, Holder.GONE, MISSING],
    ids=["unrecorded", "elsewhere", "gone", "missing"],
)
def test_a_pool_being_deleted_waits_for_a_claim_not_recorded(holder: Holder | None) -> None:
    recorded, other = claim("hp-a"), claim("hp-b")
    holders = {recorded.uid: Holder.RECORDED, **holders_of([other], holder)}

    p = plan(pool(deleting=True, claims=(recorded, other)), [mem("hp-a"), mem("hp-b")], holders)

    assert not p.release


def test_a_pool_being_deleted_is_released_once_an_unrecorded_claims_sandbox_is_gone() -> None:
    held = claim("hp-a")
    facts = pool(deleting=True, claims=(held,))
    holders = {held.uid: Holder.GONE}

    first = plan(facts, [mem("hp-a")], holders)
    going = plan(facts, [mem("hp-a", S.DELETING)], holders)
    gone = plan(replace(facts, claims=first.claims), [], holders)

    assert (first.delete, first.release) == (("hp-a",), False)
    assert (going.delete, going.release) == ((), False)
    assert (gone.claims, gone.release) == ((), True)


# -- the Ready condition -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("replicas", "members", "expected"),
    [
        (2, ["R", "R"], ("True", "PoolFilled", "2 of 2 ready")),
        (2, ["R", "R", "R"], ("True", "PoolFilled", "2 of 2 ready")),
        (0, [], ("True", "PoolFilled", "0 of 0 ready")),
        (0, ["R", "B"], ("True", "PoolFilled", "0 of 0 ready")),
        (3, ["R"], ("False", "PoolFilling", "1 of 3 ready, 2 booting")),
        (3, ["R", "B"], ("False", "PoolFilling", "1 of 3 ready, 2 booting")),
        (3, ["B", "B", "B"], ("False", "PoolFilling", "0 of 3 ready, 3 booting")),
    ],
)
def test_ready_is_true_once_replicas_sandboxes_are_ready(
    replicas: int, members: list[str], expected: tuple[str, str, str]
) -> None:
    states = {"R": S.READY, "B": S.BOOTING}
    built = [mem(f"hp-{i}", states[kind], age=10 - i) for i, kind in enumerate(members)]

    p = plan(pool(replicas=replicas), built)

    assert ready_condition(p) == expected
    assert p.condition.type is ConditionType.READY


def test_a_pool_being_deleted_is_filled_with_nothing() -> None:
    p = plan(pool(deleting=True, replicas=3), [mem("hp-a")])

    assert ready_condition(p) == ("True", "PoolFilled", "0 of 0 ready")


def test_the_condition_counts_booting_with_what_this_pass_creates() -> None:
    p = plan(pool(replicas=4, max_provisioning=2), [mem("hp-a"), mem("hp-b", S.BOOTING)])

    assert (p.ready, p.booting, p.create) == (1, 2, 1)
    assert ready_condition(p) == ("False", "PoolFilling", "1 of 4 ready, 2 booting")


# -- member(): a gateway record as the plan sees it --------------------------------------


def _record(phase: gw.SandboxPhase = P.READY, *, version: int = 1, **overrides: Any) -> gw.Sandbox:
    """A pool sandbox booted with SHAPE and baseline REV_A."""
    values: dict[str, Any] = {
        "name": "hp-a",
        "owner": None,
        "current_policy_version": version,
        "annotations": {ANNOTATION_SHAPE: SHAPE, ANNOTATION_INITIAL_POLICY: REV_A},
    }
    values.update(overrides)
    return sandbox(phase, **values)


@pytest.mark.parametrize(
    ("phase", "version", "deleting", "state"),
    [
        (P.READY, 1, False, S.READY),
        (P.READY, 7, False, S.READY),
        (P.READY, 0, False, S.BOOTING),  # up, but the baseline is not loaded yet
        (P.PROVISIONING, 0, False, S.BOOTING),
        (P.PROVISIONING, 1, False, S.BOOTING),
        (P.STARTING, 1, False, S.BOOTING),
        (P.UNKNOWN, 1, False, S.BOOTING),
        (P.UNSPECIFIED, 0, False, S.BOOTING),
        (P.ERROR, 1, False, S.BROKEN),
        (P.ERROR, 0, False, S.BROKEN),
        (P.COMPLETED, 1, False, S.BROKEN),
        (P.DELETING, 1, False, S.DELETING),
        (P.DELETING, 0, False, S.DELETING),
        (P.READY, 1, True, S.DELETING),
        (P.PROVISIONING, 0, True, S.DELETING),
        (P.ERROR, 1, True, S.DELETING),
        (P.COMPLETED, 1, True, S.DELETING),
    ],
)
def test_member_state_follows_the_phase_the_loaded_baseline_and_deletion(
    phase: gw.SandboxPhase, version: int, deleting: bool, state: MemberState
) -> None:
    record = _record(phase, version=version, deleting=deleting)

    assert member(record, SHAPE, REV_A, ()).state is state


@pytest.mark.parametrize(
    ("annotations", "current"),
    [
        ({ANNOTATION_SHAPE: SHAPE, ANNOTATION_INITIAL_POLICY: REV_A}, True),
        ({ANNOTATION_SHAPE: OTHER_SHAPE, ANNOTATION_INITIAL_POLICY: REV_A}, False),
        ({ANNOTATION_SHAPE: SHAPE, ANNOTATION_INITIAL_POLICY: REV_B}, False),
        ({ANNOTATION_SHAPE: OTHER_SHAPE, ANNOTATION_INITIAL_POLICY: REV_B}, False),
        ({ANNOTATION_INITIAL_POLICY: REV_A}, False),
        ({ANNOTATION_SHAPE: SHAPE}, False),
        ({}, False),
    ],
    ids=["both", "other-shape", "other-baseline", "neither", "no-shape", "no-baseline", "none"],
)
def test_member_is_current_only_when_shape_and_baseline_both_match(
    annotations: dict[str, str], current: bool
) -> None:
    assert member(_record(annotations=annotations), SHAPE, REV_A, ()).current is current


@pytest.mark.parametrize(
    ("attached", "template", "current"),
    [
        ((), (), True),
        (("github", "gitlab"), ("gitlab", "github"), True),  # the order is no difference
        (("github",), (), False),
        ((), ("github",), False),
    ],
)
def test_member_is_current_only_with_the_templates_providers(
    attached: tuple[str, ...], template: tuple[str, ...], current: bool
) -> None:
    """Providers are no part of the shape digest (claims attach and detach them), yet a
    change of the template's replaces the idle sandboxes as any template change does."""
    assert member(_record(providers=attached), SHAPE, REV_A, template).current is current


def test_member_is_never_current_while_the_baseline_is_unresolved() -> None:
    """The reconciler passes baseline_revision None when the baseline cannot be resolved;
    no sandbox booted with a baseline can match it, so none is claimed unclassified."""
    assert not member(_record(), SHAPE, None, ()).current


def test_a_sandbox_without_the_initial_policy_annotation_is_never_current() -> None:
    """Not even while the baseline is unresolved: it would be granted to requests never
    classified against any baseline."""
    unannotated = _record(annotations={ANNOTATION_SHAPE: SHAPE})

    assert not member(unannotated, SHAPE, None, ()).current


def test_member_keeps_the_name_and_the_creation_time() -> None:
    created = NOW - timedelta(minutes=5)

    found = member(_record(name="hp-xyz", created_at=created), SHAPE, REV_A, ())

    assert found == Member("hp-xyz", S.READY, True, created)
    assert member(_record(), SHAPE, REV_A, ()).created_at is None


def test_members_built_from_records_feed_the_plan() -> None:
    records = [
        _record(name="hp-old", created_at=NOW - timedelta(seconds=30)),
        _record(name="hp-new", created_at=NOW - timedelta(seconds=10)),
        _record(P.PROVISIONING, name="hp-boot", version=0),
        _record(P.ERROR, name="hp-err"),
        _record(name="hp-stale", annotations={ANNOTATION_SHAPE: OTHER_SHAPE}),
    ]
    members = [member(r, SHAPE, REV_A, ()) for r in records]

    p = plan(pool(replicas=2), members, {}, [request()])

    assert answer(p, "r1") == ("Granted", "hp-old")
    assert p.delete == ("hp-err", "hp-stale")
    assert (p.ready, p.booting, p.create) == (1, 1, 0)


def test_without_a_baseline_no_booted_sandbox_is_claimed_nor_drained() -> None:
    """An unresolved baseline (its policy deleted or invalid for a moment): whether the idle
    sandboxes are stale is unknown, so none is claimed (PoolEmpty) and none deleted (rule
    4); none is booted until the baseline resolves (rule 6)."""
    members = [member(_record(name=n), SHAPE, None, ()) for n in ("hp-a", "hp-b")]
    facts = pool(baseline=None, baseline_problem=(Reason.POLICY_NOT_FOUND, "gone"))

    p = plan(facts, members, {}, [request()])

    assert answer(p, "r1") == ("PoolEmpty", "SessionPool warm has no ready sandbox")
    assert p.delete == ()
    assert p.create == 0


# -- claims_of() -------------------------------------------------------------------------


def test_claims_of_reads_every_complete_item() -> None:
    status = {
        "claims": [
            {"sandbox": "hp-a", "session": "web", "uid": "u1", "claimedAt": "2025-06-01T12:00:00Z"},
            {"sandbox": "hp-b", "uid": "u2"},
        ]
    }

    assert claims_of(status) == (
        Claim("hp-a", "web", "u1", "2025-06-01T12:00:00Z"),
        Claim("hp-b", "", "u2", ""),
    )


@pytest.mark.parametrize(
    "item",
    [
        {"session": "web", "uid": "u1"},
        {"sandbox": "", "session": "web", "uid": "u1"},
        {"sandbox": None, "uid": "u1"},
        {"sandbox": "hp-a", "session": "web"},
        {"sandbox": "hp-a", "session": "web", "uid": ""},
        {"sandbox": "hp-a", "uid": None},
        {},
    ],
    ids=["no-sandbox", "empty-sandbox", "null-sandbox", "no-uid", "empty-uid", "null-uid", "empty"],
)
def test_claims_of_skips_an_item_without_sandbox_or_uid(item: dict[str, Any]) -> None:
    status = {"claims": [item, {"sandbox": "hp-ok", "uid": "u-ok"}]}

    assert [c.sandbox for c in claims_of(status)] == ["hp-ok"]


@pytest.mark.parametrize("status", [{}, {"claims": None}, {"claims": []}])
def test_claims_of_a_status_without_claims_is_empty(status: dict[str, Any]) -> None:
    assert claims_of(status) == ()


# -- pool_status() -----------------------------------------------------------------------


def test_pool_status_reports_counts_selector_claims_and_baseline() -> None:
    held = Claim("hp-held", "web", "u1", "2025-06-01T11:00:00Z")
    facts = pool(replicas=4, max_provisioning=1, claims=(held,))
    members = [mem("hp-held"), mem("hp-a", age=2), mem("hp-b", S.BOOTING)]
    p = plan(facts, members, {"u1": Holder.RECORDED}, [request("u2", session="api")])

    status = pool_status(facts, p, {}, NOW)

    assert status == {
        "observedGeneration": 3,
        "replicas": 1,  # hp-a was just claimed; hp-b boots, nothing more (maxProvisioning 1)
        "readyReplicas": 0,
        "provisioning": 1,
        "claimed": 2,
        "selector": f"helmdeck.dev/pool-uid={POOL_UID}",
        "shape": SHAPE,
        "claims": [
            {
                "sandbox": "hp-held",
                "session": "web",
                "uid": "u1",
                "claimedAt": "2025-06-01T11:00:00Z",
            },
            {"sandbox": "hp-a", "session": "api", "uid": "u2", "claimedAt": format_time(NOW)},
        ],
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "PoolFilling",
                "message": "0 of 4 ready, 1 booting",
                "observedGeneration": 3,
                "lastTransitionTime": format_time(NOW),
            }
        ],
        "baseline": {"name": "base", "revision": REV_A},
    }


def test_pool_status_counts_ready_and_booting_as_replicas() -> None:
    facts = pool(replicas=5, max_provisioning=3)
    p = plan(facts, [mem("hp-a"), mem("hp-b"), mem("hp-c", S.BOOTING)])

    status = pool_status(facts, p, {}, NOW)

    assert (p.ready, p.booting, p.create) == (2, 3, 2)
    assert (status["replicas"], status["readyReplicas"], status["provisioning"]) == (5, 2, 3)
    assert status["claimed"] == 0
    assert status["claims"] == []


def test_pool_status_without_a_baseline_says_none() -> None:
    facts = pool(baseline=None, baseline_problem=(Reason.POLICY_INVALID, "bad"))

    status = pool_status(facts, plan(facts), {}, NOW)

    assert status["baseline"] is None
    assert [(c["reason"], c["message"]) for c in status["conditions"]] == [("PolicyInvalid", "bad")]


def test_pool_status_claims_read_back_as_the_same_claims() -> None:
    facts = pool(claims=(Claim("hp-x", "web", "u1", "2025-06-01T10:00:00Z"),))
    p = plan(facts, [mem("hp-x"), mem("hp-a")], {"u1": Holder.RECORDED}, [request()])

    assert claims_of(pool_status(facts, p, {}, NOW)) == p.claims


def _filled_status(since: str) -> dict[str, Any]:
    return {
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "PoolFilled",
                "message": "2 of 2 ready",
                "observedGeneration": 2,
                "lastTransitionTime": since,
            },
            {"type": "Custom", "status": "True", "lastTransitionTime": since},
        ]
    }


def test_pool_status_keeps_the_transition_time_while_ready_is_unchanged() -> None:
    since = "2025-05-01T00:00:00Z"
    facts = pool()
    p = plan(facts, [mem("hp-a"), mem("hp-b")])

    (ready, other) = pool_status(facts, p, _filled_status(since), NOW)["conditions"]

    assert ready == {
        "type": "Ready",
        "status": "True",
        "reason": "PoolFilled",
        "message": "2 of 2 ready",
        "observedGeneration": 3,
        "lastTransitionTime": since,
    }
    assert other == {"type": "Custom", "status": "True", "lastTransitionTime": since}


def test_pool_status_moves_the_transition_time_when_ready_changes() -> None:
    facts = pool()
    p = plan(facts, [mem("hp-a")])

    ready = pool_status(facts, p, _filled_status("2025-05-01T00:00:00Z"), NOW)["conditions"][0]

    assert (ready["status"], ready["reason"]) == ("False", "PoolFilling")
    assert ready["lastTransitionTime"] == format_time(NOW)


# -- properties over any pass ------------------------------------------------------------

_NAMES = [f"hp-{i}" for i in range(8)]
_holders = st.sampled_from([*Holder, MISSING])


@st.composite
def _passes(
    draw: st.DrawFn,
) -> tuple[PoolFacts, list[Member], dict[str, Holder], list[ClaimRequest]]:
    names = draw(st.lists(st.sampled_from(_NAMES), unique=True, max_size=8))
    members = [
        Member(
            name,
            draw(st.sampled_from(list(MemberState))),
            draw(st.booleans()),
            draw(st.none() | st.integers(0, 4).map(lambda s: NOW - timedelta(seconds=s))),
        )
        for name in names
    ]
    # A pool's claims name distinct sandboxes (the compare-and-set write guarantees it),
    # some of them no longer members.
    claimed = draw(st.lists(st.sampled_from(_NAMES), unique=True, max_size=6))
    claims = tuple(claim(name, uid=f"c-{name}") for name in claimed)
    holders: dict[str, Holder] = {}
    for c in claims:
        holder = draw(_holders)
        if holder is not None:
            holders[c.uid] = holder
    requests = [
        request(
            f"r{i}",
            family=draw(st.sampled_from(["browser", "browser", "python"])),
            gateway=draw(st.sampled_from(["pods", "pods", "vms"])),
            shape_digest=draw(st.sampled_from([SHAPE, SHAPE, OTHER_SHAPE])),
            live=draw(st.booleans() | st.just(True)),
        )
        for i in range(draw(st.integers(0, 6)))
    ]
    facts = pool(
        replicas=draw(st.integers(0, 5)),
        max_provisioning=draw(st.integers(0, 4)),
        baseline=draw(st.sampled_from([BASELINE, None])),
        deleting=draw(st.booleans()),
        claims=claims,
    )
    return facts, members, holders, requests


@settings(max_examples=400, deadline=None)
@given(_passes())
def test_any_pass_keeps_the_pools_invariants(
    case: tuple[PoolFacts, list[Member], dict[str, Holder], list[ClaimRequest]],
) -> None:
    facts, members, holders, requests = case
    by_name = {m.name: m for m in members}
    p = plan(facts, members, holders, requests)
    kept = [c for c in facts.claims if c.sandbox in by_name]
    before = {c.sandbox for c in kept}
    granted = {c.sandbox for c in p.granted}
    target = 0 if facts.deleting else facts.replicas

    # One sandbox, one claim; the kept claims first, then the new ones.
    sandboxes = [c.sandbox for c in p.claims]
    assert len(sandboxes) == len(set(sandboxes))
    assert p.claims == (*kept, *p.granted)
    # A granted sandbox is a ready, current, idle member that is not being deleted.
    assert not granted & before
    assert not granted & set(p.delete)
    assert all(by_name[s].state is S.READY and by_name[s].current for s in granted)
    # Every request answered exactly once, in order.
    answered = sorted([*(c.uid for c in p.granted), *(r.uid for r in p.refused)])
    assert answered == sorted(r.uid for r in requests)
    assert [c.uid for c in p.granted] == [
        r.uid for r in requests if r.uid in {c.uid for c in p.granted}
    ]
    assert len(p.claims) <= max(MAX_CLAIMS, len(kept))
    # Deletes: members only, once each, never one already going, never a held claim.
    assert len(p.delete) == len(set(p.delete))
    assert all(by_name[name].state is not S.DELETING for name in p.delete)
    held = {c.sandbox for c in kept if holders.get(c.uid) in (Holder.RECORDED, Holder.UNRECORDED)}
    assert not held & set(p.delete)
    # Counts: never negative, never above the target, within maxProvisioning.
    assert 0 <= p.create <= max(0, facts.max_provisioning)
    assert p.ready >= 0
    assert p.booting >= p.create
    assert p.ready + p.booting <= target
    if facts.baseline is None or facts.deleting:
        assert p.create == 0
    if facts.deleting:
        assert p.granted == ()
        assert {r.reason for r in p.refused} <= {Reason.POOL_NOT_FOUND}
        idle = {m.name for m in members if m.name not in before and m.state is not S.DELETING}
        assert idle <= set(p.delete)
    # Released only when deleting, nothing unclaimed is left, and every claim is recorded.
    if p.release:
        assert facts.deleting
        assert all(m.name in before for m in members)
        assert all(holders.get(c.uid) is Holder.RECORDED for c in p.claims)
    # The condition is the counts (no baseline problem is drawn here).
    filled = p.ready >= target
    assert p.condition.status is (Status.TRUE if filled else Status.FALSE)
    assert p.condition.reason is (Reason.POOL_FILLED if filled else Reason.POOL_FILLING)


# -- creates in flight ---------------------------------------------------------------------


def test_creates_in_flight_count_as_booting_and_are_not_sent_again() -> None:
    """A pass does not wait for its creates: the next pass must not send them again."""
    p = plan(pool(replicas=4, in_flight=3), [mem("hp-a")])

    assert p.create == 0
    assert (p.ready, p.booting) == (1, 3)


def test_creates_in_flight_take_provisioning_slots() -> None:
    p = plan(pool(replicas=10, max_provisioning=4, in_flight=3))

    assert p.create == 1
    assert p.booting == 4


def test_creates_in_flight_make_a_surplus_of_the_sandboxes_there() -> None:
    """Scaled down while creates are answered: the surplus goes among what exists."""
    members = [mem("hp-a"), mem("hp-b")]

    p = plan(pool(replicas=2, in_flight=1), members)

    assert len(p.delete) == 1
    assert p.create == 0


def test_a_pool_with_creates_in_flight_is_not_released() -> None:
    p = plan(pool(deleting=True, in_flight=1))

    assert not p.release
    assert plan(pool(deleting=True)).release
