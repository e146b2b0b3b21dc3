"""The pydantic spec model and the CRD's openAPIV3Schema describe the same spec.

The CRD is the single source of truth; the model restates it. This walks both side by side
(the model through its JSON schema, by alias) and compares, at every level: field names,
required sets, enums, defaults, types and every OpenAPI bound. A field added to one and not
the other, or a bound changed in one place only, fails here with the path.
"""

from __future__ import annotations

from typing import Any

from helmdeck_operator.policy import model

# OpenAPI keywords whose values must be equal on both sides.
_COMPARED = (
    "type",
    "enum",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "maxProperties",
)


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Follow a `$ref`, and take the non-null branch of an optional field's `anyOf`."""
    if "$ref" in schema:
        return _resolve(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "anyOf" in schema:
        (branch,) = [b for b in schema["anyOf"] if b.get("type") != "null"]
        return _resolve(branch, defs)
    return schema


def _compare(
    crd: dict[str, Any], field: dict[str, Any], defs: dict[str, Any], path: str
) -> list[str]:
    problems: list[str] = []
    # A field's default sits beside its anyOf/$ref, constraints inside it.
    py_default = field.get("default")
    schema = _resolve(field, defs)
    if crd.get("default") != py_default:
        problems.append(f"{path}: default {crd.get('default')!r} != {py_default!r}")
    for key in _COMPARED:
        if crd.get(key) != schema.get(key):
            problems.append(f"{path}: {key} {crd.get(key)!r} != {schema.get(key)!r}")
    if "properties" in crd or "properties" in schema:
        crd_props, py_props = crd.get("properties", {}), schema.get("properties", {})
        if set(crd_props) != set(py_props):
            problems.append(f"{path}: fields {sorted(crd_props)} != {sorted(py_props)}")
        if set(crd.get("required", [])) != set(schema.get("required", [])):
            problems.append(
                f"{path}: required {crd.get('required', [])} != {schema.get('required', [])}"
            )
        for name in sorted(set(crd_props) & set(py_props)):
            problems += _compare(crd_props[name], py_props[name], defs, f"{path}.{name}")
    if "items" in crd or "items" in schema:
        problems += _compare(crd.get("items", {}), schema.get("items", {}), defs, f"{path}[]")
    crd_extra, py_extra = crd.get("additionalProperties"), schema.get("additionalProperties")
    if isinstance(crd_extra, dict) or isinstance(py_extra, dict):
        problems += _compare(crd_extra or {}, py_extra or {}, defs, f"{path}{{}}")
    return problems


def test_model_and_crd_agree_at_every_level(crd_spec_schema: dict[str, Any]) -> None:
    py_schema = model.SidecarPolicySpec.model_json_schema(by_alias=True)

    assert _compare(crd_spec_schema, py_schema, py_schema.get("$defs", {}), "spec") == []


def test_the_walk_notices_a_disagreement(crd_spec_schema: dict[str, Any]) -> None:
    py_schema = model.SidecarPolicySpec.model_json_schema(by_alias=True)
    drifted = dict(crd_spec_schema, properties=dict(crd_spec_schema["properties"]))
    drifted["properties"]["staticChanges"] = dict(
        drifted["properties"]["staticChanges"], default="Recreate"
    )

    assert _compare(drifted, py_schema, py_schema["$defs"], "spec") == [
        "spec.staticChanges: default 'Recreate' != 'Reject'"
    ]


def test_every_set_list_of_the_crd_is_a_checked_set(crd_spec_schema: dict[str, Any]) -> None:
    """JSON schema cannot show the model's duplicate checks, so list the CRD's sets here;
    test_policy_model.test_set_lists_refuse_duplicates covers exactly these."""

    def sets(schema: dict[str, Any], path: str) -> list[str]:
        found = [path] if schema.get("x-kubernetes-list-type") == "set" else []
        for name, sub in schema.get("properties", {}).items():
            found += sets(sub, f"{path}.{name}")
        if "items" in schema:
            found += sets(schema["items"], f"{path}[]")
        return found

    assert sets(crd_spec_schema, "spec") == [
        "spec.network[].endpoints[].ports",
        "spec.network[].endpoints[].allowedIps",
        "spec.network[].binaries",
        "spec.filesystem.readOnly",
        "spec.filesystem.readWrite",
    ]
