"""The Kubernetes edge's pure parts: reading a resourceVersion from an answer without
parsing it, and the one translation of apiserver errors."""

from __future__ import annotations

import json

import pytest

from helmdeck_operator.kube import KubeConflict, KubeError, _raise_for, _version

ANSWER = {
    "apiVersion": "helmdeck.dev/v1alpha1",
    "kind": "HelmdeckSession",
    "metadata": {
        "creationTimestamp": "2026-11-30T08:00:00Z",
        "finalizers": ["helmdeck.dev/sandbox-cleanup"],
        "generation": 1,
        "managedFields": [
            {
                "apiVersion": "helmdeck.dev/v1alpha1",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:status": {"f:phase": {}}},
                "manager": "helmdeck-operator",
                "operation": "Update",
                "subresource": "status",
                "time": "2026-11-30T08:00:01Z",
            }
        ],
        "name": "s1",
        "namespace": "team",
        "resourceVersion": "48213",
        "uid": "6f1c2a9e-0d6b-4c1e-9a55-3b7f2e8d1c40",
    },
    "spec": {"family": "python"},
    "status": {"phase": "Ready", "policy": {"note": '"resourceVersion":"1"'}},
}


@pytest.mark.parametrize("spaced", [False, True])
def test_the_objects_own_resource_version_is_read_from_the_bytes(spaced: bool) -> None:
    raw = json.dumps(ANSWER, separators=(", ", ": ") if spaced else (",", ":")).encode()
    assert _version(raw) == "48213"


def test_no_answer_means_the_object_is_gone() -> None:
    assert _version(None) is None


def test_an_answer_without_the_field_is_parsed() -> None:
    assert _version(json.dumps({"metadata": {}}).encode()) == ""


def test_apiserver_errors_are_translated_once() -> None:
    _raise_for(404, "not found", "reading x", missing_ok=True)  # gone: no error
    with pytest.raises(KubeError, match="reading x: not found") as err:
        _raise_for(404, "not found", "reading x")
    assert not isinstance(err.value, KubeConflict)
    with pytest.raises(KubeConflict, match="writing x: changed"):
        _raise_for(409, "changed", "writing x")
    with pytest.raises(KubeConflict):
        _raise_for(422, "test failed", "removing", conflicts=(409, 422))
    with pytest.raises(KubeError, match="HTTP 500"):
        _raise_for(500, "", "writing x")
