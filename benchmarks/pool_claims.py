"""Claim -> Ready from warm pools, beside the same sessions created cold and the apiserver
floor measured in the same run.

Not a test: it prints figures and asserts nothing about timings. One fresh local control
plane, one OpenShell emulator with a realistic boot (`--ready-delay 2`: a sandbox is READY
two seconds after its create) and policy load (`--load-delay 0.05`), one operator with the
shipped default intervals.

    make bench-pools
    .venv/bin/python benchmarks/pool_claims.py --sessions 1000 --rate 20 --json pools.json
    .venv/bin/python benchmarks/pool_claims.py --sessions 100 --rate 10 --py-spy  # a quick look

In order, in namespace `pools`:

1. Floor (no operator): the sessions created at the same pace as below, each followed by
   one realistic Ready status write (the least any operator must write per claim); per
   session, create sent -> that status seen on the watch: p50/p99.
2. Operator up, then `--pools` python SessionPools sized to hold every session between
   them; wait until each reports all its replicas ready.
3. Claims: the N sessions (policyRef `pypi`: the python default policy plus one network
   rule, a live change from a pool's baseline, so every claim pushes and loads the
   session's own policy; poolRef round-robin over the pools) created at
   `--rate` per second; per session, create sent -> Ready (phase Ready, policy Loaded) seen
   on the watch: p50/p99/max, and how many were claimed vs created cold (by reason). Then
   all deleted, and the pools too.
4. Cold: the same N sessions (same policy) without poolRef, at the same rate: create ->
   Ready p50/p99.

The goal (docs/pools.md): claim -> Ready p99 <= 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import json
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

import operator_scale as scale
from helmdeck_dev.controlplane import ControlPlane, find_binaries
from helmdeck_dev.emulator_process import EmulatorProcess
from helmdeck_dev.objects import policy, pool, session
from helmdeck_dev.operator_process import REPO_ROOT
from kubeapi import Kube, SessionWatch

Obj = dict[str, Any]

EMULATOR_ARGS = [
    "--ready-delay", "2", "--load-delay", "0.05", "--delete-delay", "0",
    "--stop-delay", "0", "--start-delay", "0",
    "--workspace", "default", "--workspace", "microvm",
]  # fmt: skip
NAMESPACE = "pools"
FILL_TIMEOUT_S = 600.0
READY_TIMEOUT_S = 120.0
GOAL_P99_S = 0.25
#: Idle sandboxes a pool boots at once (the most a pool allows): filling 1,000 with a 2 s
#: boot takes a few rounds of this.
MAX_PROVISIONING = 100


def pypi_spec() -> Obj:
    """The python default policy plus a rule for PyPI: what a python pack that installs
    packages runs, and a live change from a python pool's baseline."""
    manifest = yaml.safe_load((REPO_ROOT / "policies" / "python.yaml").read_text())
    spec: Obj = manifest["spec"]
    spec["network"] = scale.policy_spec(1)["network"]
    return spec


def session_body(name: str, pool_name: str | None = None) -> Obj:
    extra = {"poolRef": {"name": pool_name}} if pool_name else {}
    return session(name, "python", policyRef={"name": "pypi"}, **extra)


def pools_path(name: str = "") -> str:
    return f"/apis/helmdeck.dev/v1alpha1/namespaces/{NAMESPACE}/sessionpools" + (
        f"/{name}" if name else ""
    )


async def paced(names: list[str], rate: float, send: Any) -> None:
    """Call `send(name)` for each name at `rate` per second, never waiting for one to
    finish before the next is due (a consumer's requests arrive on their own clock)."""
    start = time.monotonic()
    tasks = []
    for i, name in enumerate(names):
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        tasks.append(asyncio.create_task(send(name)))
    await asyncio.gather(*tasks)


def summary(latencies: list[float]) -> Obj:
    return {
        "n": len(latencies),
        "p50_s": scale.percentile(latencies, 0.5),
        "p99_s": scale.percentile(latencies, 0.99),
        "max_s": max(latencies) if latencies else float("nan"),
    }


async def floor(kube: Kube, watch: SessionWatch, names: list[str], rate: float) -> Obj:
    """Create + one Ready status write per session, at the pace of the runs below."""
    rev = scale.policy_revision(scale.policy_spec(1))
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    tracker = watch.track(scale.is_ready, names)
    sent: dict[str, float] = {}

    async def send(name: str) -> None:
        sent[name] = time.monotonic()
        await kube.request("POST", Kube.sessions(NAMESPACE), session_body(name))
        await kube.request(
            "PATCH",
            Kube.sessions(NAMESPACE, name, "status"),
            scale.ready_status(name, rev, now),
            content_type="application/merge-patch+json",
        )

    await paced(names, rate, send)
    await asyncio.wait_for(tracker.all_first.wait(), READY_TIMEOUT_S)
    watch.untrack(tracker)
    await kube.request("DELETE", Kube.sessions(NAMESPACE), timeout_s=scale.LONG_REQUEST_S)
    await kube.wait_empty(Kube.sessions(NAMESPACE), scale.teardown_timeout(len(names)))
    return summary([tracker.first[n] - sent[n] for n in names])


