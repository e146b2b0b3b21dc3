"""`make e2e`: the e2e suite against the local control plane, the operator running out of
cluster AS THE CHART'S ServiceAccount, so the chart's RBAC is what is tested.

Steps (each prints one line):
  1. build or reuse the control plane (hack/build-controlplane.sh) and helm
     (hack/build-tools.sh); start etcd + kube-apiserver + kube-controller-manager;
  2. start the OpenShell emulator on loopback (it has an admin API the suite checks
     sandboxes through);
  3. `helm template` the chart with local values (the one gateway = the emulator, plaintext
     on loopback, one replica) to read what a pod would get: the ConfigMap's config.yaml, the
     ServiceAccount, the (Cluster)Roles, the Deployment's container args;
  4. `helm install` the same chart and values with a post-renderer that drops the objects
     only a kubelet could use (Deployment, Service, PodDisruptionBudget, NetworkPolicy,
     ServiceMonitor): the CRDs, the ServiceAccount, the RBAC and the ConfigMap are created
     by Helm as in a cluster, so the suite's `helm uninstall` test has a real release;
  5. write config.yaml with the mounted policy paths pointed at the repository's policies/,
     and a kubeconfig holding a TokenRequest token of the chart's ServiceAccount;
  6. run pytest on e2e/ with --local-state (the suite starts that operator itself, with the
     Deployment's args, and restarts it for the RBAC test), --gateway-admin-url, and
     --uninstall; tear everything down; exit with pytest's status.

What this cannot prove: no kubelet, no image, no in-cluster networking (see docs/e2e.md).
Usage: python e2e/run_local.py [--workdir DIR] [--keep] [-- PYTEST ARGS...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from helmdeck_dev.controlplane import ControlPlane, find_binaries
from helmdeck_dev.emulator_process import EmulatorProcess

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "helmdeck-operator"
RELEASE = "helmdeck-operator"
NAMESPACE = "helmdeck-system"
#: Objects a cluster without kubelet, scheduler or kube-proxy cannot run; everything else of
#: the chart is installed.
DROPPED_KINDS = frozenset(
    {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor"}
)
#: Emulator: two workspaces like the integration tests, short but observable delays.
EMULATOR_ARGS = [
    "--workspace", "default", "--workspace", "microvm", "--provider", "github",
    "--ready-delay", "0.3", "--load-delay", "0.2", "--delete-delay", "0.2",
    "--stop-delay", "0.2", "--start-delay", "0.2",
]  # fmt: skip

POST_RENDERER = """#!/bin/sh
# Written by e2e/run_local.py: drop what only a kubelet could run.
exec "{python}" "{script}" --post-render
"""


def log(message: str) -> None:
    print(f"[e2e] {message}", flush=True)


def local_values(gateway_address: str) -> dict[str, Any]:
    """The chart's values for this machine: only what differs from the defaults."""
    return {
        "replicas": 1,
        # Kept on (the default): the Lease RBAC is then exercised too.
        "leaderElection": {"enabled": True},
        "podDisruptionBudget": {"enabled": False},
        "config": {
            "instance": "helmdeck-e2e",
            # Faster than the defaults so expiry and retries are seen within the suite.
            "intervals": {
                "resyncSeconds": 5,
                "pendingSeconds": 0.5,
                "orphanSweepSeconds": 30,
                "orphanGraceSeconds": 10,
            },
        },
        "gateways": [
            {
                "name": "pods",
                "endpoint": gateway_address,
                "workspace": "default",
                "driver": "kubernetes",
                "plaintext": True,
                "auth": {"type": "none"},
                # The NetworkPolicy (on by default) needs a peer per gateway; it is rendered
                # and checked, then dropped with the other kubelet-only objects.
                "egress": [{"ipBlock": {"cidr": "127.0.0.1/32"}}],
            }
        ],
    }


def post_render() -> int:
    """Helm post-renderer: manifests on stdin, the same minus DROPPED_KINDS on stdout."""
    kept = [
        doc
        for doc in yaml.safe_load_all(sys.stdin)
        if isinstance(doc, dict) and doc.get("kind") not in DROPPED_KINDS
    ]
    sys.stdout.write(yaml.safe_dump_all(kept, sort_keys=False))
    return 0


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
    return result


def build_helm() -> Path:
    result = run(["bash", str(REPO / "hack" / "build-tools.sh")])
    return Path(result.stdout.strip().splitlines()[-1]) / "helm"


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d.get("kind") == kind]
    if len(found) != 1:
        raise SystemExit(f"expected one {kind} in the rendered chart, found {len(found)}")
    return found[0]


def operator_config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The rendered config.yaml, with the mounted family policy paths pointed at the
    repository's policies/ (the chart mounts files/policies/, identical to policies/)."""
    maps = [d for d in docs if d.get("kind") == "ConfigMap" and "config.yaml" in d.get("data", {})]
    if len(maps) != 1:
        raise SystemExit(f"expected one ConfigMap with key config.yaml, found {len(maps)}")
    config: dict[str, Any] = yaml.safe_load(maps[0]["data"]["config.yaml"])
    for family, defaults in config["families"].items():
        mounted = Path(defaults["policy_file"]).name
        local = REPO / "policies" / mounted
        if not local.exists():
            raise SystemExit(f"families.{family}.policy_file {mounted}: no {local}")
        defaults["policy_file"] = str(local)
    return config


