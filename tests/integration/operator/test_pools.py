"""SessionPools against the real apiserver and the emulator: a claimed sandbox belongs to
exactly one session through twenty SIGKILLs and a leader handover in the middle of claim
storms, the reasons for a cold create, `kubectl scale`, and a deleted pool.

The first two tests run operators of their own (killed and restarted); they come first in
this module so that the module's shared `operator`, which the later tests start, is not
running beside them (two operators without leader election would both reconcile).
"""

from __future__ import annotations

import itertools
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from helmdeck_dev.controlplane import ControlPlane, free_port
from helmdeck_dev.emulator_process import EmulatorProcess
from helmdeck_dev.objects import condition, phase, policy, pool, session
from helmdeck_dev.operator_process import OperatorProcess
from helmdeck_operator import crashpoints
from helmdeck_operator.core.naming import sandbox_name
from helmdeck_operator.events import STORM_BURST, STORM_WINDOW_S
from tests.support import policies
from tests.support.cluster import Kube
from tests.support.replicas import holder, probe

POOL = "warm"
REF = {"name": POOL}


# -- policies --------------------------------------------------------------------------------


def live_spec(host: str = "api.example.com") -> dict[str, Any]:
    """The python default policy plus one inspected network rule: a live change from the
    pool's default baseline (the python default without network rules)."""
    spec = policies.family_spec("python")
    spec["network"] = [policies.rule("api", policies.rest(host))]
    return spec


def other_user_spec() -> dict[str, Any]:
    """Not live from the baseline: the process user differs."""
    spec = policies.family_spec("python")
    spec["process"] = {**spec["process"], "runAsUser": "2000"}
    return spec


def fewer_paths_spec() -> dict[str, Any]:
    """Not live from the baseline: a read-only path removed."""
    spec = policies.family_spec("python")
    spec["filesystem"]["readOnly"] = [p for p in spec["filesystem"]["readOnly"] if p != "/etc"]
    return spec


# -- what the gateway and the API hold ---------------------------------------------------------


def ours(gateway: EmulatorProcess, namespace: str) -> list[dict[str, Any]]:
    """The gateway's sandboxes of this namespace: sessions' own and pools' members."""
    prefix = namespace + "/"
    return [
        s
        for s in gateway.snapshot()["sandboxes"]
        if s["annotations"].get("helmdeck.dev/session", "").startswith(prefix)
        or s["annotations"].get("helmdeck.dev/pool", "").startswith(prefix)
    ]


def members(gateway: EmulatorProcess, pool_uid: str) -> list[dict[str, Any]]:
    return [
        s
        for s in gateway.snapshot()["sandboxes"]
        if s["labels"].get("helmdeck.dev/pool-uid") == pool_uid
    ]


