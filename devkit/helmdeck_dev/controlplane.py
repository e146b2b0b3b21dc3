"""A real, local Kubernetes control plane: etcd, kube-apiserver and kube-controller-manager.

Integration tests, `make cluster` and `make demo` need the real apiserver (CRD schemas, CEL,
status subresources, finalizers, RBAC, watches), and this machine has no container runtime,
so the binaries are built from Go modules (hack/build-controlplane.sh) and run as plain
processes on loopback ports. Modelled on controller-runtime's envtest, plus the controller
manager so namespaces really delete, owner references are garbage-collected and
ServiceAccount tokens exist.

`ControlPlane` is the whole lifecycle; `register` adds `helmdeck-dev cluster up|down|
kubeconfig` for make. Startup failures name the binary and show the tail of its log.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helmdeck_dev.pki import TlsMaterial, generate_tls_material, write_signing_key

__all__ = [
    "Binaries",
    "ControlPlane",
    "ControlPlaneError",
    "find_binaries",
    "register",
]

#: The repository root, where hack/build-controlplane.sh lives (this module is only used from
#: a source checkout; the shipped operator never imports it).
REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-controlplane.sh"

#: The apiserver needs a few seconds for its post-start hooks (RBAC bootstrap policy above
#: all); a cold start on two busy cores has been seen near 20 s, so allow well beyond that.
START_TIMEOUT_S = 90.0
#: Graceful shutdown: etcd and the apiserver stop within a second or two on SIGTERM.
STOP_TIMEOUT_S = 10.0
#: Log lines shown when a component fails to start.
LOG_TAIL_LINES = 30
#: The in-cluster Service network; nothing routes to it here, the apiserver only needs one.
SERVICE_CIDR = "10.96.0.0/16"
ADMIN_USER = "helmdeck-admin"


class ControlPlaneError(RuntimeError):
    """A component failed to build, start or answer; the message says which and why."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the control-plane executables."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path | None
    kubectl: Path

    @classmethod
    def in_dir(cls, directory: Path) -> Binaries:
        kcm = directory / "kube-controller-manager"
        kubectl = directory / "kubectl"
        return cls(
            etcd=directory / "etcd",
            kube_apiserver=directory / "kube-apiserver",
            kube_controller_manager=kcm if kcm.exists() else None,
            # envtest asset directories carry kubectl; fall back to one on PATH otherwise.
            kubectl=kubectl if kubectl.exists() else Path(shutil.which("kubectl") or kubectl),
        )


def find_binaries() -> Binaries:
    """Build the binaries (or reuse the cache, or KUBEBUILDER_ASSETS) and return their paths."""
    if not BUILD_SCRIPT.exists():
        raise ControlPlaneError(f"{BUILD_SCRIPT} not found: run from a source checkout")
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ControlPlaneError(
            f"building the control plane failed (exit {result.returncode}):\n"
            + _tail(result.stderr)
        )
    return Binaries.in_dir(Path(result.stdout.strip().splitlines()[-1]))