def operator_args(docs: list[dict[str, Any]]) -> list[str]:
    """The Deployment's operator container: command + args after the console script."""
    deployment = only(docs, "Deployment")
    (container,) = [
        c
        for c in deployment["spec"]["template"]["spec"]["containers"]
        if "helmdeck" in c["name"] or len(deployment["spec"]["template"]["spec"]["containers"]) == 1
    ]
    words = [*container.get("command", []), *container.get("args", [])]
    if words and words[0].endswith("helmdeck-operator"):
        words = words[1:]
    return [str(w) for w in words]


def operator_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The container's literal environment (log level, extraEnv), except the config path."""
    deployment = only(docs, "Deployment")
    env: dict[str, str] = {}
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        for item in container.get("env", []):
            if "value" in item and item["name"] != "HELMDECK_CONFIG":
                env[item["name"]] = str(item["value"])
    return env


def role_refs(docs: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [
        {
            "kind": d["kind"],
            "name": d["metadata"]["name"],
            **({"namespace": d["metadata"]["namespace"]} if d["kind"] == "Role" else {}),
        }
        for d in docs
        if d.get("kind") in ("ClusterRole", "Role")
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=REPO / ".local" / "e2e")
    parser.add_argument("--keep", action="store_true", help="leave the workdir (logs) in place")
    parser.add_argument("--post-render", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("pytest_args", nargs="*", help="after --: extra pytest arguments")
    args = parser.parse_args()
    if args.post_render:
        return post_render()

    workdir: Path = args.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    started = time.monotonic()

    log("building or reusing the control plane and helm")
    binaries = find_binaries()
    helm = build_helm()
    log(f"helm {run([str(helm), 'version', '--short']).stdout.strip()}")

    with (
        ControlPlane(state_dir=workdir / "cluster", binaries=binaries) as plane,
        EmulatorProcess(EMULATOR_ARGS) as emulator,
    ):
        log(f"control plane at {plane.server}; emulator at {emulator.address}")
        env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig)}
        values = workdir / "values.yaml"
        values.write_text(yaml.safe_dump(local_values(emulator.address), sort_keys=False))

        common = [RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(values)]
        rendered = run([str(helm), "template", *common], env=env).stdout
        (workdir / "rendered.yaml").write_text(rendered)
        docs = [d for d in yaml.safe_load_all(rendered) if isinstance(d, dict)]
        log("rendered: " + ", ".join(sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)))

        renderer = workdir / "post-render.sh"
        renderer.write_text(
            POST_RENDERER.format(python=sys.executable, script=Path(__file__).resolve())
        )
        renderer.chmod(0o755)
        plane.kubectl("create", "namespace", NAMESPACE)
        run(
            [str(helm), "install", *common, "--post-renderer", str(renderer)],
            env=env,
        )
        waited = plane.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s",
            "crd/helmdecksessions.helmdeck.dev", "crd/sessionpools.helmdeck.dev",
            "crd/sidecarpolicies.helmdeck.dev",
        )  # fmt: skip
        if waited.returncode != 0:
            raise SystemExit(f"CRDs not established: {waited.stderr}")
        installed = run([str(helm), "get", "manifest", RELEASE, "-n", NAMESPACE], env=env).stdout
        log(
            "installed by helm: "
            + ", ".join(
                sorted(
                    f"{d['kind']}/{d['metadata']['name']}"
                    for d in yaml.safe_load_all(installed)
                    if isinstance(d, dict)
                )
            )
        )

        config_path = workdir / "config.yaml"
        config_path.write_text(yaml.safe_dump(operator_config(docs), sort_keys=False))
        account = only(docs, "ServiceAccount")["metadata"]["name"]
        sa_kubeconfig = plane.serviceaccount_kubeconfig(
            NAMESPACE, account, workdir / "operator.kubeconfig", duration="2h"
        )
        state = {
            "config": str(config_path),
            "operator_kubeconfig": str(sa_kubeconfig),
            "operator_args": operator_args(docs),
            "operator_env": operator_env(docs),
            "operator_log": str(workdir / "operator.log"),
            "namespace": NAMESPACE,
            "release": RELEASE,
            "serviceaccount": account,
            "serviceaccount_user": f"system:serviceaccount:{NAMESPACE}:{account}",
            "roles": role_refs(docs),
        }
        state_path = workdir / "state.json"
        state_path.write_text(json.dumps(state, indent=2) + "\n")
        log(f"operator runs as {state['serviceaccount_user']}: {state['operator_args']}")

        pytest_argv = [
            sys.executable, "-m", "pytest", str(REPO / "e2e"),
            f"--kubeconfig={plane.kubeconfig}",
            f"--kubectl={binaries.kubectl}",
            f"--helm={helm}",
            f"--gateway-admin-url={emulator.admin_url}",
            f"--local-state={state_path}",
            f"--uninstall={RELEASE}",
            f"--release-namespace={NAMESPACE}",
            "--delete-crds",
            "--ready-timeout=60",
            "-p", "no:cacheprovider",
            *args.pytest_args,
        ]  # fmt: skip
        log("running the e2e suite")
        code = subprocess.call(pytest_argv, cwd=REPO)
        log(f"pytest exited {code}; operator log: {state['operator_log']}")
    log(f"done in {time.monotonic() - started:.0f}s")
    if code != 0 or args.keep:
        log(f"kept {workdir} (logs, rendered chart, state)")
    else:
        shutil.rmtree(workdir / "cluster", ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
