"""SidecarPolicy data for tests: the shipped family policies, builders of specs, the specs
several tests share, and the OpenShell `SandboxPolicy` messages the emulator tests send.

Specs are plain dicts as a user writes them (camelCase, the CRD's shape); every builder
returns a fresh one, so a test may edit what it gets.
"""

from __future__ import annotations

from typing import Any

import yaml
from openshell._proto import sandbox_pb2

from tests.support.repo import POLICY_DIR

__all__ = [
    "FAMILIES",
    "base_policy",
    "endpoint",
    "family_manifest",
    "family_spec",
    "files_rule",
    "node_spec",
    "pypi_rule",
    "pypi_spec",
    "rest",
    "rest_rule",
    "rule",
    "with_endpoint",
]

#: The session families, each with a shipped default policy (policies/<family>.yaml).
FAMILIES = ("browser", "node", "python", "vision")


def family_manifest(family: str) -> dict[str, Any]:
    """The shipped default SidecarPolicy manifest of one family."""
    manifest: dict[str, Any] = yaml.safe_load((POLICY_DIR / f"{family}.yaml").read_text())
    return manifest


def family_spec(family: str) -> dict[str, Any]:
    """The `spec` of a shipped family policy."""
    spec: dict[str, Any] = family_manifest(family)["spec"]
    return spec


# -- builders ------------------------------------------------------------------------------


def endpoint(
    host: str = "api.example.com", port: int | None = 443, **fields: Any
) -> dict[str, Any]:
    """An endpoint of a network rule: `host` on `port` (None: no port, for `ports` in
    `fields`), raw TCP unless `fields` say more."""
    return {"host": host, **({"port": port} if port is not None else {}), **fields}


def rest(host: str = "api.example.com", port: int = 443, **fields: Any) -> dict[str, Any]:
    """An inspected REST endpoint allowing read-only access; `fields` add or override."""
    return endpoint(host, port, **{"protocol": "rest", "access": "read-only", **fields})


def rule(name: str, *endpoints: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A network rule `name` over `endpoints` (`fields`: binaries, as written)."""
    return {"name": name, "endpoints": list(endpoints), **fields}


def with_endpoint(rule_name: str = "api", **fields: Any) -> dict[str, Any]:
    """A spec with one rule holding one endpoint: `host: api.example.com, port: 443`, with
    `fields` added or overriding those."""
    return {"network": [rule(rule_name, endpoint(**fields))]}


# -- specs several tests use -------------------------------------------------------------


def pypi_rule() -> dict[str, Any]:
    """Read-only REST to pypi.org."""
    return rule("pypi", rest("pypi.org"))


def files_rule() -> dict[str, Any]:
    """Read-only REST to files.pythonhosted.org: a rule to add to `pypi_spec` (a live change)."""
    return rule("files", rest("files.pythonhosted.org"))


def pypi_spec() -> dict[str, Any]:
    """A python session's policy: pypi.org, /usr read-only and /tmp writable, uid 1000."""
    return {
        "network": [pypi_rule()],
        "filesystem": {"readOnly": ["/usr"], "readWrite": ["/tmp"]},
        "process": {"runAsUser": "1000", "runAsGroup": "1000"},
    }


def node_spec() -> dict[str, Any]:
    """A node session's policy: the npm registry for /usr/bin/node only, uid 1000."""
    return {
        "network": [rule("npm", rest("registry.npmjs.org"), binaries=["/usr/bin/node"])],
        "process": {"runAsUser": "1000", "runAsGroup": "1000"},
    }


# -- OpenShell messages ------------------------------------------------------------------


def base_policy(
    *,
    include_workdir: bool = True,
    landlock: str = "best_effort",
    **network: sandbox_pb2.NetworkPolicyRule,
) -> sandbox_pb2.SandboxPolicy:
    """A typical SandboxPolicy: workdir + /usr read-only, /tmp writable, `landlock`
    compatibility, run as sandbox; `network` maps rule names to rules."""
    policy = sandbox_pb2.SandboxPolicy(
        version=1,
        filesystem=sandbox_pb2.FilesystemPolicy(
            include_workdir=include_workdir, read_only=["/usr"], read_write=["/tmp"]
        ),
        landlock=sandbox_pb2.LandlockPolicy(compatibility=landlock),
        process=sandbox_pb2.ProcessPolicy(run_as_user="sandbox", run_as_group="sandbox"),
    )
    for name, network_rule in network.items():
        policy.network_policies[name].CopyFrom(network_rule)
    return policy


def rest_rule(host: str, port: int = 443, protocol: str = "rest") -> sandbox_pb2.NetworkPolicyRule:
    """A rule named `host` for /usr/bin/node: read-only when `protocol` inspects requests."""
    return sandbox_pb2.NetworkPolicyRule(
        name=host,
        endpoints=[
            sandbox_pb2.NetworkEndpoint(
                host=host,
                port=port,
                protocol=protocol,
                # An inspected endpoint must allow something (the gateway's rule).
                access=sandbox_pb2.NETWORK_ACCESS_PRESET_READ_ONLY
                if protocol not in ("", "tcp")
                else sandbox_pb2.NETWORK_ACCESS_PRESET_UNSPECIFIED,
            )
        ],
        binaries=[sandbox_pb2.NetworkBinary(path="/usr/bin/node")],
    )
