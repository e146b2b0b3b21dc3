"""How the operator scales, each figure beside the apiserver floor measured in the same run.

Not a test: it prints figures and asserts nothing about timings. Everything runs on this
machine: one fresh local control plane (real etcd + kube-apiserver + controller manager) for
the whole run, and per N a fresh OpenShell emulator subprocess with every delay at 0 (so the
operator, not the emulator, is measured) and a fresh operator subprocess with the shipped
default intervals. On a shared, noisy machine absolute times drift from run to run; the
ratios to the floor hold, which is why every operator figure is printed beside it.

    make bench
    .venv/bin/python benchmarks/operator_scale.py --sessions 1000 --sessions 5000 \\
        --outage 60 --json bench.json
    .venv/bin/python benchmarks/operator_scale.py --sessions 30 --one-at-a-time 3 \\
        --idle-seconds 5 --outage 10 --py-spy        # a quick look

For each N (its own namespace), in order:

1. Floor (no operator running): create N HelmdeckSessions, then merge-patch each one's
   /status with a realistic Ready status; floor = creates + status writes, the least any
   operator could need (it must at least write one status per session). Then delete them
   and wait until they are gone.
2. Burst: start the operator, wait for its /readyz and for one warm-up session to become
   Ready (then delete it), open ONE watch on the namespace, create N sessions bound to
   SidecarPolicy `p` with the same client and concurrency as the floor. Ready = status.phase
   Ready and status.policy.state Loaded, timed by the arrival of watch events. Prints
   all-Ready time (first create -> last Ready) and its ratio to the floor, apply->Ready
   p50/p99, and CPU per session of the operator and of apiserver+etcd, beside the floor's.
3. Idle: settle 10 s, then the operator's CPU over --idle-seconds (% of one core), the
   status writes it made meanwhile, and its RSS now and at peak.
4. Policy propagation: add a network rule to `p` (hot-reloadable); time until every session
   reports the new revision Loaded, beside the status-write floor and the goal
   max(3 s, 1.5 x status-write floor).
5. One at a time: with the N sessions present, M more, each created only once the previous
   one is Ready: apply->Ready p50/p99.
6. Outage (--outage S, at the smallest N only): churn (a create and a delete every
   1/--churn-rate s), a gateway outage of S s injected in the emulator, churn stopped at
   recovery; time from recovery until every live session is Ready again (phase Ready, policy
   Loaded, condition Ready True) and every deleted one is gone, sandbox included.
7. Teardown: delete every session (the operator removes its finalizers), wait until gone,
   delete policy `p`, stop the operator, delete the namespace and wait for it.

--py-spy profiles the operator during the burst (py-spy is pip-installed into the venv if
missing). --json PATH writes every figure. Logs and profiles stay in the printed work dir
(operator-N.log is the operator's output).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from helmdeck_dev.controlplane import ControlPlane, find_binaries, free_port
from helmdeck_dev.emulator_process import EmulatorProcess
from helmdeck_dev.objects import policy, session
from helmdeck_dev.operator_process import REPO_ROOT, OperatorProcess, write_config
from helmdeck_operator.policy import revision, translate
from kubeapi import Kube, SessionWatch
from procstats import Profile, PySpy, cpu_seconds, memory_mib, pyspy_binary

Obj = dict[str, Any]

EMULATOR_ARGS = [
    "--ready-delay", "0", "--load-delay", "0", "--delete-delay", "0",
    "--stop-delay", "0", "--start-delay", "0",
    "--workspace", "default", "--workspace", "microvm",
]  # fmt: skip
SETTLE_S = 10.0
OPERATOR_READY_TIMEOUT_S = 120.0
WARMUP_TIMEOUT_S = 120.0
ONE_TIMEOUT_S = 120.0
OUTAGE_LEAD_S = 5.0
OUTAGE_CONVERGE_TIMEOUT_S = 600.0
OUTAGE_GOAL_S = 10.0
PROPAGATION_GOAL_MIN_S = 3.0
PROPAGATION_GOAL_FACTOR = 1.5
NAMESPACE_GONE_TIMEOUT_S = 120.0
LONG_REQUEST_S = 900.0
MIB = "MiB"
#: Request kinds rarer than this per session are left out of the printed line (not the JSON).
REQUESTS_SHOWN = 0.005
#: py-spy frames found in at least this share of samples are the process's roots.
ROOT_FRAME_SHARE = 0.98


def burst_timeout(n: int) -> float:
    """Generous: the pre-rewrite operator manages about 27 sessions/s."""
    return 300.0 + 0.5 * n


def teardown_timeout(n: int) -> float:
    return 300.0 + 0.3 * n


class BenchError(RuntimeError):
    """A phase could not complete; the message says which and why."""


# -- objects ----------------------------------------------------------------------------------


def policy_spec(rules: int) -> Obj:
    return {
        "network": [
            {
                "name": f"r{i}",
                "endpoints": [
                    {
                        "host": f"api{i}.example.com",
                        "port": 443,
                        "protocol": "rest",
                        "access": "read-only",
                    }
                ],
            }
            for i in range(rules)
        ]
    }


def policy_revision(spec: Obj) -> str:
    return revision.revision(translate.to_sandbox_policy(spec))


def session_body(name: str, family: str) -> Obj:
    """A session of `family`: python exposes no ports, browser its two (cdp, mcp), so a
    browser run measures the endpoints too."""
    return session(name, family, policyRef={"name": "p"})


def ready_status(name: str, rev: str, now: str) -> Obj:
    """What the operator writes for a Ready session (render_status), for the floor."""
    digest = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode().lower()
    sandbox = "hd-" + digest[:16]
    message = f"sandbox {sandbox} is ready"
    conditions = [
        ("Ready", "SandboxReady", message),
        ("Provisioned", "SandboxCreated", message),
        ("PolicyApplied", "PolicyLoaded", f"{rev} loaded"),
    ]
    return {
        "status": {
            "phase": "Ready",
            "observedGeneration": 1,
            "conditions": [
                {
                    "type": type_,
                    "status": "True",
                    "observedGeneration": 1,
                    "lastTransitionTime": now,
                    "reason": reason,
                    "message": text,
                }
                for type_, reason, text in conditions
            ],
            "policy": {
                "name": "p",
                "revision": rev,
                "desiredRevision": rev,
                "gatewayVersion": 1,
                "state": "Loaded",
            },
            "sandbox": {
                "name": sandbox,
                "id": str(uuid.uuid4()),
                "gateway": "pods",
                "workspace": "default",
                "phase": "READY",
            },
        }
    }


def status_of(obj: Obj) -> Obj:
    status: Obj = obj.get("status") or {}
    return status


def is_ready(obj: Obj) -> bool:
    status = status_of(obj)
    return status.get("phase") == "Ready" and (status.get("policy") or {}).get("state") == "Loaded"


def is_fully_ready(obj: Obj) -> bool:
    """Ready, and the Ready condition True: during an outage the phase is kept but the
    condition goes Unknown, so the phase alone does not say the session recovered."""
    if not is_ready(obj):
        return False
    for cond in status_of(obj).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return True


def has_revision(rev: str) -> Callable[[Obj], bool]:
    def check(obj: Obj) -> bool:
        pol = status_of(obj).get("policy") or {}
        return bool(pol.get("revision") == rev and pol.get("state") == "Loaded")

    return check


# -- figures ------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ratio(value: float, base: float) -> float:
    return value / base if base > 0 else float("nan")


def requests_per_session(
    before: collections.Counter[str], after: collections.Counter[str], n: int
) -> dict[str, float]:
    """Apiserver requests of each kind made between two counts, per session, most first."""
    return {what: count / max(1, n) for what, count in (after - before).most_common()}


def fmt_requests(per_session: dict[str, float]) -> str:
    shown = [f"{what} {v:.2f}" for what, v in per_session.items() if v >= REQUESTS_SHOWN]
    return ", ".join(shown) or "none"


def py_spy_wanted(wanted: bool) -> Path | None:
    """The py-spy binary when --py-spy asks for it (installed into the venv if missing);
    None when not asked, or when it cannot be had (said, and the run goes on without)."""
    if not wanted:
        return None
    binary, why = pyspy_binary(install=True)
    if binary is None:
        say(f"--py-spy: {why}; going on without profiling")
    return binary


def say(text: str) -> None:
    print(text, flush=True)


@dataclasses.dataclass
class Run:
    """What one N's phases share."""

    plane: ControlPlane
    kube: Kube
    args: argparse.Namespace
    workdir: Path
    n: int
    namespace: str
    outage: float
    result: Obj = dataclasses.field(default_factory=dict)
    operator: OperatorProcess | None = None
    gateway: EmulatorProcess | None = None
    watch: SessionWatch | None = None
    live: set[str] = dataclasses.field(default_factory=set)
    metrics_port: int = 0
    """The operator's /metrics port."""

    @property
    def apiserver_pids(self) -> list[int]:
        return [
            p.pid for p in self.plane.processes if p.name in ("kube-apiserver", "etcd") and p.pid
        ]

    @property
    def emulator_pid(self) -> int:
        """The gateway emulator's pid (its CPU shows when the stand-in, not the operator,
        limits a phase); 0 when it is not running."""
        proc = self.gateway.proc if self.gateway is not None else None
        return proc.pid if proc is not None else 0

    @property
    def operator_pid(self) -> int:
        assert self.operator is not None
        assert self.operator.proc is not None
        return self.operator.proc.pid

    def check_operator(self) -> None:
        if self.operator is not None and not self.operator.running:
            raise BenchError(f"the operator exited:\n{self.operator.log_tail(30)}")

    async def wait(self, event: asyncio.Event, timeout_s: float) -> bool:
        """Wait for `event`, failing fast if the operator dies; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while not event.is_set():
            self.check_operator()
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(1.0, left))
        return True

    async def create_sessions(self, names: list[str], sent: dict[str, float]) -> None:
        path = Kube.sessions(self.namespace)

        async def create(name: str) -> None:
            sent[name] = time.monotonic()
            await self.kube.request("POST", path, session_body(name, self.args.family))

        await Kube.bulk(names, create, self.args.concurrency)


# -- phases ---------------------------------------------------------------------------------------


async def floor_pass(run: Run, names: list[str]) -> Obj:
    """Create `names`, write a Ready status on each, delete them all and wait until gone."""
    kube, path = run.kube, Kube.sessions(run.namespace)
    rev = policy_revision(policy_spec(1))
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    cpu0 = cpu_seconds(*run.apiserver_pids)
    start = time.monotonic()
    await run.create_sessions(names, {})
    created = time.monotonic()

    async def write(name: str) -> None:
        await kube.request(
            "PATCH",
            Kube.sessions(run.namespace, name, "status"),
            ready_status(name, rev, now),
            content_type="application/merge-patch+json",
        )

    await Kube.bulk(names, write, run.args.concurrency)
    written = time.monotonic()
    api_cpu = cpu_seconds(*run.apiserver_pids) - cpu0
    await kube.request("DELETE", path, timeout_s=LONG_REQUEST_S)
    gone = await kube.wait_empty(path, teardown_timeout(len(names)))
    if not gone:
        raise BenchError("floor: the sessions were not deleted in time")
    return {
        "creates_s": created - start,
        "status_writes_s": written - created,
        "total_s": written - start,
        "delete_s": time.monotonic() - written,
        "apiserver_cpu_ms_per_session": 1000 * api_cpu / len(names),
    }


async def floor(run: Run, names: list[str]) -> None:
    # A first pass, not measured: opens the client's connections and has the apiserver set
    # up its handler and storage for the resource (the very first creates are slow).
    await floor_pass(run, [f"w{i:03d}" for i in range(4 * run.args.concurrency)])
    f = run.result["floor"] = await floor_pass(run, names)
    say(
        f"apiserver floor (no operator): {run.n} creates {f['creates_s']:.2f} s"
        f" + {run.n} status writes {f['status_writes_s']:.2f} s = {f['total_s']:.2f} s"
        f" ({run.n / f['total_s']:.0f} sessions/s; apiserver+etcd CPU"
        f" {f['apiserver_cpu_ms_per_session']:.1f} ms/session);"
        f" deleted and gone in {f['delete_s']:.1f} s"
    )


async def start_operator(run: Run) -> None:
    assert run.gateway is not None
    config = write_config(run.workdir / f"config-{run.n}.yaml", run.gateway.address)
    # The test configuration's short intervals, windows and retry tuning would make the
    # operator poll far more than a real deployment does: drop them, the shipped defaults
    # apply (the gateways keep only where they are and how to reach them).
    data = yaml.safe_load(config.read_text())
    for section in ("intervals", "observability", "concurrency"):
        data.pop(section, None)
    for gw in data.get("gateways", []):
        for key in ("deadline_seconds", "retry"):
            gw.pop(key, None)
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    port, run.metrics_port = free_port(), free_port()
    run.operator = OperatorProcess(
        config,
        run.plane.kubeconfig,
        run.workdir / f"operator-{run.n}.log",
        args=["--health-port", str(port), "--metrics-port", str(run.metrics_port)],
    )
    started = time.monotonic()
    run.operator.start()
    url = f"http://127.0.0.1:{port}/readyz"
    while not await asyncio.to_thread(_http_ok, url):
        run.check_operator()
        if time.monotonic() - started > OPERATOR_READY_TIMEOUT_S:
            raise BenchError(f"operator not ready after {OPERATOR_READY_TIMEOUT_S:.0f} s")
        await asyncio.sleep(0.2)
    ready = time.monotonic()
    await run.kube.request("POST", Kube.policies(run.namespace), policy("p", **policy_spec(1)))
    # One session end to end, so lazy imports, gateway channels and caches are warm.
    path = Kube.sessions(run.namespace, "warmup")
    await run.kube.request(
        "POST", Kube.sessions(run.namespace), session_body("warmup", run.args.family)
    )
    warm = time.monotonic()
    while not is_ready(await run.kube.request("GET", path, missing_ok=True)):
        run.check_operator()
        if time.monotonic() - warm > WARMUP_TIMEOUT_S:
            raise BenchError(f"warm-up session not Ready after {WARMUP_TIMEOUT_S:.0f} s")
        await asyncio.sleep(0.1)
    warm_ready = time.monotonic()
    await run.kube.request("DELETE", path)
    if not await run.kube.wait_gone(path, WARMUP_TIMEOUT_S, poll=0.1):
        raise BenchError("warm-up session not gone in time")
    run.result["startup"] = {
        "readyz_s": ready - started,
        "warmup_ready_s": warm_ready - warm,
        "warmup_gone_s": time.monotonic() - warm_ready,
    }
    s = run.result["startup"]
    say(
        f"operator: /readyz after {s['readyz_s']:.1f} s; warm-up session Ready in"
        f" {s['warmup_ready_s']:.2f} s, deleted in {s['warmup_gone_s']:.2f} s"
    )


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


async def burst(run: Run, names: list[str], spy: Path | None) -> bool:
    assert run.watch is not None
    floor_ = run.result["floor"]
    tracker = run.watch.track(is_ready, names)
    profiler = None
    if spy is not None:
        profiler = PySpy(spy, run.operator_pid, run.workdir / f"py-spy-burst-{run.n}.txt")
        if not await asyncio.to_thread(profiler.start):
            say(f"py-spy could not attach (ptrace?), going on without it: {profiler.failure}")
            profiler = None
    sent: dict[str, float] = {}
    events0 = run.watch.events
    requests0 = await run.kube.request_counts()
    op0, api0, me0, emu0 = (
        cpu_seconds(run.operator_pid),
        cpu_seconds(*run.apiserver_pids),
        cpu_seconds(os.getpid()),
        cpu_seconds(run.emulator_pid),
    )
    start = time.monotonic()
    await run.create_sessions(names, sent)
    created = time.monotonic()
    run.live.update(names)
    done = await run.wait(tracker.all_first, burst_timeout(run.n))
    end = time.monotonic()
    op_cpu = cpu_seconds(run.operator_pid) - op0
    api_cpu = cpu_seconds(*run.apiserver_pids) - api0
    me_cpu = cpu_seconds(os.getpid()) - me0
    emu_cpu = cpu_seconds(run.emulator_pid) - emu0
    requests = requests_per_session(requests0, await run.kube.request_counts(), run.n)
    run.watch.untrack(tracker)
    profile = await asyncio.to_thread(profiler.stop) if profiler else None
    latencies = [tracker.first[name] - sent[name] for name in tracker.first]
    all_ready = (max(tracker.first.values()) if done else end) - start
    b = run.result["burst"] = {
        "complete": done,
        "ready": len(tracker.first),
        "all_ready_s": all_ready,
        "all_ready_x_floor": ratio(all_ready, floor_["total_s"]),
        "sessions_per_s": len(tracker.first) / all_ready,
        "ready_p50_s": percentile(latencies, 0.5),
        "ready_p99_s": percentile(latencies, 0.99),
        "creates_s": created - start,
        "creates_x_floor": ratio(created - start, floor_["creates_s"]),
        "operator_cpu_ms_per_session": 1000 * op_cpu / run.n,
        "apiserver_cpu_ms_per_session": 1000 * api_cpu / run.n,
        "client_cpu_ms_per_session": 1000 * me_cpu / run.n,
        "emulator_cpu_ms_per_session": 1000 * emu_cpu / run.n,
        "watch_events_per_session": (run.watch.events - events0) / run.n,
        "apiserver_requests_per_session": requests,
    }
    state = "all Ready" if done else f"TIMED OUT with {len(tracker.first)}/{run.n} Ready"
    say(
        f"burst: {state} in {all_ready:.2f} s = {b['all_ready_x_floor']:.2f} x floor"
        f" {floor_['total_s']:.2f} s ({b['sessions_per_s']:.1f} sessions/s);"
        f" apply->Ready p50 {b['ready_p50_s']:.2f} s, p99 {b['ready_p99_s']:.2f} s"
    )
    say(
        f"  creates took {b['creates_s']:.2f} s = {b['creates_x_floor']:.2f} x floor creates"
        f" {floor_['creates_s']:.2f} s; {b['watch_events_per_session']:.1f} watch events"
        f" (session writes) per session"
    )
    say(
        f"  operator CPU {b['operator_cpu_ms_per_session']:.1f} ms/session beside the floor's"
        f" {1000 * floor_['total_s'] / run.n:.1f} ms/session of wall time; apiserver+etcd CPU"
        f" {b['apiserver_cpu_ms_per_session']:.1f} ms/session (floor"
        f" {floor_['apiserver_cpu_ms_per_session']:.1f}); gateway emulator"
        f" {b['emulator_cpu_ms_per_session']:.1f} ms/session; benchmark client CPU"
        f" {b['client_cpu_ms_per_session']:.1f} ms/session"
    )
    say(
        "  apiserver requests per session (the benchmark's creates included):"
        f" {fmt_requests(requests)}"
    )
    if profile is not None:
        report_profile(run, profile)
    elif spy is not None and profiler is not None:
        say(f"py-spy recorded nothing: {profiler.failure}")
    return done


async def start_profile(run: Run, spy: Path | None, phase: str) -> PySpy | None:
    """py-spy on the operator for one phase, or None (not asked for, or cannot attach)."""
    if spy is None:
        return None
    profiler = PySpy(spy, run.operator_pid, run.workdir / f"py-spy-{phase}-{run.n}.txt")
    if not await asyncio.to_thread(profiler.start):
        say(f"py-spy could not attach (ptrace?), going on without it: {profiler.failure}")
        return None
    return profiler


async def stop_profile(run: Run, profiler: PySpy | None, phase: str) -> None:
    if profiler is None:
        return
    profile = await asyncio.to_thread(profiler.stop)
    if profile is None:
        say(f"py-spy recorded nothing: {profiler.failure}")
        return
    report_profile(run, profile, phase)


def report_profile(run: Run, profile: Profile, phase: str = "burst") -> None:
    run.result[f"py_spy_{phase}" if phase != "burst" else "py_spy"] = {
        "samples": profile.samples,
        "own": profile.own.most_common(15),
        "inclusive": profile.inclusive.most_common(30),
        "raw": str(run.workdir / f"py-spy-{phase}-{run.n}.txt"),
    }
    say(
        f"  py-spy during the {phase}: {profile.samples} samples of the GIL holder;"
        " heaviest frames by own time:"
    )
    for line in profile.table(profile.own, 15):
        say(line)
    # The interpreter's and the event loop's outermost frames are in (nearly) every sample.
    below = collections.Counter(
        {f: n for f, n in profile.inclusive.items() if n < ROOT_FRAME_SHARE * profile.samples}
    )
    say(
        f"  heaviest frames by inclusive time (frames in >= {100 * ROOT_FRAME_SHARE:.0f} % of"
        " samples left out):"
    )
    for line in profile.table(below, 15):
        say(line)


async def idle(run: Run, spy: Path | None = None) -> None:
    assert run.watch is not None
    await asyncio.sleep(SETTLE_S)
    pid, seconds = run.operator_pid, run.args.idle_seconds
    profiler = await start_profile(run, spy, "idle")
    events0, cpu0, api0 = run.watch.events, cpu_seconds(pid), cpu_seconds(*run.apiserver_pids)
    requests0 = await run.kube.request_counts()
    await asyncio.sleep(seconds)
    run.check_operator()
    cpu, api = cpu_seconds(pid) - cpu0, cpu_seconds(*run.apiserver_pids) - api0
    # Per minute rather than per session: idle requests do not depend on the sessions.
    requests = requests_per_session(requests0, await run.kube.request_counts(), 1)
    requests = {what: 60 * count / seconds for what, count in requests.items()}
    memory = memory_mib(pid)
    i = run.result["idle"] = {
        "seconds": seconds,
        "operator_cpu_percent": 100 * cpu / seconds,
        "apiserver_cpu_percent": 100 * api / seconds,
        "session_writes": run.watch.events - events0,
        "rss_mib": memory["rss"],
        "peak_rss_mib": memory["peak"],
        "apiserver_requests_per_minute": requests,
    }
    say(
        f"idle ({seconds:.0f} s after {SETTLE_S:.0f} s settle): operator CPU"
        f" {i['operator_cpu_percent']:.1f} % of a core (apiserver+etcd"
        f" {i['apiserver_cpu_percent']:.1f} %), {i['session_writes']} session writes;"
        f" RSS {i['rss_mib']:.0f} {MIB}, peak {i['peak_rss_mib']:.0f} {MIB}"
    )
    say(f"  apiserver requests per minute (the benchmark's included): {fmt_requests(requests)}")
    await stop_profile(run, profiler, "idle")


async def propagation(run: Run, spy: Path | None = None) -> None:
    assert run.watch is not None
    after = policy_spec(2)
    rev = policy_revision(after)
    names = sorted(run.live)
    tracker = run.watch.track(has_revision(rev), names)
    profiler = await start_profile(run, spy, "propagation")
    op0, api0 = cpu_seconds(run.operator_pid), cpu_seconds(*run.apiserver_pids)
    emu0 = cpu_seconds(run.emulator_pid)
    events0 = run.watch.events
    requests0 = await run.kube.request_counts()
    start = time.monotonic()
    await run.kube.request(
        "PATCH",
        Kube.policies(run.namespace, "p"),
        {"spec": {"network": after["network"]}},
        content_type="application/merge-patch+json",
    )
    done = await run.wait(tracker.all_first, burst_timeout(run.n))
    op_cpu = cpu_seconds(run.operator_pid) - op0
    api_cpu = cpu_seconds(*run.apiserver_pids) - api0
    emu_cpu = cpu_seconds(run.emulator_pid) - emu0
    requests = requests_per_session(requests0, await run.kube.request_counts(), len(names))
    run.watch.untrack(tracker)
    await stop_profile(run, profiler, "propagation")
    times = [t - start for t in tracker.first.values()]
    status_floor = run.result["floor"]["status_writes_s"]
    goal = max(PROPAGATION_GOAL_MIN_S, PROPAGATION_GOAL_FACTOR * status_floor)
    everything = max(times) if done else time.monotonic() - start
    p = run.result["propagation"] = {
        "complete": done,
        "loaded": len(tracker.first),
        "sessions": len(names),
        "all_s": everything,
        "p50_s": percentile(times, 0.5),
        "p99_s": percentile(times, 0.99),
        "status_floor_s": status_floor,
        "all_x_status_floor": ratio(everything, status_floor),
        "goal_s": goal,
        "operator_cpu_ms_per_session": 1000 * op_cpu / max(1, len(names)),
        "apiserver_cpu_ms_per_session": 1000 * api_cpu / max(1, len(names)),
        "watch_events_per_session": (run.watch.events - events0) / max(1, len(names)),
        "emulator_cpu_ms_per_session": 1000 * emu_cpu / max(1, len(names)),
        "apiserver_requests_per_session": requests,
    }
    state = "all" if done else f"TIMED OUT with {len(times)}/{len(names)}"
    say(
        f"policy propagation ({len(names)} sessions): {state} {everything:.2f} s"
        f" (p50 {p['p50_s']:.2f} s, p99 {p['p99_s']:.2f} s) = {p['all_x_status_floor']:.2f} x"
        f" status-write floor {status_floor:.2f} s; goal {goal:.2f} s"
        f" (max({PROPAGATION_GOAL_MIN_S:.0f} s, {PROPAGATION_GOAL_FACTOR} x status-write floor))"
    )
    say(
        f"  operator CPU {p['operator_cpu_ms_per_session']:.1f} ms/session, apiserver+etcd"
        f" {p['apiserver_cpu_ms_per_session']:.1f} ms/session, gateway emulator"
        f" {p['emulator_cpu_ms_per_session']:.1f} ms/session;"
        f" {p['watch_events_per_session']:.1f} session writes per session"
    )
    say(f"  apiserver requests per session: {fmt_requests(requests)}")


async def one_at_a_time(run: Run) -> None:
    assert run.watch is not None
    latencies: list[float] = []
    timeouts = 0
    for i in range(run.args.one_at_a_time):
        name = f"o{i:04d}"
        tracker = run.watch.track(is_ready, [name])
        sent = time.monotonic()
        await run.kube.request(
            "POST", Kube.sessions(run.namespace), session_body(name, run.args.family)
        )
        run.live.add(name)
        if await run.wait(tracker.all_first, ONE_TIMEOUT_S):
            latencies.append(tracker.first[name] - sent)
        else:
            timeouts += 1
        run.watch.untrack(tracker)
    o = run.result["one_at_a_time"] = {
        "sessions": run.args.one_at_a_time,
        "timeouts": timeouts,
        "p50_s": percentile(latencies, 0.5),
        "p99_s": percentile(latencies, 0.99),
    }
    extra = f" ({timeouts} not Ready within {ONE_TIMEOUT_S:.0f} s)" if timeouts else ""
    say(
        f"one at a time ({o['sessions']} with {run.n} present): apply->Ready"
        f" p50 {o['p50_s']:.2f} s, p99 {o['p99_s']:.2f} s{extra}"
    )


async def outage(run: Run) -> None:
    assert run.watch is not None
    assert run.gateway is not None
    watch, gateway, seconds = run.watch, run.gateway, run.outage
    pool = collections.deque(sorted(run.live))  # deleted oldest first
    deleted: list[str] = []
    created: list[str] = []
    period = 1.0 / run.args.churn_rate
    stop = asyncio.Event()

    async def churn() -> None:
        i = 0
        next_at = time.monotonic()
        while not stop.is_set():
            name = f"c{i:05d}"
            i += 1
            await run.kube.request(
                "POST", Kube.sessions(run.namespace), session_body(name, run.args.family)
            )
            created.append(name)
            pool.append(name)
            victim = pool.popleft()
            await run.kube.request("DELETE", Kube.sessions(run.namespace, victim))
            deleted.append(victim)
            next_at += period
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))

    churner = asyncio.create_task(churn())
    await asyncio.sleep(OUTAGE_LEAD_S)
    injected = time.monotonic()
    await asyncio.to_thread(gateway.set_faults, {"outage": {"seconds": seconds}})
    recovery = injected + seconds  # the emulator's clock started on receipt: at most later
    await asyncio.sleep(max(0.0, recovery - time.monotonic()))
    stop.set()
    await churner
    churn_end = time.monotonic()
    run.live = set(pool)
    live, dead = sorted(pool), set(deleted)
    dead_uids = {watch.uids.get(name, "") for name in dead} - {""}
    tracker = watch.track(is_fully_ready, live)
    deadline = recovery + OUTAGE_CONVERGE_TIMEOUT_S
    converged_at: float | None = None
    looked = False  # at the gateway, once the apiserver side had converged
    sandboxes_left = -1
    while converged_at is None and time.monotonic() < deadline:
        run.check_operator()
        if tracker.all_now.is_set() and all(name in watch.deleted_at for name in dead):
            snapshot = await asyncio.to_thread(gateway.snapshot)
            sandboxes_left = sum(
                1 for sb in snapshot["sandboxes"] if set(sb["labels"].values()) & dead_uids
            )
            if sandboxes_left == 0 and not looked:
                # Clean at the first look: converged when the last watch event said so.
                converged_at = max(
                    [t for t in tracker.since.values() if t is not None]
                    + [watch.deleted_at[name] for name in dead]
                    + [recovery]
                )
            elif sandboxes_left == 0:
                converged_at = time.monotonic()  # the gateway lagged: this look decides
            looked = True
        if converged_at is None:
            await asyncio.sleep(0.25)
    watch.untrack(tracker)
    after = None if converged_at is None else converged_at - recovery
    o = run.result["outage"] = {
        "outage_s": seconds,
        "churn_rate_per_s": run.args.churn_rate,
        "created": len(created),
        "deleted": len(deleted),
        "churn_stopped_after_recovery_s": churn_end - recovery,
        "live": len(live),
        "converged_after_recovery_s": after,
        "goal_s": OUTAGE_GOAL_S,
        "sandboxes_left": sandboxes_left,
    }
    if after is None:
        missing = len(live) - sum(1 for t in tracker.since.values() if t is not None)
        left = sum(1 for name in dead if name not in watch.deleted_at)
        say(
            f"outage {seconds:.0f} s with churn: NOT converged {OUTAGE_CONVERGE_TIMEOUT_S:.0f} s"
            f" after recovery: {missing} live sessions not Ready, {left} deleted ones present,"
            f" {max(0, sandboxes_left)} of their sandboxes left (goal {OUTAGE_GOAL_S:.0f} s)"
        )
    else:
        say(
            f"outage {seconds:.0f} s with churn ({run.args.churn_rate:g} creates + deletes/s,"
            f" {o['created']} created, {o['deleted']} deleted): converged {after:.1f} s after"
            f" recovery (goal {OUTAGE_GOAL_S:.0f} s)"
        )


async def teardown(run: Run) -> None:
    assert run.watch is not None
    assert run.gateway is not None
    watch = run.watch
    present = len(watch.objects)
    start = time.monotonic()
    await run.kube.request("DELETE", Kube.sessions(run.namespace), timeout_s=LONG_REQUEST_S)
    deadline = start + teardown_timeout(present)
    while watch.objects and time.monotonic() < deadline:
        run.check_operator()
        await asyncio.sleep(0.2)
    left = await run.kube.count_at_most_one(Kube.sessions(run.namespace)) if watch.objects else 0
    took = (max(watch.deleted_at.values(), default=start) if not left else time.monotonic()) - start
    snapshot = await asyncio.to_thread(run.gateway.snapshot)
    sandboxes = len(snapshot["sandboxes"])
    # Policies go too while the operator runs (it may hold finalizers on them as well).
    policies = Kube.policies(run.namespace)
    await run.kube.request("DELETE", policies, timeout_s=LONG_REQUEST_S)
    policies_gone = await run.kube.wait_empty(policies, 60.0, poll=0.2)
    t = run.result["teardown"] = {
        "sessions": present,
        "complete": not left,
        "s": took,
        "sessions_left": len(watch.objects),
        "sandboxes_left": sandboxes,
        "policies_gone": policies_gone,
    }
    if left:
        say(
            f"teardown: TIMED OUT after {took:.0f} s with {t['sessions_left']} of {present}"
            f" sessions still present; {sandboxes} sandboxes on the gateway"
        )
    else:
        say(
            f"teardown: {present} sessions deleted and gone in {took:.2f} s"
            f" ({present / max(took, 1e-9):.0f}/s); {sandboxes} sandboxes left on the gateway"
        )
    if not policies_gone:
        say("teardown: SidecarPolicy p still present 60 s after its deletion")


async def leftovers(kube: Kube, namespace: str) -> str:
    """What keeps a namespace from going: our objects still in it, with their finalizers."""
    found = []
    for kind, path in (
        ("HelmdeckSession", Kube.sessions(namespace)),
        ("SidecarPolicy", Kube.policies(namespace)),
    ):
        items, _ = await kube.list_all(path)
        for item in items[:5]:
            meta = item["metadata"]
            found.append(f"{kind} {meta['name']} finalizers={meta.get('finalizers', [])}")
        if len(items) > 5:
            found.append(f"... {len(items) - 5} more {kind}s")
    return "; ".join(found) or "none of ours"


# -- one N --------------------------------------------------------------------------------------


async def bench_size(
    plane: ControlPlane,
    kube: Kube,
    args: argparse.Namespace,
    workdir: Path,
    n: int,
    outage_s: float,
) -> Obj:
    namespace = f"bench-{n}"
    run = Run(plane, kube, args, workdir, n, namespace, outage_s, result={"n": n})
    say(f"\n== N = {n} (namespace {namespace}) ==")
    await kube.request(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
    )
    names = [f"s{i:05d}" for i in range(n)]
    spy = args.py_spy_binary
    try:
        await floor(run, names)
        run.gateway = await asyncio.to_thread(EmulatorProcess(EMULATOR_ARGS).__enter__)
        await start_operator(run)
        run.watch = SessionWatch(kube, namespace)
        await run.watch.start()
        if await burst(run, names, spy):
            await idle(run, spy)
            await propagation(run, spy)
            await one_at_a_time(run)
            if run.outage > 0:
                await outage(run)
        else:
            say("burst incomplete: skipping idle, propagation, one at a time and outage")
        await teardown(run)
    except BenchError as err:
        run.result["error"] = str(err)
        say(f"ERROR at N={n}: {err}")
    finally:
        if run.watch is not None:
            run.result["watch"] = {
                "events": run.watch.events,
                "reconnects": run.watch.reconnects,
                "relists": run.watch.relists,
                "errors": run.watch.errors[-5:],
            }
            await run.watch.close()
        if run.operator is not None:
            await asyncio.to_thread(run.operator.stop)
        if run.gateway is not None:
            await asyncio.to_thread(run.gateway.__exit__, None, None, None)
        run.result["client_retries"] = kube.retries
        await kube.request("DELETE", f"/api/v1/namespaces/{namespace}", missing_ok=True)
        gone = await kube.wait_gone(f"/api/v1/namespaces/{namespace}", NAMESPACE_GONE_TIMEOUT_S)
        if not gone:
            say(
                f"namespace {namespace} still terminating after {NAMESPACE_GONE_TIMEOUT_S:.0f} s:"
                f" {await leftovers(kube, namespace)}"
            )
    return run.result


# -- output ---------------------------------------------------------------------------------------


def fmt(value: Any, spec: str = ".2f", unit: str = "") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return f"{value:{spec}}{unit}"


def table(results: list[Obj]) -> list[str]:
    columns = [
        ("N", 6), ("floor", 8), ("all Ready", 10), ("x floor", 8), ("p50", 7), ("p99", 7),
        ("CPU ms", 7), ("idle CPU", 9), ("RSS", 8), ("peak RSS", 9), ("prop all", 9),
        ("prop p99", 9), ("prop goal", 10), ("1-by-1 p50/p99", 15), ("outage", 8), ("teardown", 9),
    ]  # fmt: skip
    lines = [" ".join(f"{title:>{width}}" for title, width in columns)]
    for r in results:
        f, b, i = r.get("floor", {}), r.get("burst", {}), r.get("idle", {})
        p, o, t = r.get("propagation", {}), r.get("one_at_a_time", {}), r.get("teardown", {})
        out = r.get("outage") or {}
        cells = [
            str(r["n"]),
            fmt(f.get("total_s"), ".1f", "s"),
            fmt(b.get("all_ready_s"), ".1f", "s"),
            fmt(b.get("all_ready_x_floor"), ".2f", "x"),
            fmt(b.get("ready_p50_s"), ".1f", "s"),
            fmt(b.get("ready_p99_s"), ".1f", "s"),
            fmt(b.get("operator_cpu_ms_per_session"), ".1f"),
            fmt(i.get("operator_cpu_percent"), ".1f", "%"),
            fmt(i.get("rss_mib"), ".0f", "M"),
            fmt(i.get("peak_rss_mib"), ".0f", "M"),
            fmt(p.get("all_s"), ".1f", "s"),
            fmt(p.get("p99_s"), ".1f", "s"),
            fmt(p.get("goal_s"), ".1f", "s"),
            f"{fmt(o.get('p50_s'), '.2f')}/{fmt(o.get('p99_s'), '.2f')}s",
            fmt(out.get("converged_after_recovery_s"), ".1f", "s") if out else "-",
            fmt(t.get("s"), ".1f", "s"),
        ]
        lines.append(" ".join(f"{cell:>{w}}" for cell, (_, w) in zip(cells, columns, strict=True)))
    return lines


async def main_async(args: argparse.Namespace, workdir: Path) -> list[Obj]:
    sizes: list[int] = args.sessions or [1000, 5000]
    plane = ControlPlane(
        state_dir=workdir / "cluster", binaries=await asyncio.to_thread(find_binaries)
    )
    await asyncio.to_thread(plane.start)
    results: list[Obj] = []
    try:
        crds = str(REPO_ROOT / "crds")
        applied = await asyncio.to_thread(plane.kubectl, "apply", "-f", crds)
        if applied.returncode != 0:
            raise BenchError(f"applying the CRDs: {applied.stderr}")
        established = await asyncio.to_thread(
            plane.kubectl, "wait", "--for=condition=Established", "--timeout=60s", "-f", crds
        )
        if established.returncode != 0:
            raise BenchError(f"CRDs not Established: {established.stderr}")
        async with Kube(plane.server, plane.admin_token, plane.ca_file) as kube:
            for n in sizes:
                outage_s = args.outage if n == min(sizes) else 0.0
                results.append(await bench_size(plane, kube, args, workdir, n, outage_s))
    finally:
        await asyncio.to_thread(plane.stop)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--sessions", type=int, action="append", help="N (repeatable; default 1000 and 5000)"
    )
    parser.add_argument(
        "--one-at-a-time",
        type=int,
        default=50,
        metavar="M",
        help="sessions created one after another (default 50)",
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=60.0, help="idle CPU window (default 60)"
    )
    parser.add_argument(
        "--outage",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="gateway outage scenario at the smallest N (default off)",
    )
    parser.add_argument(
        "--churn-rate",
        type=float,
        default=5.0,
        help="creates (and as many deletes) per second during the outage scenario (default 5)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help="apiserver requests in flight for bulk creates and status writes (default 16)",
    )
    parser.add_argument(
        "--family",
        default="python",
        choices=["browser", "python", "node", "vision"],
        help="family of the sessions (default python: no ports; browser exposes two)",
    )
    parser.add_argument(
        "--py-spy", action="store_true", help="profile the operator with py-spy during the burst"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every figure as JSON")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="helmdeck-bench-"))
    args.py_spy_binary = py_spy_wanted(args.py_spy)
    say(
        f"operator scale benchmark: N = {', '.join(map(str, args.sessions or [1000, 5000]))};"
        f" {os.cpu_count()} CPUs; work dir {workdir}"
    )
    results = asyncio.run(main_async(args, workdir))
    say("")
    for line in table(results):
        say(line)
    say(
        "(floor: creates + status writes with no operator; all Ready: first create -> last"
        " Ready; CPU ms: operator CPU-ms per session over the burst; idle CPU: % of one"
        " core; prop: policy edit -> every session reports the new revision Loaded;"
        f" outage: convergence after recovery, goal {OUTAGE_GOAL_S:.0f} s)"
    )
    say(f"(control plane, emulator and operator on this machine; logs in {workdir})")
    if args.json:
        document = {
            "argv": sys.argv[1:],
            "cpus": os.cpu_count(),
            "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "workdir": str(workdir),
            "results": results,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
        say(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
