"""kubectl against the local control plane (helmdeck_dev.controlplane) for tests: installing
CRDs, namespaces, and `Kube`, one namespace's objects as parsed dicts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helmdeck_dev.controlplane import ControlPlane
from helmdeck_dev.objects import phase

__all__ = ["Check", "Kube", "create_namespace", "delete_namespace", "install_crds"]

#: What `eventually` polls: a falsy value until the awaited state, then that state.
Check = Callable[[], Any]


def install_crds(plane: ControlPlane, path: Path) -> ControlPlane:
    """Apply the CRDs at `path` (a file or a folder) and wait until they are Established."""
    applied = plane.kubectl("apply", "-f", str(path))
    assert applied.returncode == 0, applied.stderr
    established = plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "-f", str(path)
    )
    assert established.returncode == 0, established.stderr
    return plane


def create_namespace(plane: ControlPlane, name: str) -> str:
    created = plane.kubectl("create", "namespace", name)
    assert created.returncode == 0, created.stderr
    return name


def delete_namespace(plane: ControlPlane, name: str) -> None:
    """Delete a namespace without waiting for its objects to go."""
    plane.kubectl("delete", "namespace", name, "--wait=false")


class Kube:
    """kubectl for one namespace, returning parsed objects."""

    def __init__(self, plane: ControlPlane, namespace: str) -> None:
        self.plane = plane
        self.namespace = namespace

    def apply(self, *objects: dict[str, Any]) -> None:
        items = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        result = self.plane.kubectl(
            "apply", "-n", self.namespace, "-f", "-", stdin=json.dumps(items)
        )
        assert result.returncode == 0, result.stderr

    def run(self, *args: str) -> str:
        result = self.plane.kubectl(*args, "-n", self.namespace)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        result = self.plane.kubectl("get", kind, name, "-n", self.namespace, "-o", "json")
        if result.returncode != 0:
            assert "NotFound" in result.stderr, result.stderr
            return None
        found: dict[str, Any] = json.loads(result.stdout)
        return found

    def list(self, kind: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.plane.kubectl_json("get", kind, "-n", self.namespace)[
            "items"
        ]
        return items

    def events(self, name: str) -> list[tuple[str, str]]:
        """(type, reason) of the Events on object `name`, oldest first."""
        listing = self.plane.kubectl_json(
            "get",
            "events",
            "-n",
            self.namespace,
            f"--field-selector=involvedObject.name={name}",
        )
        # Timestamps have second resolution; etcd's resourceVersion orders creations exactly.
        ordered = sorted(listing["items"], key=lambda e: int(e["metadata"]["resourceVersion"]))
        return [(e["type"], e["reason"]) for e in ordered]

    def when(self, kind: str, name: str, test: Callable[[dict[str, Any]], Any]) -> Check:
        """A check for `eventually`: object `name` once `test(obj)` holds."""
        return lambda: (obj := self.get(kind, name)) and test(obj) and obj

    def in_phase(self, name: str, wanted: str) -> Check:
        """A check for `eventually`: session `name` once its phase is `wanted`."""
        return self.when("hds", name, lambda obj: phase(obj) == wanted)
