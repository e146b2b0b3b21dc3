"""`core.tenancy`: which rules a namespace is under, what a sandbox asks for, every rule an
ask or a SidecarPolicy breaks, the namespace totals, and Kubernetes quantities.

Each refusal must name the field it is about and say the rule, the bound and the fix, so
the tables below assert the field path and the words of every message.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helmdeck_operator.config import FamilyDefaults, Resources, TenancyFallback
from helmdeck_operator.core.session import SandboxTemplate, SessionSpec, sandbox_shape
from helmdeck_operator.core.tenancy import (
    DEFAULT_POLICY,
    LABEL_TENANT_POLICY,
    OPEN,
    SAFE_DEFAULT,
    Ask,
    Selected,
    TenantRules,
    Unresolved,
    Usage,
    Violation,
    ask_of,
    over_quota,
    parse_quantity,
    policy_refusal,
    policy_violations,
    refusal,
    select_rules,
    violations,
)
from tests.support.schema import compare, crd_spec_schema, model_schema

GiB = Decimal(2) ** 30

DEFAULTS = FamilyDefaults(
    image="ghcr.io/tosin2013/helmdeck-sidecar-python:0.9.0",
    command=("/usr/local/bin/helmdeck-sidecar",),
    resources=Resources(cpu="1", memory="2Gi", gpu=0),
    policy_file=Path("/policies/python.yaml"),
)

#: The tests' strict tenant, as the platform team writes it (camelCase, as stored).
STRICT_SPEC: dict[str, Any] = {
    "gateways": ["pods", "vm"],
    "imagePrefixes": ["registry.example.com/agents/", "ghcr.io/platform/"],
    "providers": ["github"],
    "perSession": {"cpu": "2", "memory": "4Gi", "gpu": 1, "ports": 2},
    "perNamespace": {"sessions": 3, "cpu": "4", "memory": "8Gi", "gpu": 1},
    "policy": {"allowAudit": False, "allowTlsSkip": False},
}
STRICT = Selected("TenantPolicy strict", TenantRules.model_validate(STRICT_SPEC))


def ask(**overrides: Any) -> Ask:
    """A sandbox within every STRICT rule; `overrides` break one."""
    values: dict[str, Any] = {
        "gateway": "pods",
        "image": None,
        "providers": (),
        "cpu": "1",
        "memory": "1Gi",
        "gpu": 0,
        "ports": 1,
    }
    values.update(overrides)
    return Ask(**values)


def under(**spec: Any) -> Selected:
    return Selected("TenantPolicy t", TenantRules.model_validate(spec))


# -- the model ------------------------------------------------------------------------


def test_the_rules_model_and_the_crd_agree_on_names_types_and_defaults() -> None:
    schema, defs = model_schema(TenantRules)

    assert (
        compare(crd_spec_schema("tenantpolicies"), schema, defs, "spec", absent_defaults=True) == []
    )


def test_a_stored_spec_is_read_by_its_camel_case_names() -> None:
    rules = STRICT.rules

    assert rules.gateways == ("pods", "vm")
    assert rules.image_prefixes == ("registry.example.com/agents/", "ghcr.io/platform/")
    assert rules.providers == ("github",)
    assert (rules.per_session.cpu, rules.per_session.memory) == ("2", "4Gi")
    assert (rules.per_session.gpu, rules.per_session.ports) == (1, 2)
    assert rules.per_namespace.sessions == 3
    assert not rules.policy.allow_audit
    assert not rules.policy.allow_tls_skip


def test_absent_fields_allow_anything_and_fields_of_a_newer_crd_are_ignored() -> None:
    rules = TenantRules.model_validate({"somethingNew": {"x": 1}})

    assert rules.gateways is rules.image_prefixes is rules.providers is None
    assert rules.per_session.cpu is rules.per_namespace.sessions is None
    # ... except the policy modes, which the CRD defaults to false.
    assert not rules.policy.allow_audit
    assert not rules.policy.allow_tls_skip


def test_open_has_no_rule_at_all() -> None:
    assert violations(Selected("no TenantPolicy", OPEN), ask(image="any/thing", cpu="64")) == ()
    assert OPEN.policy.allow_audit
    assert OPEN.policy.allow_tls_skip
    assert over_quota(Selected("no TenantPolicy", OPEN), Usage(sessions=10**6), ask()) is None


def test_the_safe_default_allows_only_the_family_images_no_providers_and_modest_sizes() -> None:
    assert SAFE_DEFAULT.image_prefixes == ()
    assert SAFE_DEFAULT.providers == ()
    assert SAFE_DEFAULT.gateways is None
    per = SAFE_DEFAULT.per_session
    assert (per.cpu, per.memory, per.gpu, per.ports) == ("4", "8Gi", 0, 8)
    assert not SAFE_DEFAULT.policy.allow_audit
    assert not SAFE_DEFAULT.policy.allow_tls_skip
    # No totals: the chart's `default` TenantPolicy sets those.
    assert SAFE_DEFAULT.per_namespace == TenantRules().per_namespace


# -- select_rules ---------------------------------------------------------------------

TEAM = TenantRules.model_validate({"gateways": ["pods"]})
DEFAULT = TenantRules.model_validate({"providers": []})


@pytest.mark.parametrize(
    ("labels", "policies", "fallback", "name", "rules"),
    [
        pytest.param(
            {LABEL_TENANT_POLICY: "team"},
            {"team": TEAM, DEFAULT_POLICY: DEFAULT},
            TenancyFallback.SAFE,
            "TenantPolicy team",
            TEAM,
            id="label-names-an-existing-policy",
        ),
        pytest.param(
            {"other": "label"},
            {"team": TEAM, DEFAULT_POLICY: DEFAULT},
            TenancyFallback.OPEN,
            "TenantPolicy default",
            DEFAULT,
            id="no-label-gets-default",
        ),
        pytest.param(
            None,
            {DEFAULT_POLICY: DEFAULT},
            TenancyFallback.SAFE,
            "TenantPolicy default",
            DEFAULT,
            id="unknown-namespace-gets-default",
        ),
        pytest.param(
            {},
            {"team": TEAM},
            TenancyFallback.SAFE,
            "the operator's built-in default tenancy rules",
            SAFE_DEFAULT,
            id="no-default-fallback-safe",
        ),
        pytest.param(
            {},
            {"team": TEAM},
            TenancyFallback.OPEN,
            "no TenantPolicy",
            OPEN,
            id="no-default-fallback-open",
        ),
        pytest.param(
            None,
            {},
            TenancyFallback.SAFE,
            "the operator's built-in default tenancy rules",
            SAFE_DEFAULT,
            id="nothing-at-all-fallback-safe",
        ),
    ],
)
def test_select_rules(
    labels: dict[str, str] | None,
    policies: dict[str, TenantRules],
    fallback: TenancyFallback,
    name: str,
    rules: TenantRules,
) -> None:
    assert select_rules("team-a", labels, policies.get, fallback) == Selected(name, rules)


def test_the_fallback_is_open_unless_configured() -> None:
    assert select_rules("team-a", {}, {}.get) == Selected("no TenantPolicy", OPEN)


@pytest.mark.parametrize("fallback", list(TenancyFallback))
@pytest.mark.parametrize("named", ["missing", ""])
def test_a_label_naming_a_missing_policy_allows_nothing_whatever_else_exists(
    named: str, fallback: TenancyFallback
) -> None:
    """Not the default, not the fallback: the platform team meant another policy."""
    found = select_rules(
        "team-a",
        {LABEL_TENANT_POLICY: named},
        {DEFAULT_POLICY: DEFAULT, "team": TEAM}.get,
        fallback,
    )

    assert isinstance(found, Unresolved)
    for words in (
        "namespace team-a",
        f"TenantPolicy {named} ",
        f"(label {LABEL_TENANT_POLICY})",
        "does not exist",
        "nothing is allowed",
    ):
        assert words in found.message
    assert refusal(found, ask()) == found.message
    assert policy_refusal(found, {}) == found.message


# -- ask_of ---------------------------------------------------------------------------


def test_an_ask_takes_the_family_defaults_for_what_the_spec_leaves_out() -> None:
    spec = SessionSpec.model_validate({"family": "python"})

    assert ask_of(spec, sandbox_shape(spec, DEFAULTS), "pods") == Ask(
        gateway="pods", image=None, providers=(), cpu="1", memory="2Gi", gpu=0, ports=0
    )


def test_an_ask_takes_the_specs_own_values() -> None:
    spec = SandboxTemplate.model_validate(
        {
            "image": "ghcr.io/platform/tool:1",
            "resources": {"cpu": 2, "memory": "3Gi", "gpu": 1},
            "providers": ["github", "jira"],
        }
    )

    assert ask_of(spec, sandbox_shape(spec, DEFAULTS), "vm", ports=3) == Ask(
        gateway="vm",
        # The image as the spec asks: a family default is the platform's, not checked.
        image="ghcr.io/platform/tool:1",
        providers=("github", "jira"),
        cpu="2",
        memory="3Gi",
        gpu=1,
        ports=3,
    )


# -- violations: one rule at a time ---------------------------------------------------

#: (selected, ask, prefix, [(field, [words of its message])]); STRICT unless named.
RULE_CASES: list[Any] = [
    pytest.param(STRICT, ask(), "spec", [], id="within-every-rule"),
    pytest.param(
        STRICT,
        ask(gateway="elsewhere"),
        "spec",
        [
            (
                "spec.gateway",
                ["gateway elsewhere is not allowed by TenantPolicy strict", "(gateways: pods, vm)"],
            )
        ],
        id="gateway-not-listed",
    ),
    pytest.param(
        under(gateways=[]),
        ask(),
        "spec",
        [("spec.gateway", ["gateway pods is not allowed by TenantPolicy t", "(gateways: none)"])],
        id="gateway-empty-list",
    ),
    pytest.param(
        STRICT,
        ask(gateway="elsewhere"),
        "spec.template",
        [("spec.gateway", ["gateway elsewhere"])],
        id="gateway-field-is-the-objects-own",
    ),
    pytest.param(under(), ask(gateway="anything"), "spec", [], id="gateway-absent-rule"),
    pytest.param(
        STRICT,
        ask(image="ghcr.io/someone/tool:1"),
        "spec",
        [
            (
                "spec.image",
                [
                    "image ghcr.io/someone/tool:1 is not allowed by TenantPolicy strict",
                    "(imagePrefixes: an image starting with registry.example.com/agents/, "
                    "ghcr.io/platform/;",
                    "leave the image out for the family's default image",
                ],
            )
        ],
        id="image-outside-the-prefixes",
    ),
    pytest.param(
        STRICT,
        ask(image="ghcr.io/someone/tool:1"),
        "spec.template",
        [("spec.template.image", ["image ghcr.io/someone/tool:1", "imagePrefixes"])],
        id="image-of-a-pool-template",
    ),
    pytest.param(
        STRICT, ask(image="ghcr.io/platform/tool:1"), "spec", [], id="image-second-prefix"
    ),
    pytest.param(
        STRICT,
        ask(image="registry.example.com.evil.io/agents/x"),
        "spec",
        [("spec.image", ["registry.example.com.evil.io/agents/x"])],
        id="image-a-lookalike-registry",
    ),
    pytest.param(
        under(imagePrefixes=[]),
        ask(image="ghcr.io/platform/tool:1"),
        "spec",
        [
            (
                "spec.image",
                [
                    "image ghcr.io/platform/tool:1 is not allowed by TenantPolicy t",
                    "(imagePrefixes: none;",
                    "family's default image",
                ],
            )
        ],
        id="image-empty-list-refuses-any-explicit-image",
    ),
    pytest.param(
        under(imagePrefixes=[]), ask(image=None), "spec", [], id="image-empty-list-family-default"
    ),
    pytest.param(under(), ask(image="any/where:1"), "spec", [], id="image-absent-rule"),
    pytest.param(
        STRICT,
        ask(providers=("github", "aws-admin")),
        "spec",
        [
            (
                "spec.providers[1]",
                ["provider aws-admin is not allowed by TenantPolicy strict", "(providers: github)"],
            )
        ],
        id="provider-not-listed",
    ),
    pytest.param(
        under(providers=[]),
        ask(providers=("github", "jira")),
        "spec.template",
        [
            ("spec.template.providers[0]", ["provider github", "(providers: none)"]),
            ("spec.template.providers[1]", ["provider jira", "(providers: none)"]),
        ],
        id="provider-empty-list-refuses-each",
    ),
    pytest.param(STRICT, ask(providers=("github",)), "spec", [], id="provider-listed"),
    pytest.param(under(), ask(providers=("x", "y")), "spec", [], id="provider-absent-rule"),
    pytest.param(
        STRICT,
        ask(cpu="2500m"),
        "spec",
        [
            (
                "spec.resources.cpu",
                [
                    "cpu 2500m is more than TenantPolicy strict allows per session",
                    "(perSession.cpu: 2)",
                ],
            )
        ],
        id="cpu-over",
    ),
    pytest.param(STRICT, ask(cpu="2000m"), "spec", [], id="cpu-at-the-bound"),
    pytest.param(under(perSession={"cpu": 2}), ask(cpu="1500m"), "spec", [], id="cpu-int-bound"),
    pytest.param(
        under(perSession={"cpu": "500m"}),
        ask(cpu="1"),
        "spec.template",
        [("spec.template.resources.cpu", ["cpu 1 is more than", "(perSession.cpu: 500m)"])],
        id="cpu-over-millicores-of-a-pool-template",
    ),
    pytest.param(
        STRICT,
        ask(memory="5Gi"),
        "spec",
        [
            (
                "spec.resources.memory",
                [
                    "memory 5Gi is more than TenantPolicy strict allows per session",
                    "(perSession.memory: 4Gi)",
                ],
            )
        ],
        id="memory-over",
    ),
    pytest.param(STRICT, ask(memory="4096Mi"), "spec", [], id="memory-at-the-bound-other-unit"),
    pytest.param(
        STRICT,
        ask(memory="4.5G"),  # 4.5e9 bytes: more than 4Gi (4.29e9), though "4.5 < 4" is false
        "spec",
        [("spec.resources.memory", ["memory 4.5G"])],
        id="memory-over-decimal-unit",
    ),
    pytest.param(
        STRICT,
        ask(gpu=2),
        "spec",
        [
            (
                "spec.resources.gpu",
                [
                    "gpu 2 is more than TenantPolicy strict allows per session",
                    "(perSession.gpu: 1)",
                ],
            )
        ],
        id="gpu-over",
    ),
    pytest.param(
        under(perSession={"gpu": 0}),
        ask(gpu=1),
        "spec",
        [("spec.resources.gpu", ["gpu 1", "(perSession.gpu: 0)"])],
        id="gpu-none-allowed",
    ),
    pytest.param(under(perSession={"gpu": 0}), ask(gpu=0), "spec", [], id="gpu-zero-of-zero"),
    pytest.param(
        STRICT,
        ask(ports=3),
        "spec",
        [
            (
                "spec.ports",
                [
                    "3 ports are more than TenantPolicy strict allows per session",
                    "(perSession.ports: 2)",
                ],
            )
        ],
        id="ports-over",
    ),
    pytest.param(STRICT, ask(ports=2), "spec", [], id="ports-at-the-bound"),
    pytest.param(
        under(perSession={"ports": 0}),
        ask(ports=1),
        "spec",
        [("spec.ports", ["1 ports are more than", "(perSession.ports: 0)"])],
        id="ports-none-allowed",
    ),
    pytest.param(
        under(perSession={"cpu": "1", "memory": "1Gi", "gpu": 0, "ports": 0}),
        ask(cpu="1", memory="1Gi", gpu=0, ports=0),
        "spec",
        [],
        id="sizes-all-at-their-bounds",
    ),
]


@pytest.mark.parametrize(("selected", "asked", "prefix", "expected"), RULE_CASES)
def test_each_rule_names_its_field_and_says_the_rule(
    selected: Selected, asked: Ask, prefix: str, expected: list[tuple[str, list[str]]]
) -> None:
    found = violations(selected, asked, prefix)

    assert [v.field for v in found] == [field for field, _ in expected]
    for violation, (_, words) in zip(found, expected, strict=True):
        for word in words:
            assert word in violation.message, violation.message


def test_every_broken_rule_is_reported_in_field_order_and_joined_in_one_refusal() -> None:
    asked = ask(
        gateway="elsewhere",
        image="docker.io/x:1",
        providers=("aws-admin",),
        cpu="3",
        memory="5Gi",
        gpu=2,
        ports=3,
    )

    found = violations(STRICT, asked)

    assert [v.field for v in found] == [
        "spec.gateway",
        "spec.image",
        "spec.providers[0]",
        "spec.resources.cpu",
        "spec.resources.memory",
        "spec.resources.gpu",
        "spec.ports",
    ]
    assert refusal(STRICT, asked) == "; ".join(f"{v.field}: {v.message}" for v in found)


def test_a_violation_reads_as_field_then_message() -> None:
    assert str(Violation("spec.image", "image x is not allowed")) == (
        "spec.image: image x is not allowed"
    )


def test_an_ask_within_the_rules_is_not_refused() -> None:
    assert refusal(STRICT, ask()) is None


# -- policy_violations ----------------------------------------------------------------


def endpoint(**fields: Any) -> dict[str, Any]:
    return {"host": "api.example.com", "port": 443, **fields}


def network(*rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"network": [{"name": f"r{i}", "endpoints": e} for i, e in enumerate(rules)]}


AUDIT = endpoint(enforcement="audit")
SKIP = endpoint(tls="skip")
FINE = endpoint(enforcement="enforce", tls="terminate")
AUDIT_WORDS = [
    "enforcement audit (log only) is not allowed by TenantPolicy strict",
    "(policy.allowAudit: false)",
    "use enforce",
]
SKIP_WORDS = [
    "tls skip is not allowed by TenantPolicy strict",
    "(policy.allowTlsSkip: false)",
    "use terminate or passthrough",
]


@pytest.mark.parametrize(
    ("selected", "spec", "expected"),
    [
        pytest.param(STRICT, network([FINE, endpoint()]), [], id="enforce-and-terminate"),
        pytest.param(STRICT, {}, [], id="no-network"),
        pytest.param(STRICT, {"network": None}, [], id="network-null"),
        pytest.param(STRICT, {"network": [{"name": "r"}]}, [], id="rule-without-endpoints"),
        pytest.param(
            STRICT,
            network([FINE], [FINE, AUDIT]),
            [("spec.network[1].endpoints[1].enforcement", AUDIT_WORDS)],
            id="audit",
        ),
        pytest.param(
            STRICT,
            network([SKIP]),
            [("spec.network[0].endpoints[0].tls", SKIP_WORDS)],
            id="tls-skip",
        ),
        pytest.param(
            STRICT,
            network([endpoint(enforcement="audit", tls="skip")], [SKIP]),
            [
                ("spec.network[0].endpoints[0].enforcement", AUDIT_WORDS),
                ("spec.network[0].endpoints[0].tls", SKIP_WORDS),
                ("spec.network[1].endpoints[0].tls", SKIP_WORDS),
            ],
            id="both-on-one-endpoint-and-another",
        ),
        pytest.param(
            under(policy={"allowAudit": True}),
            network([AUDIT, SKIP]),
            [("spec.network[0].endpoints[1].tls", ["tls skip is not allowed by TenantPolicy t"])],
            id="audit-allowed-skip-not",
        ),
        pytest.param(
            under(policy={"allowTlsSkip": True}),
            network([AUDIT, SKIP]),
            [("spec.network[0].endpoints[0].enforcement", ["enforcement audit"])],
            id="skip-allowed-audit-not",
        ),
        pytest.param(
            Selected("no TenantPolicy", OPEN), network([AUDIT, SKIP]), [], id="open-allows-both"
        ),
    ],
)
def test_policy_modes_the_tenant_may_not_use(
    selected: Selected, spec: dict[str, Any], expected: list[tuple[str, list[str]]]
) -> None:
    found = policy_violations(selected, spec)

    assert [v.field for v in found] == [field for field, _ in expected]
    for violation, (_, words) in zip(found, expected, strict=True):
        for word in words:
            assert word in violation.message, violation.message
    assert policy_refusal(selected, spec) == ("; ".join(map(str, found)) or None)


# -- Usage and over_quota -------------------------------------------------------------


def test_usage_adds_up_what_each_sandbox_takes() -> None:
    asks = [ask(cpu="500m", memory="512Mi", gpu=1), ask(cpu="2", memory="1.5Gi", gpu=0)]

    both = Usage().plus(asks[0]).plus(asks[1])
    assert both == Usage(sessions=2, cpu=Decimal("2.5"), memory=Decimal(2) * GiB, gpu=1)
    assert both - Usage().plus(asks[1]) == Usage().plus(asks[0])
    assert Usage().plus(asks[1]) + Usage().plus(asks[0]) == both


@pytest.mark.parametrize(
    ("usage", "asked", "expected"),
    [
        pytest.param(Usage(), ask(), None, id="empty-namespace"),
        pytest.param(
            Usage(sessions=2, cpu=Decimal(2), memory=6 * GiB, gpu=0),
            ask(cpu="2", memory="2Gi", gpu=1),
            None,
            id="every-total-exactly-at-its-bound",
        ),
        pytest.param(
            Usage(sessions=3, cpu=Decimal(1), memory=GiB),
            ask(),
            ["4 sessions", "(perNamespace.sessions: 3)"],
            id="sessions",
        ),
        pytest.param(
            Usage(sessions=1, cpu=Decimal(3), memory=GiB),
            ask(cpu="1500m"),
            ["4.5 cpu", "(perNamespace.cpu: 4)"],
            id="cpu",
        ),
        pytest.param(
            Usage(sessions=1, cpu=Decimal(1), memory=6 * GiB),
            ask(memory="4Gi"),
            ["10.00Gi memory", "(perNamespace.memory: 8Gi)"],
            id="memory-shown-in-gi",
        ),
        pytest.param(
            Usage(sessions=1, cpu=Decimal(1), memory=GiB, gpu=1),
            ask(gpu=1),
            ["2 gpu", "(perNamespace.gpu: 1)"],
            id="gpu",
        ),
        pytest.param(
            Usage(sessions=3, cpu=Decimal(4), memory=8 * GiB, gpu=1),
            ask(cpu="1", gpu=1),
            ["4 sessions", "(perNamespace.sessions: 3)"],
            id="the-first-total-over-is-named",
        ),
    ],
)
def test_over_quota(usage: Usage, asked: Ask, expected: list[str] | None) -> None:
    found = over_quota(STRICT, usage, asked)

    if expected is None:
        assert found is None
        return
    assert found is not None
    assert found.startswith("waiting for room: the namespace's sessions would take ")
    assert "more than TenantPolicy strict allows" in found
    assert found.endswith("it proceeds when another session of the namespace ends")
    for words in expected:
        assert words in found, found


@pytest.mark.parametrize(
    ("spec", "usage", "waits"),
    [
        pytest.param({}, Usage(sessions=10**6, cpu=Decimal(10**6)), False, id="no-totals"),
        pytest.param({"perNamespace": {"sessions": 0}}, Usage(), True, id="zero-sessions"),
        pytest.param(
            {"perNamespace": {"cpu": 2}}, Usage(cpu=Decimal("1.5")), True, id="int-cpu-total"
        ),
        pytest.param(
            {"perNamespace": {"memory": "2Gi"}}, Usage(memory=GiB), False, id="memory-fits"
        ),
    ],
)
def test_over_quota_bounds_only_what_the_policy_sets(
    spec: dict[str, Any], usage: Usage, waits: bool
) -> None:
    assert (over_quota(under(**spec), usage, ask()) is not None) is waits


# -- parse_quantity -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, Decimal(0)),
        (3, Decimal(3)),
        ("2", Decimal(2)),
        ("1.5", Decimal("1.5")),
        ("+1", Decimal(1)),
        ("-1", Decimal(-1)),
        (" 2 ", Decimal(2)),
        ("500m", Decimal("0.5")),
        ("1500m", Decimal("1.5")),
        ("1k", Decimal(1000)),
        ("1M", Decimal(10) ** 6),
        ("2G", 2 * Decimal(10) ** 9),
        ("1T", Decimal(10) ** 12),
        ("1P", Decimal(10) ** 15),
        ("1E", Decimal(10) ** 18),
        ("1Ki", Decimal(1024)),
        ("512Mi", Decimal(512 * 2**20)),
        ("4Gi", 4 * GiB),
        ("1.5Gi", Decimal("1.5") * GiB),
        ("1Ti", Decimal(2) ** 40),
        ("1Pi", Decimal(2) ** 50),
        ("1Ei", Decimal(2) ** 60),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("2.5e-3", Decimal("0.0025")),
        ("1e+2", Decimal(100)),
    ],
    ids=repr,
)
def test_parse_quantity(value: int | str, expected: Decimal) -> None:
    assert parse_quantity(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", " ", "abc", "Gi", "1K", "1gi", "1mi", "1e", "1 Gi", "1.2.3", ".", "0x10", "NaN", "inf"],
    ids=repr,
)
def test_parse_quantity_refuses_what_is_not_a_quantity(value: str) -> None:
    with pytest.raises(ValueError, match="is not a Kubernetes quantity"):
        parse_quantity(value)


@given(st.integers(min_value=0, max_value=10**6))
def test_binary_and_decimal_units_scale_as_kubernetes_says(n: int) -> None:
    assert parse_quantity(f"{n}Mi") == parse_quantity(f"{n * 1024}Ki") == n * 2**20
    assert parse_quantity(f"{n}G") == parse_quantity(f"{n * 1000}M") == n * 10**9
    assert parse_quantity(f"{n * 1000}m") == parse_quantity(str(n)) == n
