"""The CRDs' schemas for tests: loading a kind's `spec` schema, walking a schema, and the
walk that compares a CRD's schema with the pydantic model that restates it.

The CRD is the source of truth and a model a typed view of it, so `compare` walks both side
by side (the model through its JSON schema, by alias) and lists every disagreement with its
path: field names, required sets, types, enums, defaults, and the OpenAPI bounds asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml
from pydantic import BaseModel

from tests.support.repo import CRD_DIR

__all__ = ["BOUNDS", "compare", "crd_spec_schema", "model_schema", "walk"]

#: The OpenAPI bounds a model can restate (`compare(bounds=BOUNDS)` checks them all).
BOUNDS = (
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "maxProperties",
)


def crd_spec_schema(plural: str) -> dict[str, Any]:
    """The openAPIV3Schema of `spec` of crds/<plural>.helmdeck.dev.yaml, as the apiserver is
    given it (the CRD serves exactly one version)."""
    crd = yaml.safe_load((CRD_DIR / f"{plural}.helmdeck.dev.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    spec: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return spec


def walk(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every node of an OpenAPI schema with its path, parents first: `.name` for a property,
    `[]` for list items, `{}` for map values."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        yield from walk(extra, f"{path}{{}}")


def model_schema(model: type[BaseModel]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A model's JSON schema by alias (the CRD's camelCase names), and its `$defs`."""
    schema = model.model_json_schema(by_alias=True)
    return schema, schema.get("$defs", {})


def compare(
    crd: dict[str, Any],
    field: dict[str, Any],
    defs: dict[str, Any],
    path: str,
    *,
    bounds: tuple[str, ...] = (),
    absent_defaults: bool = False,
) -> list[str]:
    """What differs between the CRD schema `crd` and the model's JSON schema `field`, at
    `path` and below. `bounds` are the OpenAPI keywords compared besides type and enum. With
    `absent_defaults`, a model default that means what leaving the field out means (None,
    [], "", or a map of the CRD's own defaults) needs no default in the CRD; without it, a
    model default the CRD does not have is a difference."""
    problems: list[str] = []
    # A field's default sits beside its anyOf/$ref, its type and constraints inside.
    py_default = field.get("default")
    if "default" in crd:
        if py_default != crd["default"]:
            problems.append(f"{path}: default {crd['default']!r} != {py_default!r}")
    elif py_default is not None and not (absent_defaults and _means_absent(crd, py_default)):
        problems.append(f"{path}: the model defaults to {py_default!r}, the CRD not")
    branches = _branches(field, defs)
    if _crd_types(crd) != _types(branches):
        problems.append(f"{path}: type {_crd_types(crd)} != {_types(branches)}")
    schema = branches[0] if branches else {}
    for key in ("enum", *bounds):
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
            problems += compare(
                crd_props[name],
                py_props[name],
                defs,
                f"{path}.{name}",
                bounds=bounds,
                absent_defaults=absent_defaults,
            )
    if "items" in crd or "items" in schema:
        problems += compare(
            crd.get("items", {}),
            schema.get("items", {}),
            defs,
            f"{path}[]",
            bounds=bounds,
            absent_defaults=absent_defaults,
        )
    crd_extra, py_extra = crd.get("additionalProperties"), schema.get("additionalProperties")
    if isinstance(crd_extra, dict) or isinstance(py_extra, dict):
        problems += compare(
            crd_extra or {},
            py_extra or {},
            defs,
            f"{path}{{}}",
            bounds=bounds,
            absent_defaults=absent_defaults,
        )
    return problems


def _branches(field: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    """The schemas a model field takes, `$ref`s followed, `null` (an optional field's
    absence) left out."""
    if "$ref" in field:
        return _branches(defs[field["$ref"].rsplit("/", 1)[-1]], defs)
    if "anyOf" in field:
        return [schema for branch in field["anyOf"] for schema in _branches(branch, defs)]
    return [] if field.get("type") == "null" else [field]


def _types(branches: list[dict[str, Any]]) -> set[str]:
    return {branch.get("type", "?") for branch in branches}


def _crd_types(schema: dict[str, Any]) -> set[str]:
    if schema.get("x-kubernetes-int-or-string"):
        return {"integer", "string"}
    return {schema.get("type", "?")}


def _means_absent(crd: dict[str, Any], value: Any) -> bool:
    """A model default that means what leaving the field out of the CRD object means."""
    if value is None or value in ([], ""):
        return True
    if isinstance(value, dict):
        props = crd.get("properties", {})
        return all(
            v == props[k]["default"] if "default" in props.get(k, {}) else _means_absent({}, v)
            for k, v in value.items()
        )
    return False
