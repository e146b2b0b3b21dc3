"""The HelmdeckSession view: spec model against the CRD, durations, expiry, sandbox shape.

The CRD is the source of truth and the pydantic model a typed view of it, so the model's
field names (camelCase), enums and defaults are checked against the CRD's `spec` schema.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from helmdeck_operator.config import FamilyDefaults, Resources
from helmdeck_operator.core.session import (
    SandboxShape,
    SessionMeta,
    SessionSpec,
    parse_duration,
    sandbox_shape,
    ttl_end,
)
from tests.support.builders import NOW, UID
from tests.support.schema import compare, crd_spec_schema, model_schema

# -- the model and the CRD agree -------------------------------------------------------


@pytest.fixture(scope="module")
def crd_spec() -> dict[str, Any]:
    return crd_spec_schema("helmdecksessions")


def problems(crd: dict[str, Any]) -> list[str]:
    """The walk of tests.support.schema; a model default that means the field's absence
    (None, [], "", a map of the CRD's defaults) needs no CRD default here."""
    schema, defs = model_schema(SessionSpec)
    return compare(crd, schema, defs, "spec", absent_defaults=True)


def test_session_spec_and_crd_agree_on_names_types_enums_and_defaults(
    crd_spec: dict[str, Any],
) -> None:
    assert problems(crd_spec) == []


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (
            lambda s: s["properties"]["lifetime"]["properties"]["onExpiry"].update(
                default="Retain"
            ),
            "spec.lifetime: the model defaults to {'ttl': None, 'onExpiry': 'Delete', "
            "'idleTimeout': None, 'onIdle': 'Suspend'}, the CRD not; "
            "spec.lifetime.onExpiry: default 'Retain' != 'Delete'",
        ),
        (
            lambda s: s["properties"]["lifetime"]["properties"]["onExpiry"].update(
                enum=["Delete", "Retain", "Archive"]
            ),
            "spec.lifetime.onExpiry: enum ['Delete', 'Retain', 'Archive'] != ['Delete', 'Retain']",
        ),
        (
            lambda s: s["properties"].update(priority={"type": "integer"}),
            "spec: fields ['command', 'env', 'family', 'gateway', 'image', 'lifetime', "
            "'policyRef', 'poolRef', 'ports', 'priority', 'providers', 'resources', 'suspend'] "
            "!= ['command', 'env', 'family', 'gateway', 'image', 'lifetime', 'policyRef', "
            "'poolRef', 'ports', 'providers', 'resources', 'suspend']",
        ),
        (
            lambda s: s["properties"]["env"]["items"]["properties"]["name"].update(type="integer"),
            "spec.env[].name: type {'integer'} != {'string'}",
        ),
        (
            lambda s: s["properties"]["policyRef"].update(required=[]),
            "spec.policyRef: required [] != ['name']",
        ),
    ],
    ids=["default", "enum", "field", "nested-type", "required"],
)
def test_the_walk_notices_a_disagreement(
    crd_spec: dict[str, Any], mutate: Any, problem: str
) -> None:
    drifted = yaml.safe_load(yaml.safe_dump(crd_spec))
    mutate(drifted)

    assert "; ".join(problems(drifted)) == problem


def test_a_spec_as_the_apiserver_stores_it_is_read_by_its_camel_case_names() -> None:
    spec = SessionSpec.model_validate(
        {
            "family": "node",
            "policyRef": {"name": "npm-only"},
            "lifetime": {"ttl": "30m", "onExpiry": "Retain"},
            "resources": {"cpu": "500m", "memory": 2147483648, "gpu": 1},
            "env": [{"name": "HELMDECK_MODE", "value": "headless"}, {"name": "EMPTY"}],
            "futureField": True,
        }
    )

    assert spec.policy_ref is not None
    assert spec.policy_ref.name == "npm-only"
    assert (spec.lifetime.ttl, spec.lifetime.on_expiry) == ("30m", "Retain")
    assert (spec.resources.cpu, spec.resources.memory) == ("500m", 2147483648)
    assert [(e.name, e.value) for e in spec.env] == [("HELMDECK_MODE", "headless"), ("EMPTY", "")]


def test_session_meta_reads_identity_from_the_object() -> None:
    meta = SessionMeta.from_body(
        {
            "metadata": {
                "namespace": "team-a",
                "name": "s1",
                "uid": UID,
                "generation": 4,
                "creationTimestamp": "2025-06-01T12:00:00Z",
            }
        }
    )

    assert (meta.namespace, meta.name, meta.uid, meta.generation) == ("team-a", "s1", UID, 4)
    assert meta.created_at == NOW


# -- durations and expiry ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2h45m30s", timedelta(hours=2, minutes=45, seconds=30)),
        ("90s", timedelta(seconds=90)),
        ("1.5h", timedelta(minutes=90)),
        ("0.5m", timedelta(seconds=30)),
        ("1h0.5m", timedelta(hours=1, seconds=30)),
        ("1500ms", timedelta(seconds=1.5)),
        ("250us", timedelta(microseconds=250)),
        ("250µs", timedelta(microseconds=250)),
        ("1500000ns", timedelta(microseconds=1500)),
        ("8760h", timedelta(days=365)),
        ("1m1m", timedelta(minutes=2)),
    ],
)
def test_parse_duration_reads_go_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "30", "m", "1d", "1h 30m", " 1h", "1h30", "-1h", "+1h", "1.h", ".5h", "1H", "1x"]
)
def test_parse_duration_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


