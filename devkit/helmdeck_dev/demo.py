"""`make demo` and `make dev`: the product end to end on one machine, no Docker needed.

`demo` starts a real local control plane, the OpenShell emulator (standing in for two
gateways: `pods` and `microvm`) and the operator; applies the sample policies, warm pools and
sessions; then shows, in plain words, a claim from a warm pool, a hot reload, a suspend and
a TTL expiry, and tears it all down.
`dev up` leaves the same setup running in the background and says how to use it; `dev down`
stops it.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from helmdeck_dev.controlplane import (
    ControlPlane,
    cluster_down,
    cluster_up,
    find_binaries,
)
from helmdeck_dev.emulator_process import EmulatorProcess
from helmdeck_dev.objects import phase, session
from helmdeck_dev.operator_process import REPO_ROOT, OperatorProcess, write_config

__all__ = ["register"]

SAMPLES = REPO_ROOT / "docs" / "samples"
NAMESPACE = "demo"
EMULATOR_ARGS = [
    "--workspace", "default", "--workspace", "microvm", "--provider", "github",
    "--ready-delay", "1", "--load-delay", "0.5", "--stop-delay", "0.5", "--start-delay", "0.5",
]  # fmt: skip


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def show(plane: ControlPlane, *args: str) -> None:
    result = plane.kubectl(*args, "-n", NAMESPACE)
    print(result.stdout.rstrip() or result.stderr.rstrip(), flush=True)


def wait(what: str, check: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        time.sleep(0.5)


def sessions(plane: ControlPlane) -> dict[str, dict[str, Any]]:
    items = plane.kubectl_json("get", "hds", "-n", NAMESPACE)["items"]
    return {s["metadata"]["name"]: s for s in items}


def apply_samples(plane: ControlPlane) -> None:
    for path in (REPO_ROOT / "crds",):
        result = plane.kubectl("apply", "-f", str(path))
        assert result.returncode == 0, result.stderr
    plane.kubectl("wait", "--for=condition=Established", "-f", str(REPO_ROOT / "crds"))
    plane.kubectl("create", "namespace", NAMESPACE)
    for folder in ("policies", "pools"):
        result = plane.kubectl("apply", "-n", NAMESPACE, "-f", str(SAMPLES / folder))
        assert result.returncode == 0, result.stderr
    # The sessions come once the pools are warm, so the pooled one claims instead of
    # falling back to a cold create.
    wait("every SessionPool filled", lambda: pools_filled(plane))
    result = plane.kubectl("apply", "-n", NAMESPACE, "-f", str(SAMPLES / "sessions"))
    assert result.returncode == 0, result.stderr


def pools_filled(plane: ControlPlane) -> bool:
    items = plane.kubectl_json("get", "hdp", "-n", NAMESPACE)["items"]
    return bool(items) and all(
        (p.get("status") or {}).get("readyReplicas") == p["spec"].get("replicas", 1) for p in items
    )


def demo(workdir: Path) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    say("Building (or reusing) kube-apiserver 1.34, etcd 3.6 and kubectl from Go modules")
    binaries = find_binaries()
    say("Starting a local Kubernetes control plane (real etcd + kube-apiserver)")
    with ControlPlane(state_dir=workdir / "cluster", binaries=binaries) as plane:
        print(f"    {plane.server}  (kubeconfig: {plane.kubeconfig})")
        say("Starting the OpenShell gateway emulator (gateways 'pods' and 'microvm')")
        with EmulatorProcess(EMULATOR_ARGS) as gateway:
            print(f"    gRPC {gateway.address}, admin {gateway.admin_url}")
            config = write_config(
                workdir / "config.yaml", gateway.address, instance="helmdeck-demo"
            )
            operator = OperatorProcess(config, plane.kubeconfig, workdir / "operator.log").start()
            try:
                return _story(plane, gateway)
            finally:
                operator.stop()
                print(f"\n(operator log: {workdir / 'operator.log'})")


def _story(plane: ControlPlane, gateway: EmulatorProcess) -> int:
    say(
        "Applying the sample SidecarPolicies and SessionPools (warm sandboxes), then one "
        "HelmdeckSession per family (browser-pooled claims from its pool), plus a 1-minute "
        "scratch session"
    )
    apply_samples(plane)
    scratch = session("scratchpad", "python", lifetime={"ttl": "1m", "onExpiry": "Delete"})
    plane.kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=json.dumps(scratch))
    wait("every session Ready", lambda: all(phase(s) == "Ready" for s in sessions(plane).values()))
    show(plane, "get", "helmdeck")
    print("    Every session is Ready: its sandbox is READY on the gateway and its policy loaded.")
    pooled = sessions(plane)["browser-pooled"]["status"]
    pushed = int(pooled["policy"].get("gatewayVersion") or 1) > 1
    how = (
        "its own policy was pushed into it at claim time"
        if pushed
        else "its policy is the pool's baseline (the browser default has no network rule), so"
        " there was nothing to push"
    )
    print(
        f"    browser-pooled claimed the warm sandbox {pooled['pool']['sandbox']} from SessionPool"
        f" {pooled['pool']['name']} instead of booting one; {how}; the pool booted a"
        " replacement."
    )

    say("The endpoints a consumer reaches each sidecar by (status.endpoints: the family's ports)")
    for name, found in sorted(sessions(plane).items()):
        endpoints = found["status"].get("endpoints") or {}
        shown = ", ".join(f"{port} {url}" for port, url in sorted(endpoints.items()))
        print(f"    {name}: {shown or 'none (this family serves no ports by default)'}")
    print(
        "    A consumer renews a session (idle clock) or extends its lifetime with one status"
        " patch:\n    kubectl patch hds NAME --subresource=status --type=merge"
        """ -p '{"status":{"lease":{"renewTime":"<now>"}}}'  (docs/helmdeck.md)"""
    )

    say("Editing SidecarPolicy python-pypi: allowing conda.anaconda.org (hot reload)")
    before = sessions(plane)["python-analysis"]["status"]
    sandbox = before["sandbox"]["name"]
    manifest = yaml.safe_load((SAMPLES / "policies" / "python-pypi.yaml").read_text())
    edited = copy.deepcopy(manifest)
    edited["spec"]["network"].append(
        {
            "name": "conda",
            "endpoints": [
                {
                    "host": "conda.anaconda.org",
                    "port": 443,
                    "protocol": "rest",
                    "access": "read-only",
                }
            ],
        }
    )
    plane.kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=json.dumps(edited))
    wait(
        "the new revision loaded",
        lambda: (
            sessions(plane)["python-analysis"]["status"]["policy"].get("gatewayVersion") == 2
            and sessions(plane)["python-analysis"]["status"]["policy"].get("state") == "Loaded"
        ),
    )
    after = sessions(plane)["python-analysis"]["status"]
    boots = next(s["boots"] for s in gateway.snapshot()["sandboxes"] if s["name"] == sandbox)
    print(f"    before: revision {before['policy']['revision'][:19]}... gateway version 1")
    print(f"    after:  revision {after['policy']['revision'][:19]}... gateway version 2")
    print(f"    sandbox {sandbox} kept running: same id, booted {boots} time(s) in total")
    show(plane, "get", "helmdeck")

    say("Suspending browser-research (spec.suspend: true stops its sandbox)")
    plane.kubectl(
        "patch",
        "hds",
        "browser-research",
        "-n",
        NAMESPACE,
        "--type=merge",
        "-p",
        '{"spec":{"suspend":true}}',
    )
    wait("Suspended", lambda: phase(sessions(plane)["browser-research"]) == "Suspended")
    show(plane, "get", "hds")

    say("Waiting for scratchpad's 1-minute TTL to expire (onExpiry: Delete)")
    wait("scratchpad expired", lambda: "scratchpad" not in sessions(plane), timeout=150)
    show(plane, "get", "helmdeck")

    say("What happened, as Kubernetes Events")
    show(
        plane,
        "get",
        "events",
        "--sort-by=.lastTimestamp",
        "-o",
        "custom-columns=OBJECT:.involvedObject.name,TYPE:.type,REASON:.reason,MESSAGE:.message",
    )
    live = {s["name"] for s in gateway.snapshot()["sandboxes"]}
    print(f"\n    The gateway holds {len(live)} sandboxes, one per remaining session.")
    say("Demo complete; tearing everything down")
    return 0


# -- make dev: the same, left running ----------------------------------------------------------


def dev_up(state: Path) -> int:
    state.mkdir(parents=True, exist_ok=True)
    cluster_up(state / "cluster")
    kubeconfig = (state / "cluster" / "kubeconfig").resolve()
    plane_kubectl = [str(find_binaries().kubectl), f"--kubeconfig={kubeconfig}"]
    emulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "helmdeck_operator.emulator",
            "--port",
            "0",
            "--admin-port",
            "0",
            *EMULATOR_ARGS,
        ],
        stdout=subprocess.PIPE,
        stderr=(state / "emulator.log").open("ab"),
        text=True,
        start_new_session=True,
    )
    assert emulator.stdout is not None
    info = json.loads(emulator.stdout.readline())
    config = write_config(state / "config.yaml", info["address"], instance="helmdeck-dev")
    with (state / "operator.log").open("ab") as log:
        operator = subprocess.Popen(
            [sys.executable, "-m", "helmdeck_operator", "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        )
    (state / "pids.json").write_text(
        json.dumps({"emulator": emulator.pid, "operator": operator.pid})
    )
    for args in (
        ["apply", "-f", str(REPO_ROOT / "crds")],
        ["wait", "--for=condition=Established", "-f", str(REPO_ROOT / "crds")],
        ["create", "namespace", NAMESPACE],
        ["apply", "-n", NAMESPACE, "-f", str(SAMPLES / "policies")],
        ["apply", "-n", NAMESPACE, "-f", str(SAMPLES / "pools")],
        ["apply", "-n", NAMESPACE, "-f", str(SAMPLES / "sessions")],
    ):
        subprocess.run([*plane_kubectl, *args], check=False, capture_output=True)
    print(
        "\nhelmdeck-operator is running against a local control plane and the emulator.\n"
        f"  export KUBECONFIG={kubeconfig}\n"
        f"  kubectl get helmdeck -n {NAMESPACE}\n"
        f"  kubectl describe hds browser-research -n {NAMESPACE}\n"
        f"  emulator admin API: {info['admin_url']}/snapshot\n"
        f"  logs: {state}/operator.log, {state}/emulator.log\n"
        "  stop everything: make dev-down"
    )
    return 0


def dev_down(state: Path) -> int:
    pids_file = state / "pids.json"
    if pids_file.exists():
        for pid in json.loads(pids_file.read_text()).values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        pids_file.unlink()
    return cluster_down(state / "cluster")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("demo", help="run the end-to-end demo (from a checkout)")
    parser.add_argument("--workdir", type=Path, default=Path(".local/demo"))
    parser.set_defaults(handler=lambda args: demo(args.workdir.resolve()))
    dev = sub.add_parser("dev", help="leave the demo setup running (up) or stop it (down)")
    dev.add_argument("action", choices=["up", "down"])
    dev.add_argument("--state-dir", type=Path, default=Path(".local/dev"))
    dev.set_defaults(
        handler=lambda args: (dev_up if args.action == "up" else dev_down)(args.state_dir.resolve())
    )