def free_port() -> int:
    """A TCP port on loopback that is free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class _Process:
    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    pid: int | None = None

    def start(self, *, detach: bool) -> None:
        with self.log.open("ab") as log:
            # A new session keeps `make cluster` processes alive after the CLI exits and
            # keeps a test run's Ctrl-C from reaching them before teardown does.
            self.popen = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=detach,
            )
        self.pid = self.popen.pid

    def exited(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def failure(self, why: str) -> ControlPlaneError:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return ControlPlaneError(
            f"{self.name} {why}; last lines of {self.log}:\n{_tail(text) or '(empty log)'}"
        )


@dataclass
class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager) on loopback, with an admin kubeconfig.

    Usable as a context manager (tests) or started detached and stopped later from the
    state file it writes (`make cluster` / `make cluster-down`).
    """

    state_dir: Path
    binaries: Binaries
    with_controller_manager: bool = True
    detach: bool = False
    processes: list[_Process] = field(default_factory=list)
    apiserver_port: int = 0
    admin_token: str = ""
    etcd_url: str = ""

    def __post_init__(self) -> None:
        # Paths end up in flags and kubeconfigs read from other working directories.
        self.state_dir = self.state_dir.resolve()

    # -- paths ---------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "pki" / "ca.pem"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        pki = self.state_dir / "pki"
        tls = generate_tls_material(pki, days=30)
        signing_key = write_signing_key(pki / "sa.key")
        self.admin_token = secrets.token_urlsafe(32)
        tokens = pki / "tokens.csv"
        tokens.write_text(f"{self.admin_token},{ADMIN_USER},{ADMIN_USER},system:masters\n")
        tokens.chmod(0o600)
        try:
            self._start_etcd()
            self._start_apiserver(tls, signing_key, tokens)
            self._write_kubeconfig()
            if self.with_controller_manager and self.binaries.kube_controller_manager:
                self._start_controller_manager(tls, signing_key)
        except BaseException:
            self.stop()
            raise
        self._write_state()

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.pid is not None:
                _terminate(proc.pid, proc.popen)
        self.processes.clear()
        (self.state_dir / "state.json").unlink(missing_ok=True)

    # -- components ----------------------------------------------------------------------
    def _launch(self, name: str, argv: list[str]) -> None:
        proc = _Process(name, argv, self.state_dir / f"{name}.log")
        if not Path(argv[0]).exists():
            raise ControlPlaneError(f"{name}: binary {argv[0]} does not exist")
        proc.start(detach=self.detach)
        self.processes.append(proc)

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        data = self.state_dir / "etcd-data"
        shutil.rmtree(data, ignore_errors=True)
        self._launch(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=default",
                f"--data-dir={data}",
                f"--listen-client-urls=http://127.0.0.1:{client}",
                f"--advertise-client-urls=http://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self.etcd_url = f"http://127.0.0.1:{client}"
        self.wait_for(lambda: _http_ok(f"{self.etcd_url}/health"), "etcd reported healthy")

    def _start_apiserver(self, tls: TlsMaterial, signing_key: Path, tokens: Path) -> None:
        self.apiserver_port = free_port()
        self._launch(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--cert-dir={tls.ca_cert.parent}",
                f"--tls-cert-file={tls.server_cert}",
                f"--tls-private-key-file={tls.server_key}",
                f"--client-ca-file={tls.ca_cert}",
                f"--token-auth-file={tokens}",
                f"--service-account-key-file={signing_key}",
                f"--service-account-signing-key-file={signing_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--api-audiences=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                # Flow control adds work and latency a single-tenant test cluster never needs.
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--v=1",
            ],
        )
        self.wait_for(lambda: self._get("/readyz") is not None, "kube-apiserver became ready")

    def _start_controller_manager(self, tls: TlsMaterial, signing_key: Path) -> None:
        assert self.binaries.kube_controller_manager is not None
        self._launch(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={self.kubeconfig}",
                "--controllers=garbage-collector-controller,namespace-controller,"
                "serviceaccount-controller,serviceaccount-token-controller",
                "--leader-elect=false",
                f"--root-ca-file={tls.ca_cert}",
                f"--service-account-private-key-file={signing_key}",
                "--use-service-account-credentials=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--v=1",
            ],
        )
        # The controller manager has no readiness of its own worth waiting on: the
        # `default` ServiceAccount appearing proves its controllers run.
        self.wait_for(
            lambda: self._get("/api/v1/namespaces/default/serviceaccounts/default") is not None,
            "kube-controller-manager created the default ServiceAccount",
        )

    # -- helpers for tests ---------------------------------------------------------------
    def _get(self, path: str) -> bytes | None:
        request = urllib.request.Request(
            self.server + path, headers={"Authorization": f"Bearer {self.admin_token}"}
        )
        context = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
                body: bytes = response.read()
                return body
        except (urllib.error.URLError, OSError):
            return None

    def wait_for(
        self, check: Callable[[], bool], what: str, timeout: float = START_TIMEOUT_S
    ) -> None:
        """Poll `check` until true; fail naming the component if any process exits first."""
        deadline = time.monotonic() + timeout
        while not check():
            for proc in self.processes:
                code = proc.exited()
                if code is not None:
                    raise proc.failure(f"exited with code {code} before {what}")
            if time.monotonic() > deadline:
                raise self.processes[-1].failure(f"timed out after {timeout:.0f}s before {what}")
            time.sleep(0.1)

    def kubectl(
        self, *args: str, kubeconfig: Path | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; never raises on a non-zero exit."""
        return subprocess.run(
            [str(self.binaries.kubectl), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    def kubectl_json(self, *args: str, kubeconfig: Path | None = None) -> Any:
        """Run kubectl with `-o json` and parse the result; raise on a non-zero exit."""
        result = self.kubectl(*args, "-o", "json", kubeconfig=kubeconfig)
        if result.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return json.loads(result.stdout)

    def serviceaccount_kubeconfig(
        self, namespace: str, name: str, path: Path, *, duration: str = "1h"
    ) -> Path:
        """A kubeconfig acting as ServiceAccount namespace/name, via the TokenRequest API."""
        result = self.kubectl("create", "token", name, "-n", namespace, f"--duration={duration}")
        if result.returncode != 0:
            raise ControlPlaneError(f"TokenRequest for {namespace}/{name}: {result.stderr}")
        _write_kubeconfig(
            path, self.server, self.ca_file, f"{namespace}-{name}", result.stdout.strip()
        )
        return path

    def _write_kubeconfig(self) -> None:
        _write_kubeconfig(self.kubeconfig, self.server, self.ca_file, ADMIN_USER, self.admin_token)

    def _write_state(self) -> None:
        state = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "processes": [
                {"name": p.name, "pid": p.pid, "argv0": p.argv[0]} for p in self.processes
            ],
        }
        (self.state_dir / "state.json").write_text(json.dumps(state, indent=2) + "\n")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _terminate(pid: int, popen: subprocess.Popen[bytes] | None) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if popen is not None:
            if popen.poll() is not None:
                return
        elif not _alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if popen is not None:
        popen.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    with contextlib.suppress(OSError):
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    return True


def _write_kubeconfig(path: Path, server: str, ca: Path, user: str, token: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "helmdeck-local",
                "cluster": {"server": server, "certificate-authority": str(ca)},
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "helmdeck-local", "user": user}}],
        "current-context": user,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)


# -- CLI: `helmdeck-dev cluster up|down|kubeconfig` -------------------------------------


def _load_state(state_dir: Path) -> dict[str, object] | None:
    path = state_dir / "state.json"
    if not path.exists():
        return None
    loaded: dict[str, object] = json.loads(path.read_text())
    return loaded


def _pid_matches(pid: int, argv0: str) -> bool:
    """Guard against signalling a recycled pid that is no longer our process."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return False
    return cmdline == argv0


def cluster_up(state_dir: Path, *, with_controller_manager: bool = True) -> int:
    state = _load_state(state_dir)
    if state is not None:
        procs = state.get("processes", [])
        assert isinstance(procs, list)
        if all(_pid_matches(p["pid"], p["argv0"]) for p in procs):
            print(
                f"cluster already running at {state['server']}; kubeconfig: {state['kubeconfig']}"
            )
            return 0
        cluster_down(state_dir)
    started = time.monotonic()
    plane = ControlPlane(
        state_dir=state_dir,
        binaries=find_binaries(),
        with_controller_manager=with_controller_manager,
        detach=True,
    )
    plane.start()
    print(
        f"cluster up in {time.monotonic() - started:.1f}s at {plane.server}\n"
        f"  export KUBECONFIG={plane.kubeconfig}\n"
        f"  logs: {state_dir}/*.log; stop with `make cluster-down`"
    )
    return 0


def cluster_down(state_dir: Path) -> int:
    state = _load_state(state_dir)
    if state is None:
        print(f"no cluster recorded in {state_dir}")
        return 0
    procs = state.get("processes", [])
    assert isinstance(procs, list)
    for proc in reversed(procs):
        if _pid_matches(proc["pid"], proc["argv0"]):
            _terminate(proc["pid"], None)
    (state_dir / "state.json").unlink(missing_ok=True)
    shutil.rmtree(state_dir / "etcd-data", ignore_errors=True)
    print(f"cluster in {state_dir} stopped")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "cluster", help="start or stop the local development control plane (from a checkout)"
    )
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--state-dir", type=Path, default=Path(".local/cluster"))
    parser.add_argument(
        "--no-controller-manager",
        action="store_true",
        help="run without kube-controller-manager (no namespace deletion, GC or SA tokens)",
    )

    def run(args: argparse.Namespace) -> int:
        try:
            if args.action == "up":
                return cluster_up(
                    args.state_dir, with_controller_manager=not args.no_controller_manager
                )
            return cluster_down(args.state_dir)
        except ControlPlaneError as err:
            print(f"error: {err}")
            return 1

    parser.set_defaults(handler=run)