@given(
    st.integers(0, 8760),
    st.integers(0, 59),
    st.integers(0, 59),
    st.integers(0, 999),
    st.permutations(["h", "m", "s", "ms"]),
)
def test_parse_duration_adds_its_parts_in_any_order(
    hours: int, minutes: int, seconds: int, millis: int, order: list[str]
) -> None:
    value = {"h": hours, "m": minutes, "s": seconds, "ms": millis}
    text = "".join(f"{value[unit]}{unit}" for unit in order)

    assert parse_duration(text) == timedelta(
        hours=hours, minutes=minutes, seconds=seconds, milliseconds=millis
    )


def test_expiry_is_creation_time_plus_the_ttl() -> None:
    meta = SessionMeta("ns", "s", UID, 1, NOW)
    spec = SessionSpec.model_validate({"family": "node", "lifetime": {"ttl": "1h30m"}})

    assert ttl_end(spec, meta) == NOW + timedelta(minutes=90)


def test_a_session_without_ttl_never_expires() -> None:
    meta = SessionMeta("ns", "s", UID, 1, NOW)

    assert ttl_end(SessionSpec.model_validate({"family": "node"}), meta) is None


# -- sandbox shape ----------------------------------------------------------------------

DEFAULTS = FamilyDefaults(
    image="ghcr.io/tosin2013/helmdeck-sidecar-node:0.9.0",
    command=("/usr/local/bin/helmdeck-sidecar",),
    resources=Resources(cpu="1", memory="1Gi", gpu=0),
    policy_file=Path("/policies/node.yaml"),
)


def shape(**spec: Any) -> SandboxShape:
    return sandbox_shape(SessionSpec.model_validate({"family": "node", **spec}), DEFAULTS)


def test_shape_takes_family_defaults_for_what_the_spec_leaves_out() -> None:
    assert shape() == SandboxShape(
        image="ghcr.io/tosin2013/helmdeck-sidecar-node:0.9.0",
        command=("/usr/local/bin/helmdeck-sidecar",),
        cpu="1",
        memory="1Gi",
        gpu=0,
        env=(),
        providers=(),
    )


def test_shape_takes_the_sessions_own_values_over_the_defaults() -> None:
    result = shape(
        image="ghcr.io/org/custom:2.0",
        command=["/bin/run", "--fast"],
        resources={"cpu": 2, "memory": "4Gi", "gpu": 1},
        env=[{"name": "A", "value": "1"}],
        providers=["github"],
    )

    assert result == SandboxShape(
        image="ghcr.io/org/custom:2.0",
        command=("/bin/run", "--fast"),
        cpu="2",
        memory="4Gi",
        gpu=1,
        env=(("A", "1"),),
        providers=("github",),
    )


def test_shape_takes_defaults_field_by_field() -> None:
    result = shape(resources={"memory": "2Gi"})

    assert (result.cpu, result.memory, result.gpu) == ("1", "2Gi", 0)


def test_a_zero_gpu_in_the_spec_is_kept_not_replaced_by_the_default() -> None:
    gpu_family = FamilyDefaults.model_validate({**DEFAULTS.model_dump(), "resources": {"gpu": 1}})
    spec = SessionSpec.model_validate({"family": "vision", "resources": {"gpu": 0}})

    assert sandbox_shape(spec, gpu_family).gpu == 0


def test_shape_digest_is_stable_and_short() -> None:
    assert shape().digest == shape().digest
    assert len(shape().digest) == 16
    assert int(shape().digest, 16) >= 0


def test_shape_digest_leaves_the_providers_out() -> None:
    """Providers are attached and detached on the live sandbox (core.providers): a change
    of them is no change of shape, and recreates nothing."""
    assert shape(providers=["github", "npm"]).digest == shape().digest


def test_a_shape_without_providers_keeps_the_digest_it_had_when_providers_counted() -> None:
    """The digest of sandboxes created while providers were part of the shape (with none,
    as most have): an upgrade must not see every such sandbox as changed."""
    assert shape().digest == "0abe718abbaaaf86"


def test_shape_digest_ignores_env_order() -> None:
    """env is a list-map keyed by name and reaches the sandbox as a mapping."""
    a, b = {"name": "A", "value": "1"}, {"name": "B", "value": "2"}

    assert shape(env=[a, b]).digest == shape(env=[b, a]).digest


def test_an_integer_cpu_and_its_string_spelling_are_the_same_shape() -> None:
    assert shape(resources={"cpu": 1}).digest == shape().digest


_CHANGED = {
    "image": "ghcr.io/org/other:1.0",
    "command": ("/bin/other",),
    "cpu": "2",
    "memory": "2Gi",
    "gpu": 1,
    "env": (("A", "1"),),
}


def test_every_shape_field_but_the_providers_has_a_change_below() -> None:
    assert {f.name for f in dataclasses.fields(SandboxShape)} == {*_CHANGED, "providers"}


@pytest.mark.parametrize("field", sorted(_CHANGED))
def test_shape_digest_changes_with_any_field(field: str) -> None:
    base = shape()

    assert dataclasses.replace(base, **{field: _CHANGED[field]}).digest != base.digest


def test_an_env_value_change_changes_the_digest() -> None:
    one = shape(env=[{"name": "A", "value": "1"}])

    assert shape(env=[{"name": "A", "value": "2"}]).digest != one.digest
