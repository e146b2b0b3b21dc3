"""Looking at operator replicas from outside: their probes and who holds the leader Lease."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from helmdeck_dev.controlplane import ControlPlane

__all__ = ["holder", "probe"]


def probe(port: int, path: str) -> tuple[int, str]:
    """(HTTP status, body) of a replica's probe endpoint; (0, "") when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except (urllib.error.URLError, OSError):
        return 0, ""


def holder(cluster: ControlPlane, namespace: str) -> str:
    """The identity holding the operator's Lease in `namespace` ("" when none)."""
    result = cluster.kubectl("get", "lease", "helmdeck-operator", "-n", namespace, "-o", "json")
    if result.returncode != 0:
        return ""
    return str(json.loads(result.stdout)["spec"].get("holderIdentity") or "")
