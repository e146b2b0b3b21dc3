"""Revisions name a policy's meaning: equal policies, equal revisions; any change, a new one."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from openshell._proto import sandbox_pb2

from helmdeck_operator.policy import canonical, revision, translate
from tests.support.policies import endpoint, rule

SPEC: dict[str, Any] = {
    "network": [
        rule(
            "npm",
            endpoint(
                "registry.npmjs.org",
                None,
                ports=[443, 8443],
                allowedIps=["1.1.1.1", "2.2.2.2"],
            ),
            binaries=["/usr/bin/node", "/usr/local/bin/node"],
        ),
        rule("git", endpoint("github.com", 22)),
    ],
    "filesystem": {"readOnly": ["/usr", "/etc"], "readWrite": ["/tmp", "/home/helmdeck"]},
}

#: SPEC as written in another order: rules, set lists and keys (so written out in full).
REORDERED = {
    "filesystem": {"readWrite": ["/home/helmdeck", "/tmp"], "readOnly": ["/etc", "/usr"]},
    "network": [
        {"endpoints": [{"port": 22, "host": "github.com"}], "name": "git"},
        {
            "binaries": ["/usr/local/bin/node", "/usr/bin/node"],
            "endpoints": [
                {
                    "allowedIps": ["2.2.2.2", "1.1.1.1"],
                    "ports": [8443, 443],
                    "host": "registry.npmjs.org",
                }
            ],
            "name": "npm",
        },
    ],
}


def test_a_revision_is_the_sha256_of_the_canonical_deterministic_bytes() -> None:
    policy = translate.to_sandbox_policy(SPEC)
    digest = hashlib.sha256(policy.SerializeToString(deterministic=True)).hexdigest()

    assert revision.revision(policy) == f"sha256:{digest}"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", revision.revision(policy))


def test_order_of_rules_set_lists_and_keys_does_not_change_the_revision() -> None:
    assert revision.revision(translate.to_sandbox_policy(SPEC)) == revision.revision(
        translate.to_sandbox_policy(REORDERED)
    )


def test_a_non_canonical_message_has_the_revision_of_its_canonical_form() -> None:
    messy = sandbox_pb2.SandboxPolicy(
        version=1,
        filesystem=sandbox_pb2.FilesystemPolicy(read_only=["/usr", "/etc"]),
        network_policies={
            "x": sandbox_pb2.NetworkPolicyRule(
                name="x",
                endpoints=[sandbox_pb2.NetworkEndpoint(host="a.b.c", protocol="tcp", ports=[2, 1])],
            )
        },
    )

    assert revision.revision(messy) == revision.revision(canonical.canonicalize(messy))


def test_any_change_of_meaning_changes_the_revision() -> None:
    base = revision.revision(translate.to_sandbox_policy(SPEC))
    changed = [
        {**SPEC, "filesystem": {"readOnly": ["/usr"], "readWrite": ["/tmp", "/home/helmdeck"]}},
        {**SPEC, "network": SPEC["network"][:1]},
        {**SPEC, "landlock": {"compatibility": "hard_requirement"}},
        {**SPEC, "process": {"runAsUser": "1000"}},
    ]

    revisions = {revision.revision(translate.to_sandbox_policy(spec)) for spec in changed}

    assert base not in revisions
    assert len(revisions) == len(changed)


def test_operator_settings_do_not_change_the_revision() -> None:
    assert revision.revision(
        translate.to_sandbox_policy(
            {**SPEC, "staticChanges": "Recreate", "rollout": {"maxUnavailable": 3}}
        )
    ) == revision.revision(translate.to_sandbox_policy(SPEC))