def claims(pool_obj: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list(((pool_obj or {}).get("status") or {}).get("claims") or [])


def uid_of(obj: dict[str, Any] | None) -> str:
    assert obj is not None
    return str(obj["metadata"]["uid"])


def recorded(obj: dict[str, Any] | None) -> dict[str, Any]:
    """A session's status.pool."""
    return dict(((obj or {}).get("status") or {}).get("pool") or {})


def running(obj: dict[str, Any] | None) -> str | None:
    """The sandbox a session's status names."""
    return (((obj or {}).get("status") or {}).get("sandbox") or {}).get("name")


def audit(
    kube: Kube, gateway: EmulatorProcess, live: set[str], idle_target: int, pool_name: str = POOL
) -> list[str]:
    """Every way the namespace breaks the pool's promises (empty: none):

    - exactly the live sessions exist, all Ready;
    - no sandbox is recorded by two sessions (status.sandbox.name and status.pool.sandbox);
      a claimed session runs its claimed sandbox, a cold one its own `hd-` sandbox;
    - the pool's claims are exactly the live claimed sessions' (name, uid, sandbox);
    - every sandbox of the namespace on the gateway is one live session's (READY, its id
      the one the session's status names) or an idle member of the pool; nothing else (a
      deleted session's, a second one of a session's) is left;
    - `idle_target` idle members, all READY.
    """
    problems: list[str] = []
    sessions = {s["metadata"]["name"]: s for s in kube.list("hds")}
    if set(sessions) != live:
        problems.append(
            f"sessions not live: {sorted(set(sessions) - live)}, "
            f"missing: {sorted(live - set(sessions))}"
        )
    holders: dict[str, set[str]] = defaultdict(set)
    for name, obj in sessions.items():
        uid = obj["metadata"]["uid"]
        if phase(obj) != "Ready":
            problems.append(f"{name} is {phase(obj)}: {condition(obj, 'Ready').get('message')}")
            continue
        claimed, own = recorded(obj).get("sandbox"), running(obj)
        if claimed and own != claimed:
            problems.append(f"{name} claimed {claimed} but runs {own}")
        if not claimed and own != sandbox_name(uid):
            problems.append(f"{name} was created cold but runs {own}")
        for sandbox in {claimed, own} - {None}:
            holders[str(sandbox)].add(name)
    for sandbox, who in holders.items():
        if len(who) > 1:
            problems.append(f"sandbox {sandbox} is recorded by {sorted(who)}")

    pool_obj = kube.get("hdp", pool_name)
    pool_uid = pool_obj["metadata"]["uid"] if pool_obj else ""
    recorded_claims = {(c["sandbox"], c.get("session"), c["uid"]) for c in claims(pool_obj)}
    expected_claims = {
        (recorded(obj)["sandbox"], name, obj["metadata"]["uid"])
        for name, obj in sessions.items()
        if recorded(obj).get("sandbox")
    }
    if pool_obj is not None and recorded_claims != expected_claims:
        problems.append(
            f"pool claims without a live session recording them: "
            f"{sorted(recorded_claims - expected_claims)}; claimed sessions the pool does "
            f"not record: {sorted(expected_claims - recorded_claims)}"
        )
    claimed_sandboxes = {sandbox for sandbox, _, _ in recorded_claims}

    idle: list[dict[str, Any]] = []
    on_gateway = set()
    for sandbox in ours(gateway, kube.namespace):
        name = sandbox["name"]
        on_gateway.add(name)
        if name in holders:
            [holder] = sorted(holders[name])[:1]
            obj = sessions[holder]
            if sandbox["phase"] != "READY":
                problems.append(f"{holder}'s sandbox {name} is {sandbox['phase']}")
            if (obj["status"].get("sandbox") or {}).get("id") != sandbox["id"]:
                problems.append(
                    f"{holder} names id {obj['status']['sandbox'].get('id')}, "
                    f"the gateway's {name} has {sandbox['id']}"
                )
            if (
                name.startswith("hp-")
                and sandbox["labels"].get("helmdeck.dev/pool-uid") != pool_uid
            ):
                problems.append(f"{holder}'s pool sandbox {name} is not the pool's")
        elif (
            pool_uid
            and sandbox["labels"].get("helmdeck.dev/pool-uid") == pool_uid
            and name not in claimed_sandboxes
        ):
            idle.append(sandbox)
        else:
            problems.append(
                f"stray sandbox {name} ({sandbox['phase']}): labels {sandbox['labels']}, "
                f"annotations {sandbox['annotations']}"
            )
    missing = sorted(set(holders) - on_gateway)
    if missing:
        problems.append(f"recorded sandboxes not on the gateway: {missing}")
    ready_idle = [s for s in idle if s["phase"] == "READY"]
    if len(idle) != idle_target or len(ready_idle) != idle_target:
        problems.append(
            f"{len(idle)} idle members ({len(ready_idle)} READY), not {idle_target}: "
            f"{[(s['name'], s['phase']) for s in idle]}"
        )
    return problems


def exclusive_now(kube: Kube, pool_name: str = POOL) -> list[str]:
    """What may never be seen, even for a moment: one sandbox recorded by two sessions
    (deleted ones still held by their finalizer included), or claimed for two sessions,
    or one session holding two claims."""
    problems = []
    holders: dict[str, set[str]] = defaultdict(set)
    for obj in kube.list("hds"):
        for sandbox in {recorded(obj).get("sandbox"), running(obj)} - {None}:
            holders[str(sandbox)].add(obj["metadata"]["name"])
    problems += [f"{sb} recorded by {sorted(w)}" for sb, w in holders.items() if len(w) > 1]
    recorded_claims = claims(kube.get("hdp", pool_name))
    for field in ("sandbox", "uid"):
        twice = [v for v, n in Counter(c[field] for c in recorded_claims).items() if n > 1]
        problems += [f"the pool claims {field} {v} twice" for v in twice]
    return problems


def never_shared(kube: Kube, check: Callable[[], Any]) -> Callable[[], Any]:
    """`check`, failing at once when exclusive_now() finds something."""

    def both() -> Any:
        broken = exclusive_now(kube)
        assert not broken, broken
        return check()

    return both


def settle(
    check: Callable[[], list[str]], what: str, timeout: float, log: Callable[[], str]
) -> float:
    """Wait until `check()` finds no problem; fail with the last ones. Seconds it took."""
    started = time.monotonic()
    while True:
        problems = check()
        if not problems:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            listed = "\n  ".join(problems[:40])
            pytest.fail(f"not reached in {timeout:.0f}s: {what}\n  {listed}\n{log()}")
        time.sleep(0.5)


def session_events(plane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = plane.kubectl_json("get", "events", "-n", namespace)["items"]
    return items


FOLDED = re.compile(r"^(\d+) more HelmdeckSessions: (\w+) ")


#: The operator's recorder writes an Event in the background, milliseconds after the status
#: that caused it: a SIGKILL this soon after can drop it from the queue.
EVENT_LOSS_S = 3.0


def epoch(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def audit_events(plane: ControlPlane, kube: Kube, kills: list[float]) -> dict[str, Any]:
    """The Events of the live sessions, against what may be asked of them:

    - no session has two Events of a reason that comes once (Ready, PoolClaimed,
      PoolFallback), nor one with a count above 1;
    - a session without a Ready Event of its own either became Ready just before a SIGKILL
      (at `kills`, epoch seconds), which dropped the Event from the recorder's queue (it
      is posted once, on the transition: a restart does not post it again), or was folded
      by the recorder into a storm summary: more than STORM_BURST Ready Events in one
      window (the summary on the Namespace is written when the window ends, if the
      operator lives that long).
    """
    sessions = {s["metadata"]["uid"]: s for s in kube.list("hds")}
    per: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    folded = 0
    ready_events: list[float] = []  # of every session, deleted ones too
    for event in session_events(plane, kube.namespace):
        involved = event["involvedObject"]
        if involved.get("kind") == "HelmdeckSession":
            per[(involved.get("uid", ""), event["reason"])].append(event)
            if event["reason"] == "Ready":
                ready_events.append(epoch(event["firstTimestamp"]))
        elif (
            involved.get("kind") == "Namespace"
            and (m := FOLDED.match(event["message"]))
            and m.group(2) == "Ready"
        ):
            folded += int(m.group(1))
    duplicates = {}
    for (uid, reason), found in per.items():
        if uid in sessions and reason in ("Ready", "PoolClaimed", "PoolFallback"):
            counts = [int(e.get("count") or 1) for e in found]
            if len(found) > 1 or any(c != 1 for c in counts):
                name = sessions[uid]["metadata"]["name"]
                duplicates[f"{name} {reason}"] = counts
    lost, in_storm, unexplained = [], [], {}
    for uid, obj in sessions.items():
        if per.get((uid, "Ready")):
            continue
        name, at = obj["metadata"]["name"], epoch(obj["status"]["readyAt"])
        # readyAt has second resolution: the transition was within [at, at + 1).
        if any(at <= kill <= at + 1 + EVENT_LOSS_S for kill in kills):
            lost.append(name)
        elif sum(at - STORM_WINDOW_S - 1 <= t <= at + 1 for t in ready_events) >= STORM_BURST:
            in_storm.append(name)
        else:
            later = [f"{kill - at:.1f}s" for kill in kills if kill >= at][:1]
            near = sum(at - STORM_WINDOW_S - 1 <= t <= at + 1 for t in ready_events)
            unexplained[name] = (
                f"Ready at {obj['status']['readyAt']}, the next SIGKILL {later} later, "
                f"{near} Ready Events in the {STORM_WINDOW_S:.0f}s before"
            )
    return {
        "sessions": len(sessions),
        "duplicates": duplicates,
        "own_ready": len(sessions) - len(lost) - len(in_storm) - len(unexplained),
        "lost_to_a_kill": sorted(lost),
        "in_a_storm": sorted(in_storm),
        "unexplained": unexplained,
        "folded": folded,
    }


def check_events(plane: ControlPlane, kube: Kube, kills: list[float]) -> dict[str, Any]:
    found = audit_events(plane, kube, kills)
    print(
        f"Ready Events: {found['own_ready']} of {found['sessions']} live sessions have their "
        f"own, count 1; none for {len(found['lost_to_a_kill'])} that became Ready less than "
        f"{EVENT_LOSS_S:.0f}s before a SIGKILL, nor for {len(found['in_a_storm'])} in a storm "
        f"of Ready Events (summaries on the Namespace count {found['folded']} folded); "
        f"{len(found['unexplained'])} others have none"
    )
    assert not found["duplicates"], f"Events posted more than once: {found['duplicates']}"
    assert not found["unexplained"], (
        "sessions without a Ready Event, neither Ready just before a SIGKILL nor in a storm: "
        f"{found['unexplained']}"
    )
    return found


def outcomes(kube: Kube) -> Counter[str]:
    """claimed / cold by reason, over the sessions that exist now."""
    counted: Counter[str] = Counter()
    for obj in kube.list("hds"):
        pooled = recorded(obj)
        counted["claimed" if pooled.get("sandbox") else f"cold:{pooled.get('fallback')}"] += 1
    return counted


def crash_point_of(process: OperatorProcess) -> str | None:
    """The crash point the process's last run died at, from its log."""
    text = process.log_path.read_text(errors="replace")
    last = text.rsplit("==== start #", 1)[-1]
    found = re.search(r"crashpoint (\S+) reached: SIGKILL", last)
    return found.group(1) if found else None


def clean_up(kube: Kube, gateway: EmulatorProcess, log: Callable[[], str]) -> None:
    """Delete the sessions and pools with the operator running; nothing may be left of the
    namespace on the gateway (and nothing for the next test's operator to finalize)."""
    kube.run("delete", "hds", "--all", "--wait=true", "--timeout=120s")
    kube.run("delete", "hdp", "--all", "--wait=true", "--timeout=60s")
    settle(
        lambda: [f"{s['name']} {s['phase']}" for s in ours(gateway, kube.namespace)],
        "no sandbox of the namespace left on the gateway",
        30,
        log,
    )


# -- twenty SIGKILLs during a claim storm ----------------------------------------------------

ROUNDS = 20
POINTS = [crashpoints.AFTER_CLAIM, crashpoints.AFTER_CREATE, crashpoints.AFTER_DELETE]
#: A round whose crash point is not reached ends after this long with a plain SIGKILL.
ROUND_TIMEOUT_S = 8.0
REPLICAS = 6


@pytest.fixture
def process(
    cluster: ControlPlane, operator_config: Path, tmp_path: Path, namespace: str
) -> Iterator[OperatorProcess]:
    """An operator of this test's own (watching only the test's namespace), to kill and
    restart; started by the test."""
    proc = OperatorProcess(
        operator_config,
        cluster.kubeconfig,
        tmp_path / "operator.log",
        args=["--namespace", namespace],
    )
    yield proc
    proc.stop()


def test_claims_stay_exclusive_through_twenty_sigkills_during_a_claim_storm(
    cluster: ControlPlane,
    namespace: str,
    kube: Kube,
    gateway: EmulatorProcess,
    process: OperatorProcess,
) -> None:
    started = time.monotonic()
    kube.apply(
        policy("live", **live_spec()),
        policy("other-user", **other_user_spec()),
        pool(POOL, "python", replicas=REPLICAS, maxProvisioning=REPLICAS),
    )
    counter = itertools.count()
    live: list[str] = []
    deleted: set[str] = set()
    crashed = Counter[str]()
    timed_out = 0
    kills: list[float] = []  # when each operator died (epoch seconds)
    for round_ in range(ROUNDS):
        point = POINTS[round_ % len(POINTS)]
        count = 1 + (round_ // len(POINTS)) % 2
        # Sessions claiming (one with its own policy, pushed live after the claim), and in
        # the after-create rounds sessions whose policy sends them to a cold create.
        fresh = [
            session(f"s{next(counter):03d}", "python", poolRef=REF),
            session(f"s{next(counter):03d}", "python", poolRef=REF, policyRef={"name": "live"}),
        ]
        if point == crashpoints.AFTER_CREATE:
            fresh += [
                session(f"s{next(counter):03d}", "python", poolRef=REF,
                        policyRef={"name": "other-user"})
                for _ in range(2)
            ]  # fmt: skip
        else:
            fresh.append(session(f"s{next(counter):03d}", "python", poolRef=REF))
        kube.apply(*fresh[:2])
        if len(live) > 8:
            victims, live = live[:2], live[2:]
            kube.run("delete", "hds", *victims, "--wait=false")
            deleted.update(victims)
        live.extend(s["metadata"]["name"] for s in fresh)

        process.start(env={"HELMDECK_CRASHPOINTS": f"{point}={count}"})
        # The rest arrives while the operator starts or runs: claims in more than one pass.
        code = process.wait_exit(1.0)
        kube.apply(*fresh[2:])
        if code is None:
            code = process.wait_exit(ROUND_TIMEOUT_S - 1.0)
        if code is None:
            process.kill()
            timed_out += 1
        kills.append(time.time())
        if code is not None:
            assert code == -9, process.log_tail()
            fired = crash_point_of(process)
            assert fired == point, f"died at {fired}, armed {point}\n{process.log_tail()}"
            crashed[point] += 1
        broken = exclusive_now(kube)
        assert not broken, f"after round {round_}: {broken}"

    storm_s = time.monotonic() - started
    print(
        f"\n{ROUNDS} rounds in {storm_s:.0f}s: SIGKILLed at crash points {dict(crashed)}, "
        f"{timed_out} rounds killed after {ROUND_TIMEOUT_S:.0f}s; "
        f"{len(live)} live sessions, {len(deleted)} deleted"
    )
    assert sum(crashed.values()) >= ROUNDS // 2, f"crash points rarely reached: {crashed}"
    assert crashed[crashpoints.AFTER_CLAIM] >= 1, f"after-claim never fired: {crashed}"

    process.start()
    try:
        took = settle(
            never_shared(kube, lambda: audit(kube, gateway, set(live), REPLICAS)),
            "every live session Ready on a sandbox of its own, the pool full",
            120,
            process.log_tail,
        )
        print(f"converged {took:.1f}s after the clean start")
        counted = outcomes(kube)
        print(f"sessions: {dict(counted)}")
        check_events(cluster, kube, kills)
        assert counted["claimed"] > len(live) // 2, f"most sessions should be claimed: {counted}"
        clean_up(kube, gateway, process.log_tail)
    finally:
        process.stop()
    print(f"test took {time.monotonic() - started:.0f}s")


# -- a leader handover in the middle of a claim storm ----------------------------------------

STORM = 30
STORM_REPLICAS = 32


def test_claims_stay_exclusive_across_a_leader_handover(
    cluster: ControlPlane,
    namespace: str,
    kube: Kube,
    eventually: Any,
    gateway: EmulatorProcess,
    operator_config: Path,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    replicas: dict[str, tuple[int, OperatorProcess]] = {}
    for name in ("replica-a", "replica-b"):
        port = free_port()
        replicas[name] = (
            port,
            OperatorProcess(
                operator_config,
                cluster.kubeconfig,
                tmp_path / f"{name}.log",
                env={"POD_NAME": name, "POD_NAMESPACE": namespace},
                args=["--leader-election", "--health-port", str(port), "--namespace", namespace],
            ),
        )
    leader, (port_b, standby) = replicas["replica-a"][1], replicas["replica-b"]

    def logs() -> str:
        return f"replica-a:\n{leader.log_tail(40)}\nreplica-b:\n{standby.log_tail(40)}"

    try:
        leader.start()
        eventually(lambda: holder(cluster, namespace) == "replica-a", "replica-a holds the lease")
        standby.start()
        eventually(lambda: probe(port_b, "/readyz")[0] == 200, "replica-b ready as standby")
        kube.apply(
            policy("live", **live_spec()),
            pool(POOL, "python", replicas=STORM_REPLICAS, maxProvisioning=STORM_REPLICAS),
        )
        eventually(
            kube.when(
                "hdp",
                POOL,
                lambda p: (p.get("status") or {}).get("readyReplicas") == STORM_REPLICAS,
            ),
            f"{STORM_REPLICAS} idle sandboxes ready",
        )
        # Pushes take a while, so the storm is still going when the leader dies.
        gateway.set_faults({"latency": {"UpdateConfig": 1.5}})
        kube.apply(
            *(
                session(f"c{i:02d}", "python", poolRef=REF,
                        **({"policyRef": {"name": "live"}} if i % 2 else {}))
                for i in range(STORM)
            )
        )  # fmt: skip

        def some_ready() -> list[dict[str, Any]] | None:
            items = kube.list("hds")
            return items if any(phase(s) == "Ready" for s in items) else None

        seen = eventually(some_ready, "some of the storm Ready", timeout=60)
        leader.kill()
        kills = [time.time()]
        ready_at_kill = sum(phase(s) == "Ready" for s in seen)
        told_at_kill = sum(bool(recorded(s).get("sandbox")) for s in kube.list("hds"))
        claimed_at_kill = len(claims(kube.get("hdp", POOL)))
        print(
            f"\nSIGKILLed the leader with {ready_at_kill} of {STORM} Ready; then "
            f"{claimed_at_kill} claims recorded by the pool, {told_at_kill} recorded by their "
            "sessions"
        )
        assert ready_at_kill < STORM, "the storm was over before the kill"
        # While nobody leads: some sessions are deleted (their finalizers hold them).
        victims = [f"c{i:02d}" for i in range(0, STORM, 10)]
        kube.run("delete", "hds", *victims, "--wait=false")
        killed = time.monotonic()
        eventually(
            never_shared(kube, lambda: holder(cluster, namespace) == "replica-b"),
            "replica-b takes over",
            timeout=60,
        )
        print(f"replica-b took over {time.monotonic() - killed:.1f}s after the kill")
        live = {f"c{i:02d}" for i in range(STORM)} - set(victims)
        took = settle(
            never_shared(kube, lambda: audit(kube, gateway, live, STORM_REPLICAS)),
            "every live session Ready on a sandbox of its own, the pool full",
            90,
            logs,
        )
        print(f"converged {took:.1f}s after the takeover")
        counted = outcomes(kube)
        print(f"sessions: {dict(counted)}")
        assert counted == Counter({"claimed": len(live)}), counted
        check_events(cluster, kube, kills)
        gateway.clear_faults()
        clean_up(kube, gateway, logs)
    finally:
        for _, proc in replicas.values():
            proc.stop()
    print(f"test took {time.monotonic() - started:.0f}s")


# -- with the module's operator ------------------------------------------------------------


@pytest.fixture
def shared(operator: OperatorProcess) -> OperatorProcess:
    return operator


def events_of(kube: Kube, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kube.plane.kubectl_json(
        "get", "events", "-n", kube.namespace, f"--field-selector=involvedObject.name={name}"
    )["items"]
    return items


def pool_settled(kube: Kube, ready: int, claimed: int, name: str = POOL) -> Callable[[], Any]:
    return kube.when(
        "hdp",
        name,
        lambda p: (
            (p.get("status") or {}).get("readyReplicas") == ready
            and (p.get("status") or {}).get("claimed") == claimed
            and (p.get("status") or {}).get("provisioning") == 0
        ),
    )


def table(text: str) -> dict[str, str]:
    """The one row of a `kubectl get` table by column name (columns cut at the header's
    offsets, so an empty cell stays empty)."""
    header, row = text.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    ends = [*starts[1:], None]
    return {n: row[a:b].strip() for n, a, b in zip(names, starts, ends, strict=True)}


def assert_cold(obj: dict[str, Any], reason: str) -> dict[str, Any]:
    """A session created cold on its own sandbox, saying `reason`; its PoolClaimed."""
    uid = obj["metadata"]["uid"]
    assert phase(obj) == "Ready"
    assert running(obj) == sandbox_name(uid)
    assert recorded(obj).get("fallback") == reason
    assert not recorded(obj).get("sandbox")
    claimed = condition(obj, "PoolClaimed")
    assert (claimed["status"], claimed["reason"]) == ("False", reason), claimed
    return claimed


def test_an_empty_pool_sends_sessions_to_a_cold_create_with_the_reason(
    shared: OperatorProcess, kube: Kube, eventually: Any, gateway: EmulatorProcess
) -> None:
    started = time.monotonic()
    kube.apply(pool(POOL, "python", replicas=0))
    eventually(pool_settled(kube, 0, 0), "the empty pool reports")
    kube.apply(session("s1", "python", poolRef=REF))
    ready = eventually(kube.in_phase("s1", "Ready"), "s1 Ready")
    claimed = assert_cold(ready, "PoolEmpty")
    assert POOL in claimed["message"], claimed
    [sandbox] = [s for s in ours(gateway, kube.namespace)]
    assert sandbox["name"] == sandbox_name(ready["metadata"]["uid"])
    assert sandbox["labels"]["helmdeck.dev/session-uid"] == ready["metadata"]["uid"]
    assert sandbox["annotations"].get("helmdeck.dev/pool-fallback") == "PoolEmpty"
    warning = eventually(
        lambda: [e for e in events_of(kube, "s1") if e["reason"] == "PoolFallback"],
        "a PoolFallback Event",
    )
    assert [(e["type"], e.get("count")) for e in warning] == [("Warning", 1)]
    assert "PoolEmpty" in warning[0]["message"]
    assert not claims(kube.get("hdp", POOL))
    print(f"\ntook {time.monotonic() - started:.1f}s")


def test_a_session_of_another_shape_is_created_cold(
    shared: OperatorProcess, kube: Kube, eventually: Any, gateway: EmulatorProcess
) -> None:
    started = time.monotonic()
    kube.apply(pool(POOL, "python", replicas=2, template={"resources": {"cpu": "1"}}))
    eventually(pool_settled(kube, 2, 0), "2 idle sandboxes ready")
    pool_uid = uid_of(kube.get("hdp", POOL))
    idle = sorted((s["name"], s["id"]) for s in members(gateway, pool_uid))

    kube.apply(session("big", "python", poolRef=REF, resources={"cpu": "2"}))
    ready = eventually(kube.in_phase("big", "Ready"), "big Ready")
    claimed = assert_cold(ready, "PoolShapeMismatch")
    assert "resources" in claimed["message"], claimed
    assert sorted((s["name"], s["id"]) for s in members(gateway, pool_uid)) == idle
    assert not claims(kube.get("hdp", POOL))
    eventually(
        lambda: any(e["reason"] == "PoolFallback" for e in events_of(kube, "big")),
        "a PoolFallback Event",
    )

    # The same shape claims (one of the idle ones), and the pool boots a replacement.
    kube.apply(session("fits", "python", poolRef=REF, resources={"cpu": "1"}))
    fits = eventually(kube.in_phase("fits", "Ready"), "fits Ready")
    assert recorded(fits)["sandbox"] in {name for name, _ in idle}
    eventually(pool_settled(kube, 2, 1), "2 idle again, 1 claimed")
    print(f"\ntook {time.monotonic() - started:.1f}s")


def test_a_session_with_other_providers_claims_and_swaps_them_on_the_sandbox(
    shared: OperatorProcess, kube: Kube, eventually: Any, gateway: EmulatorProcess
) -> None:
    """Providers are no part of the shape: the session claims, and its own providers are
    detached and attached on the claimed sandbox before it is Ready."""
    kube.apply(pool(POOL, "python", replicas=1, template={"providers": ["github"]}))
    eventually(pool_settled(kube, 1, 0), "1 idle sandbox ready")
    [idle] = [s["name"] for s in members(gateway, uid_of(kube.get("hdp", POOL)))]

    kube.apply(session("swap", "python", poolRef=REF, providers=["openai"]))
    ready = eventually(kube.in_phase("swap", "Ready"), "swap Ready")

    assert recorded(ready)["sandbox"] == idle  # claimed, not created cold
    assert ready["status"]["sandbox"]["providers"] == ["openai"]
    [record] = [s for s in gateway.snapshot()["sandboxes"] if s["name"] == idle]
    assert record["spec"]["providers"] == ["openai"]
    assert record["boots"] == 1


def test_a_policy_that_is_not_live_from_the_baseline_is_created_cold(
    shared: OperatorProcess, kube: Kube, eventually: Any, gateway: EmulatorProcess
) -> None:
    started = time.monotonic()
    kube.apply(
        policy("other-user", **other_user_spec()),
        policy("fewer-paths", **fewer_paths_spec()),
        pool(POOL, "python", replicas=2),
    )
    eventually(pool_settled(kube, 2, 0), "2 idle sandboxes ready")
    kube.apply(
        session("user", "python", poolRef=REF, policyRef={"name": "other-user"}),
        session("paths", "python", poolRef=REF, policyRef={"name": "fewer-paths"}),
    )
    for name, field in (("user", "process.run_as_user"), ("paths", "filesystem.read_only")):
        ready = eventually(kube.in_phase(name, "Ready"), f"{name} Ready")
        claimed = assert_cold(ready, "PoolPolicyNotLive")
        assert field in claimed["message"], claimed
        assert ready["status"]["policy"]["name"] == ready["spec"]["policyRef"]["name"]
    assert not claims(kube.get("hdp", POOL))
    eventually(pool_settled(kube, 2, 0), "the pool keeps its 2 idle sandboxes")
    print(f"\ntook {time.monotonic() - started:.1f}s")


def test_kubectl_scale_grows_and_shrinks_the_pool_without_touching_claimed_sandboxes(
    shared: OperatorProcess, kube: Kube, eventually: Any, gateway: EmulatorProcess
) -> None:
    started = time.monotonic()
    kube.apply(pool(POOL, "python", replicas=2))
    eventually(pool_settled(kube, 2, 0), "2 idle sandboxes ready")
    pool_uid = uid_of(kube.get("hdp", POOL))
    kube.apply(session("s1", "python", poolRef=REF))
    ready = eventually(kube.in_phase("s1", "Ready"), "s1 Ready")
    mine = recorded(ready)["sandbox"]
    [before] = [s for s in members(gateway, pool_uid) if s["name"] == mine]
    eventually(pool_settled(kube, 2, 1), "2 idle, 1 claimed")

    def idle(count: int) -> Callable[[], list[str]]:
        def check() -> list[str]:
            found = members(gateway, pool_uid)
            problems = []
            free = [s for s in found if s["name"] != mine]
            if len(free) != count or any(s["phase"] != "READY" for s in free):
                problems.append(f"idle: {[(s['name'], s['phase']) for s in free]}")
            held = [s for s in found if s["name"] == mine]
            if [(s["id"], s["phase"]) for s in held] != [(before["id"], "READY")]:
                problems.append(f"the claimed sandbox {mine} is now {held}")
            if phase(kube.get("hds", "s1")) != "Ready":
                problems.append("s1 is not Ready")
            return problems

        return check

    kube.run("scale", f"sessionpool/{POOL}", "--replicas=5")
    took = settle(idle(5), "5 idle READY + the claimed one", 30, shared.log_tail)
    eventually(pool_settled(kube, 5, 1), "the pool says 5 ready, 1 claimed")
    print(f"\nscaled to 5 in {took:.1f}s")
    scale = kube.plane.kubectl_json("get", "sessionpool", POOL, "-n", kube.namespace,
                                    "--subresource=scale")  # fmt: skip
    assert scale["spec"]["replicas"] == 5
    assert scale["status"]["replicas"] == 5
    assert scale["status"]["selector"] == f"helmdeck.dev/pool-uid={pool_uid}"

    kube.run("scale", f"sessionpool/{POOL}", "--replicas=0")
    took = settle(idle(0), "no idle sandbox, the claimed one untouched", 30, shared.log_tail)
    eventually(pool_settled(kube, 0, 1), "the pool says 0 ready, 1 claimed")
    print(f"scaled to 0 in {took:.1f}s")
    assert recorded(kube.get("hds", "s1"))["sandbox"] == mine

    plain = table(kube.run("get", "hdp", POOL))
    assert list(plain) == ["NAME", "FAMILY", "DESIRED", "READY", "CLAIMED", "AGE"]
    assert plain | {"AGE": ""} == {
        "NAME": POOL, "FAMILY": "python", "DESIRED": "0", "READY": "0", "CLAIMED": "1", "AGE": "",
    }  # fmt: skip
    wide = table(kube.run("get", "hdp", POOL, "-o", "wide"))
    assert (wide["GATEWAY"], wide["PROVISIONING"]) == ("", "0"), wide
    print(f"kubectl get hdp:\n{kube.run('get', 'hdp', POOL, '-o', 'wide')}")
    print(f"took {time.monotonic() - started:.1f}s")


def test_a_deleted_pool_leaves_its_claimed_sessions_running(
    shared: OperatorProcess, kube: Kube, eventually: Any, gateway: EmulatorProcess
) -> None:
    started = time.monotonic()
    kube.apply(policy("live", **live_spec()), pool(POOL, "python", replicas=3))
    eventually(pool_settled(kube, 3, 0), "3 idle sandboxes ready")
    pool_uid = uid_of(kube.get("hdp", POOL))
    kube.apply(
        session("a", "python", poolRef=REF),
        session("b", "python", poolRef=REF, policyRef={"name": "live"}),
    )
    held = {}
    for name in ("a", "b"):
        ready = eventually(kube.in_phase(name, "Ready"), f"{name} Ready")
        held[name] = recorded(ready)["sandbox"]
    eventually(pool_settled(kube, 3, 2), "3 idle, 2 claimed")
    ids = {s["name"]: s["id"] for s in members(gateway, pool_uid) if s["name"] in held.values()}
    assert sorted(ids) == sorted(held.values())

    deleting = time.monotonic()
    kube.run("delete", "hdp", POOL, "--wait=true", "--timeout=60s")
    print(f"\npool deleted in {time.monotonic() - deleting:.1f}s")
    assert kube.get("hdp", POOL) is None

    def only_claimed() -> list[str]:
        left = {s["name"]: (s["id"], s["phase"]) for s in ours(gateway, kube.namespace)}
        want = {name: (id_, "READY") for name, id_ in ids.items()}
        problems = [] if left == want else [f"on the gateway: {left}, want {want}"]
        for name, sandbox in held.items():
            obj = kube.get("hds", name)
            if phase(obj) != "Ready" or running(obj) != sandbox:
                problems.append(f"{name}: {phase(obj)} on {running(obj)}")
        return problems

    settle(only_claimed, "the idle sandboxes gone, the claimed ones running", 30, shared.log_tail)
    time.sleep(3)  # longer than the orphan sweep's period and grace: it must leave them
    assert only_claimed() == []

    # Deleting the sessions deletes their sandboxes, then releases them. (With the pool
    # gone, the gateway's removal of a claimed sandbox has nobody to wake: the operator
    # maps a pool sandbox to its session through the pool's status.claims only.)
    deleting = time.monotonic()
    kube.run("delete", "hds", "a", "b", "--wait=false")

    def released() -> list[str]:
        problems = [f"{s['name']} {s['phase']}" for s in ours(gateway, kube.namespace)]
        for obj in kube.list("hds"):
            ready = condition(obj, "Ready")
            problems.append(
                f"session {obj['metadata']['name']} is {phase(obj)}: "
                f"{ready.get('message')} (since {ready.get('lastTransitionTime')})"
            )
        return problems

    settle(released, "the sessions and their sandboxes gone", 30, shared.log_tail)
    print(f"sessions released in {time.monotonic() - deleting:.1f}s")
    print(f"took {time.monotonic() - started:.1f}s")
