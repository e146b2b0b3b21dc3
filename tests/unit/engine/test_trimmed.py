"""What kopf's index keeps of an object: identity, spec, status; interned, equal in value."""

from __future__ import annotations

import json
from typing import Any

from helmdeck_operator.handlers import trimmed


def decoded(uid: str) -> dict[str, Any]:
    return json.loads(  # type: ignore[no-any-return]
        json.dumps(
            {
                "apiVersion": "helmdeck.dev/v1alpha1",
                "kind": "HelmdeckSession",
                "metadata": {
                    "name": "s1",
                    "namespace": "team",
                    "uid": uid,
                    "resourceVersion": "7",
                    "generation": 2,
                    "finalizers": ["helmdeck.dev/sandbox-cleanup"],
                    "labels": {"helmdeck.dev/run-id": "run-1"},
                    "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                    "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
                },
                "spec": {"family": "python", "policyRef": {"name": "p"}},
                "status": {
                    "phase": "Ready",
                    "conditions": [{"type": "Ready", "status": "True", "message": "x" * 40}],
                },
            }
        )
    )


def test_only_identity_spec_and_status_are_kept_and_equal_in_value() -> None:
    raw = decoded("6f1c2a9e-0d6b-4c1e-9a55-3b7f2e8d1c40")

    kept = trimmed(raw)

    assert kept == {
        "metadata": {
            "name": "s1",
            "namespace": "team",
            "uid": "6f1c2a9e-0d6b-4c1e-9a55-3b7f2e8d1c40",
            "generation": 2,
            "resourceVersion": "7",
            "finalizers": ["helmdeck.dev/sandbox-cleanup"],
            "labels": {"helmdeck.dev/run-id": "run-1"},  # copied onto the sandbox
        },
        "spec": raw["spec"],
        "status": raw["status"],
    }


def test_field_names_and_short_values_are_shared_between_objects() -> None:
    one = trimmed(decoded("11111111-1111-1111-1111-111111111111"))
    two = trimmed(decoded("22222222-2222-2222-2222-222222222222"))

    [key_one] = [k for k in one["status"] if k == "phase"]
    [key_two] = [k for k in two["status"] if k == "phase"]
    assert key_one is key_two
    assert one["status"]["phase"] is two["status"]["phase"]
    long_one = one["status"]["conditions"][0]["message"]
    assert long_one == two["status"]["conditions"][0]["message"]
    assert long_one is not two["status"]["conditions"][0]["message"]  # not worth a table entry