async def fill(run: scale.Run, count: int, total: int) -> Obj:
    """`count` pools holding `total` idle sandboxes between them, all READY."""
    kube = run.kube
    per = -(-total // count)
    names = [f"warm-{i}" for i in range(count)]
    started = time.monotonic()
    for name in names:
        body = pool(name, "python", replicas=per, maxProvisioning=MAX_PROVISIONING)
        await kube.request("POST", pools_path(), body)
    while True:
        run.check_operator()
        ready = 0
        for name in names:
            found = await kube.request("GET", pools_path(name))
            ready += int((found.get("status") or {}).get("readyReplicas") or 0)
        if ready >= per * count:
            break
        if time.monotonic() - started > FILL_TIMEOUT_S:
            raise scale.BenchError(f"pools not filled after {FILL_TIMEOUT_S:.0f} s ({ready})")
        await asyncio.sleep(0.5)
    took = time.monotonic() - started
    scale.say(f"pools: {count} x {per} idle sandboxes READY in {took:.1f} s")
    return {"pools": count, "per_pool": per, "fill_s": took, "names": names}


async def timed(run: scale.Run, names: list[str], body: Any, rate: float) -> Obj:
    """Create `names` at `rate`; create sent -> Ready seen, per session."""
    assert run.watch is not None
    tracker = run.watch.track(scale.is_ready, names)
    sent: dict[str, float] = {}
    cpu0 = scale.cpu_seconds(run.operator_pid)

    async def send(name: str) -> None:
        sent[name] = time.monotonic()
        await run.kube.request("POST", Kube.sessions(NAMESPACE), body(name))

    await paced(names, rate, send)
    if not await run.wait(tracker.all_first, READY_TIMEOUT_S):
        missing = len(names) - len(tracker.first)
        raise scale.BenchError(f"{missing} sessions not Ready {READY_TIMEOUT_S:.0f} s after")
    run.watch.untrack(tracker)
    out = summary([tracker.first[n] - sent[n] for n in names])
    out["operator_cpu_ms_per_session"] = (
        1000 * (scale.cpu_seconds(run.operator_pid) - cpu0) / len(names)
    )
    return out


def histogram_means(port: int) -> dict[str, tuple[float, float]]:
    """(sum, count) of each histogram series on the operator's /metrics, by series name
    and labels: where a phase's time went, from the operator's own account."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for line in text.splitlines():
        match = re.match(r"^(\w+)_(sum|count)(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if match is None or not match.group(1).endswith("_seconds"):
            continue
        name, part, labels, value = match.groups()
        found[name + (labels or "")][0 if part == "sum" else 1] = float(value)
    return {k: (v[0], v[1]) for k, v in found.items()}


def where_time_went(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> Obj:
    """Mean seconds per observation of each histogram between two scrapes."""
    out: Obj = {}
    for name, (total, count) in after.items():
        total0, count0 = before.get(name, (0.0, 0.0))
        if count - count0 >= 1:
            out[name] = {"mean_ms": 1000 * (total - total0) / (count - count0), "n": count - count0}
    return out


def outcomes(watch: SessionWatch, names: list[str]) -> collections.Counter[str]:
    """Claimed, or the reason of each cold create, from the sessions' status.pool."""
    counted: collections.Counter[str] = collections.Counter()
    for name in names:
        recorded = scale.status_of(watch.objects.get(name) or {}).get("pool") or {}
        counted["claimed" if recorded.get("sandbox") else recorded.get("fallback", "none")] += 1
    return counted


async def delete_all(run: scale.Run, path: str, n: int) -> None:
    await run.kube.request("DELETE", path, timeout_s=scale.LONG_REQUEST_S)
    if not await run.kube.wait_empty(path, scale.teardown_timeout(n)):
        raise scale.BenchError(f"{path}: not all gone in time")


async def bench(plane: ControlPlane, kube: Kube, args: argparse.Namespace, workdir: Path) -> Obj:
    n, rate = args.sessions, args.rate
    run = scale.Run(plane, kube, args, workdir, n, NAMESPACE, 0.0, result={"n": n, "rate": rate})
    await kube.request(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
    )
    names = [f"s{i:05d}" for i in range(n)]
    run.watch = SessionWatch(kube, NAMESPACE)
    await run.watch.start()
    try:
        # Not measured: opens the connections and warms the apiserver's storage for the
        # resource (its very first writes are slow).
        await floor(kube, run.watch, [f"w{i:03d}" for i in range(50)], max(rate, 50.0))
        f = run.result["floor"] = await floor(kube, run.watch, names, rate)
        scale.say(
            f"apiserver floor (create + one Ready status write, {rate:g}/s):"
            f" p50 {f['p50_s'] * 1000:.0f} ms, p99 {f['p99_s'] * 1000:.0f} ms"
        )
        run.gateway = await asyncio.to_thread(EmulatorProcess(EMULATOR_ARGS).__enter__)
        await scale.start_operator(run)
        await kube.request("POST", Kube.policies(NAMESPACE), policy("pypi", **pypi_spec()))
        filled = run.result["fill"] = await fill(run, args.pools, n)
        pools = filled.pop("names")

        def pooled(name: str) -> Obj:
            return session_body(name, pools[int(name[1:]) % len(pools)])

        profiler = await scale.start_profile(run, args.py_spy_binary, "claims")
        before = await asyncio.to_thread(histogram_means, run.metrics_port)
        c = run.result["claims"] = await timed(run, names, pooled, rate)
        after = await asyncio.to_thread(histogram_means, run.metrics_port)
        await scale.stop_profile(run, profiler, "claims")
        c["operator_histograms"] = where_time_went(before, after)
        for name, figures in sorted(c["operator_histograms"].items()):
            scale.say(f"  {name}: mean {figures['mean_ms']:.1f} ms over {figures['n']:.0f}")
        c["outcomes"] = dict(outcomes(run.watch, names))
        scale.say(
            f"claims ({n} at {rate:g}/s from {len(pools)} pools): create -> Ready"
            f" p50 {c['p50_s'] * 1000:.0f} ms, p99 {c['p99_s'] * 1000:.0f} ms,"
            f" max {c['max_s'] * 1000:.0f} ms"
            f" (p99 {scale.ratio(c['p99_s'], f['p99_s']):.1f}x the floor's;"
            f" goal p99 <= {GOAL_P99_S * 1000:.0f} ms);"
            f" operator CPU {c['operator_cpu_ms_per_session']:.1f} ms/session;"
            f" outcomes {c['outcomes']}"
        )
        await delete_all(run, Kube.sessions(NAMESPACE), n)
        await delete_all(run, pools_path(), n)

        cold = run.result["cold"] = await timed(run, names, session_body, rate)
        scale.say(
            f"cold ({n} at {rate:g}/s, 2 s boot): create -> Ready"
            f" p50 {cold['p50_s'] * 1000:.0f} ms, p99 {cold['p99_s'] * 1000:.0f} ms,"
            f" max {cold['max_s'] * 1000:.0f} ms;"
            f" operator CPU {cold['operator_cpu_ms_per_session']:.1f} ms/session"
        )
        await delete_all(run, Kube.sessions(NAMESPACE), n)
    except scale.BenchError as err:
        run.result["error"] = str(err)
        scale.say(f"ERROR: {err}")
    finally:
        await run.watch.close()
        if run.operator is not None:
            await asyncio.to_thread(run.operator.stop)
        if run.gateway is not None:
            await asyncio.to_thread(run.gateway.__exit__, None, None, None)
    return run.result


async def main_async(args: argparse.Namespace, workdir: Path) -> Obj:
    plane = ControlPlane(
        state_dir=workdir / "cluster", binaries=await asyncio.to_thread(find_binaries)
    )
    await asyncio.to_thread(plane.start)
    try:
        crds = str(REPO_ROOT / "crds")
        applied = await asyncio.to_thread(plane.kubectl, "apply", "-f", crds)
        if applied.returncode != 0:
            raise scale.BenchError(f"applying the CRDs: {applied.stderr}")
        established = await asyncio.to_thread(
            plane.kubectl, "wait", "--for=condition=Established", "--timeout=60s", "-f", crds
        )
        if established.returncode != 0:
            raise scale.BenchError(f"CRDs not Established: {established.stderr}")
        async with Kube(plane.server, plane.admin_token, plane.ca_file) as kube:
            return await bench(plane, kube, args, workdir)
    finally:
        await asyncio.to_thread(plane.stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000, help="N (default 1000)")
    parser.add_argument(
        "--rate", type=float, default=20.0, help="sessions created per second (default 20)"
    )
    parser.add_argument(
        "--pools", type=int, default=4, help="pools holding the N between them (default 4)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="apiserver requests in flight for bulk work"
    )
    parser.add_argument(
        "--py-spy", action="store_true", help="profile the operator with py-spy during the claims"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every figure as JSON")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="helmdeck-pool-bench-"))
    args.py_spy_binary = scale.py_spy_wanted(args.py_spy)
    scale.say(f"work dir: {workdir}")
    result = asyncio.run(main_async(args, workdir))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str))
    if "error" in result:
        sys.exit(1)


if __name__ == "__main__":
    main()
