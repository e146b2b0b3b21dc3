"""The pydantic spec model and the CRD's openAPIV3Schema describe the same spec.

The CRD is the single source of truth; the model restates it. This walks both side by side
(the model through its JSON schema, by alias) and compares, at every level: field names,
required sets, enums, defaults, types and every OpenAPI bound. A field added to one and not
the other, or a bound changed in one place only, fails here with the path.
"""

from __future__ import annotations

from typing import Any

from helmdeck_operator.policy import model
from tests.support.schema import BOUNDS, compare, model_schema, walk


def problems(crd: dict[str, Any]) -> list[str]:
    """The walk of tests.support.schema with every OpenAPI bound compared, and no model
    default the CRD does not have."""
    schema, defs = model_schema(model.SidecarPolicySpec)
    return compare(crd, schema, defs, "spec", bounds=BOUNDS)


def test_model_and_crd_agree_at_every_level(crd_spec_schema: dict[str, Any]) -> None:
    assert problems(crd_spec_schema) == []


def test_the_walk_notices_a_disagreement(crd_spec_schema: dict[str, Any]) -> None:
    drifted = dict(crd_spec_schema, properties=dict(crd_spec_schema["properties"]))
    drifted["properties"]["staticChanges"] = dict(
        drifted["properties"]["staticChanges"], default="Recreate"
    )

    assert problems(drifted) == ["spec.staticChanges: default 'Recreate' != 'Reject'"]


def test_every_set_list_of_the_crd_is_a_checked_set(crd_spec_schema: dict[str, Any]) -> None:
    """JSON schema cannot show the model's duplicate checks, so list the CRD's sets here;
    test_policy_model.test_set_lists_refuse_duplicates covers exactly these."""
    sets = [
        path
        for path, node in walk(crd_spec_schema, "spec")
        if node.get("x-kubernetes-list-type") == "set"
    ]

    assert sets == [
        "spec.network[].endpoints[].ports",
        "spec.network[].endpoints[].allowedIps",
        "spec.network[].binaries",
        "spec.filesystem.readOnly",
        "spec.filesystem.readWrite",
    ]
