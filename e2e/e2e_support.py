"""What the e2e tests share: kubectl with JSON, the emulator's admin API, object builders.

Plain Python and kubectl only: nothing from the helmdeck_operator package, so the suite
runs from a bare checkout of e2e/ with pytest installed.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from dataclasses import dataclass
from typing import Any
from urllib.request import urlopen

API = "helmdeck.dev/v1alpha1"
CRDS = (
    "helmdecksessions.helmdeck.dev",
    "sessionpools.helmdeck.dev",
    "sidecarpolicies.helmdeck.dev",
    "tenantpolicies.helmdeck.dev",
)
#: Label put on everything the suite creates, so a failed run can be cleaned up by hand:
#: kubectl delete ns -l helmdeck.dev/e2e=true
E2E_LABEL = "helmdeck.dev/e2e"


# -- kubectl --------------------------------------------------------------------------------


class KubectlError(RuntimeError):
    pass


@dataclass
class Kubectl:
    """kubectl against the cluster under test; JSON in, JSON out."""

    binary: str
    kubeconfig: str | None

    def run(
        self, *args: str, stdin: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        argv = [self.binary]
        if self.kubeconfig:
            argv.append(f"--kubeconfig={self.kubeconfig}")
        return subprocess.run(
            [*argv, *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )

    def ok(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        result = self.run(*args, stdin=stdin, timeout=timeout)
        if result.returncode != 0:
            raise KubectlError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "-o", "json"))

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        ns = ["-n", namespace] if namespace else []
        result = self.run("get", kind, name, *ns, "-o", "json")
        if result.returncode != 0:
            if "NotFound" in result.stderr or "not found" in result.stderr:
                return None
            raise KubectlError(f"kubectl get {kind} {name}: {result.stderr.strip()}")
        found: dict[str, Any] = json.loads(result.stdout)
        return found

    def apply(self, namespace: str, *objects: dict[str, Any]) -> None:
        items = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        self.ok("apply", "-n", namespace, "-f", "-", stdin=json.dumps(items))

    def patch(self, kind: str, name: str, namespace: str, patch: dict[str, Any]) -> None:
        self.ok("patch", kind, name, "-n", namespace, "--type=merge", "-p", json.dumps(patch))


@dataclass
class GatewayAdmin:
    """The OpenShell emulator's admin HTTP API (not part of OpenShell itself)."""

    url: str

    def sandboxes(self) -> list[dict[str, Any]]:
        with urlopen(f"{self.url.rstrip('/')}/snapshot", timeout=10) as response:
            snapshot: dict[str, Any] = json.loads(response.read())
        return list(snapshot["sandboxes"])

    def sandbox_of(self, session: dict[str, Any]) -> dict[str, Any] | None:
        uid = session["metadata"]["uid"]
        for sandbox in self.sandboxes():
            if (sandbox.get("labels") or {}).get("helmdeck.dev/session-uid") == uid:
                return sandbox
        return None


# -- object builders and accessors ----------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def session(name: str, family: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "HelmdeckSession",
        "metadata": {"name": name, "labels": {E2E_LABEL: "true"}},
        "spec": {"family": family, **spec},
    }


def policy(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "SidecarPolicy",
        "metadata": {"name": name, "labels": {E2E_LABEL: "true"}},
        "spec": spec,
    }


def status(obj: dict[str, Any] | None) -> dict[str, Any]:
    return dict((obj or {}).get("status") or {})


def phase(obj: dict[str, Any] | None) -> str | None:
    return status(obj).get("phase")


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in status(obj).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}
