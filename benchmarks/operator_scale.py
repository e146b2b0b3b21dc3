"""How the operator scales: N sessions created at once, then one policy edit reaching all.

Not a test: it prints figures. Everything runs on this machine: a fresh local control plane
(real etcd + kube-apiserver), the OpenShell emulator as a subprocess (its delays set to
zero-ish so the operator, not the emulator, is measured), and the operator as a subprocess,
exactly as `make test` runs them.

    .venv/bin/python benchmarks/operator_scale.py --sessions 100 --sessions 500

For each N it prints time-to-Ready p50/p99 (apply -> the session reports Ready and its policy
loaded), throughput, policy propagation p50/p99 (the edit -> each session reports the new
revision loaded on its sandbox) and the operator's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from helmdeck_operator.policy import revision, translate
from helmdeck_operator.testing.controlplane import ControlPlane, find_binaries
from helmdeck_operator.testing.emulator_process import EmulatorProcess
from helmdeck_operator.testing.objects import phase, policy, session
from helmdeck_operator.testing.operator_process import REPO_ROOT, OperatorProcess, write_config

POLL_S = 0.25
TIMEOUT_S = 900.0


def spec(rules: int) -> dict[str, Any]:
    return {
        "network": [
            {
                "name": f"r{i}",
                "endpoints": [{"host": f"api{i}.example.com", "port": 443, "protocol": "rest"}],
            }
            for i in range(rules)
        ]
    }


class Api:
    """A bare JSON GET against the apiserver: kubectl per poll would dominate the timings."""

    def __init__(self, plane: ControlPlane) -> None:
        self.base = plane.server
        self.token = plane.admin_token
        self.context = ssl.create_default_context(cafile=str(plane.ca_file))

    def sessions(self, namespace: str) -> list[dict[str, Any]]:
        url = f"{self.base}/apis/helmdeck.dev/v1alpha1/namespaces/{namespace}/helmdecksessions"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, context=self.context, timeout=30) as response:
            items: list[dict[str, Any]] = json.load(response)["items"]
            return items


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait_all(api: Api, namespace: str, n: int, done: Any, start: float) -> dict[str, float]:
    """Seconds from `start` at which each session first satisfied `done`."""
    seen: dict[str, float] = {}
    while len(seen) < n:
        if time.monotonic() - start > TIMEOUT_S:
            raise SystemExit(f"timed out: {len(seen)}/{n} done")
        now = time.monotonic() - start
        for item in api.sessions(namespace):
            name = item["metadata"]["name"]
            if name not in seen and done(item):
                seen[name] = now
        time.sleep(POLL_S)
    return seen


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(plane: ControlPlane, gateway: EmulatorProcess, n: int, workdir: Path) -> dict[str, float]:
    namespace = f"bench-{n}"
    plane.kubectl("create", "namespace", namespace)
    config = write_config(
        workdir / f"config-{n}.yaml",
        gateway.address,
        intervals={"resync_seconds": 30, "pending_seconds": 0.5},
        concurrency={"gateway_mutations": 64},
    )
    operator = OperatorProcess(config, plane.kubeconfig, workdir / f"operator-{n}.log").start()
    api = Api(plane)
    try:
        before, after = spec(1), spec(2)
        rev_after = revision.revision(translate.to_sandbox_policy(after))
        plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(policy("p", **before)))
        items = [session(f"s{i:04d}", "python", policyRef={"name": "p"}) for i in range(n)]
        start = time.monotonic()
        applied = plane.kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )
        assert applied.returncode == 0, applied.stderr
        ready = wait_all(
            api,
            namespace,
            n,
            lambda s: (
                phase(s) == "Ready" and (s["status"].get("policy") or {}).get("state") == "Loaded"
            ),
            start,
        )
        edit = time.monotonic()
        plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(policy("p", **after)))
        loaded = wait_all(
            api,
            namespace,
            n,
            lambda s: (
                (s["status"].get("policy") or {}).get("revision") == rev_after
                and s["status"]["policy"].get("state") == "Loaded"
            ),
            edit,
        )
        assert operator.proc is not None
        rss = peak_rss_mib(operator.proc.pid)
    finally:
        operator.stop()
        plane.kubectl("delete", "namespace", namespace, "--wait=false")
    ttr, prop = list(ready.values()), list(loaded.values())
    return {
        "n": n,
        "ready_p50": statistics.median(ttr),
        "ready_p99": percentile(ttr, 0.99),
        "all_ready": max(ttr),
        "sessions_per_s": n / max(ttr),
        "propagation_p50": statistics.median(prop),
        "propagation_p99": percentile(prop, 0.99),
        "propagation_all": max(prop),
        "peak_rss_mib": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, action="append", help="N (repeatable)")
    args = parser.parse_args()
    sizes = args.sessions or [100, 500]
    workdir = Path(tempfile.mkdtemp(prefix="helmdeck-bench-"))
    emulator_args = [
        "--ready-delay", "0.05", "--load-delay", "0.05", "--delete-delay", "0.05",
        "--workspace", "default", "--workspace", "microvm",
    ]  # fmt: skip
    with ControlPlane(state_dir=workdir / "cluster", binaries=find_binaries()) as plane:
        applied = plane.kubectl("apply", "-f", str(REPO_ROOT / "crds"))
        assert applied.returncode == 0, applied.stderr
        plane.kubectl("wait", "--for=condition=Established", "-f", str(REPO_ROOT / "crds"))
        with EmulatorProcess(emulator_args) as gateway:
            results = [run(plane, gateway, n, workdir) for n in sizes]
    print(
        f"{'N':>5} {'ready p50':>10} {'ready p99':>10} {'all ready':>10} {'sess/s':>7} "
        f"{'prop p50':>9} {'prop p99':>9} {'prop all':>9} {'peak RSS':>9}"
    )
    for r in results:
        print(
            f"{r['n']:>5} {r['ready_p50']:>9.2f}s {r['ready_p99']:>9.2f}s "
            f"{r['all_ready']:>9.2f}s {r['sessions_per_s']:>7.1f} "
            f"{r['propagation_p50']:>8.2f}s {r['propagation_p99']:>8.2f}s "
            f"{r['propagation_all']:>8.2f}s {r['peak_rss_mib']:>6.0f} MiB"
        )
    print(f"(control plane, emulator and operator on this machine; logs in {workdir})")


if __name__ == "__main__":
    main()
