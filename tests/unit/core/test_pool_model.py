"""The SessionPool view: its spec model against the CRD, and the shape of its template.

The CRD is the source of truth and `PoolSpec` a typed view of it: names (camelCase),
types, enums and defaults must agree, and a template must resolve to the very shape a
session of the same fields resolves to (that equality is what lets a session claim).
"""

from __future__ import annotations

from typing import Any

from helmdeck_operator.config import FamilyDefaults, Resources
from helmdeck_operator.core.pool import PoolSpec
from helmdeck_operator.core.session import SessionSpec, sandbox_shape
from tests.support.schema import compare, crd_spec_schema, model_schema

DEFAULTS = FamilyDefaults(
    image="ghcr.io/x/python:1.0",
    command=("python", "-m", "server"),
    resources=Resources(cpu="1", memory="1Gi"),
    policy_file="policies/python.yaml",  # type: ignore[arg-type]
)


def test_pool_spec_and_crd_agree_on_names_types_enums_and_defaults() -> None:
    schema, defs = model_schema(PoolSpec)

    assert (
        compare(crd_spec_schema("sessionpools"), schema, defs, "spec", absent_defaults=True) == []
    )


def test_the_crd_defaults_are_the_models() -> None:
    spec = PoolSpec.model_validate({"family": "python"})

    assert (spec.replicas, spec.max_provisioning) == (1, 10)
    assert spec.baseline_policy_ref is None
    assert spec.gateway is None


def test_a_template_and_a_session_with_the_same_fields_have_one_shape() -> None:
    fields: dict[str, Any] = {
        "image": "ghcr.io/x/python:2.0",
        "resources": {"cpu": 2, "memory": "2Gi"},
        "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}],
        "providers": ["github"],
    }
    pool = PoolSpec.model_validate({"family": "python", "template": fields})
    session = SessionSpec.model_validate({"family": "python", **fields, "poolRef": {"name": "p"}})

    assert sandbox_shape(pool.template, DEFAULTS) == sandbox_shape(session, DEFAULTS)


def test_an_empty_template_is_the_family_default_shape() -> None:
    pool = PoolSpec.model_validate({"family": "python"})
    session = SessionSpec.model_validate({"family": "python"})

    assert sandbox_shape(pool.template, DEFAULTS).digest == sandbox_shape(session, DEFAULTS).digest
    assert sandbox_shape(pool.template, DEFAULTS).image == DEFAULTS.image
