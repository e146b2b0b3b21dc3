"""The runtime's tenancy lookups: the rules of a namespace from kopf's TenantPolicy and
Namespace indexes (`Stores.tenancy`), a SidecarPolicy refused by them before it is ever
sent (`Runtime.translate`), and what a stored session asks for (`Runtime.ask_of`, the
quota ledger's measure).

The runtime is built as the operator builds it (`Runtime.build`), never started: nothing
here calls a gateway or the apiserver. The indexes are plain dicts of one-item lists, as
kopf's stores are, filled by the operator's own indexer for TenantPolicies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helmdeck_dev import objects
from helmdeck_dev.operator_process import write_config
from helmdeck_operator.config import TenancyFallback, load_config
from helmdeck_operator.core.plan import DesiredPolicy, PolicyProblem
from helmdeck_operator.core.tenancy import (
    LABEL_TENANT_POLICY,
    OPEN,
    SAFE_DEFAULT,
    Ask,
    Selected,
    Unresolved,
)
from helmdeck_operator.handlers import tenant_rules
from helmdeck_operator.observability.metrics import Metrics
from helmdeck_operator.runtime import Runtime, Stores
from helmdeck_operator.vocabulary import Reason
from tests.support import policies
from tests.support.kube_edge import FakeKube

NAMESPACE = "team-a"
#: An endpoint in each mode a TenantPolicy may forbid (audit needs an inspected protocol).
AUDIT = policies.with_endpoint("api", protocol="rest", access="read-only", enforcement="audit")
SKIP = policies.with_endpoint("api", tls="skip")


Indices = dict[str, dict[Any, list[Any]]]


def indices(
    tenant_policies: dict[str, dict[str, Any]] | None = None,
    labels: dict[str, dict[str, str]] | None = None,
) -> Indices:
    return {
        "session_bodies": {},
        "policy_bodies": {},
        "pool_bodies": {},
        "tenant_policies": {
            name: [tenant_rules(name, spec)] for name, spec in (tenant_policies or {}).items()
        },
        "namespace_labels": {name: [found] for name, found in (labels or {}).items()},
    }


def runtime(tmp_path: Path, index: Indices, fallback: str = "Open", **settings: Any) -> Runtime:
    path = write_config(
        tmp_path / "operator.yaml", "127.0.0.1:1", tenancy={"fallback": fallback}, **settings
    )
    config = load_config(path, environ={})
    rt = Runtime.build(config, FakeKube(), Metrics(), lambda keys: None)  # type: ignore[arg-type]
    rt.bind(index)
    return rt


def sidecar_policy(spec: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    body = objects.policy("web", **spec)
    body["metadata"].update(namespace=NAMESPACE, uid="uid-web", generation=generation)
    return body


def strict_namespace(**policy_modes: bool) -> Indices:
    """team-a selects TenantPolicy strict, with `policy_modes`."""
    return indices(
        {"strict": {"policy": policy_modes}}, {NAMESPACE: {LABEL_TENANT_POLICY: "strict"}}
    )


# -- Stores.tenancy -------------------------------------------------------------------


def test_the_namespace_label_selects_its_tenant_policy() -> None:
    stores = Stores(
        indices(
            {"strict": {"gateways": ["pods"]}, "default": {"providers": []}},
            {NAMESPACE: {LABEL_TENANT_POLICY: "strict", "team": "a"}, "team-b": {"x": "y"}},
        )
    )

    found = stores.tenancy(NAMESPACE)
    assert isinstance(found, Selected)
    assert found.name == "TenantPolicy strict"
    assert found.rules.gateways == ("pods",)
    other = stores.tenancy("team-b")
    assert isinstance(other, Selected)
    assert other.name == "TenantPolicy default"
    assert other.rules.providers == ()


@pytest.mark.parametrize(
    ("fallback", "rules"), [(TenancyFallback.SAFE, SAFE_DEFAULT), (TenancyFallback.OPEN, OPEN)]
)
def test_without_a_default_policy_the_configured_fallback_holds(
    fallback: TenancyFallback, rules: Any
) -> None:
    # A namespace not in the index yet (no labels known) counts as unlabelled.
    found = Stores(indices({"strict": {}}), fallback).tenancy("unknown")

    assert isinstance(found, Selected)
    assert found.rules == rules


def test_the_fallback_is_open_unless_given() -> None:
    found = Stores(indices()).tenancy(NAMESPACE)

    assert isinstance(found, Selected)
    assert found.rules == OPEN


def test_a_deleted_tenant_policy_no_longer_counts() -> None:
    index = strict_namespace()
    stores = Stores(index)
    index["tenant_policies"]["strict"].clear()  # kopf empties the store of a deleted object

    assert isinstance(stores.tenancy(NAMESPACE), Unresolved)


def test_the_rules_are_read_at_each_lookup() -> None:
    index = indices({"default": {"providers": []}})
    stores = Stores(index)
    assert stores.tenancy(NAMESPACE) == Selected(
        "TenantPolicy default", tenant_rules("d", {"providers": []})
    )

    index["namespace_labels"][NAMESPACE] = [{LABEL_TENANT_POLICY: "vip"}]
    index["tenant_policies"]["vip"] = [tenant_rules("vip", {})]

    found = stores.tenancy(NAMESPACE)
    assert isinstance(found, Selected)
    assert found.name == "TenantPolicy vip"


# -- Runtime.translate ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        (AUDIT, "spec.network[0].endpoints[0].enforcement", "(policy.allowAudit: false)"),
        (SKIP, "spec.network[0].endpoints[0].tls", "(policy.allowTlsSkip: false)"),
    ],
    ids=["audit", "tls-skip"],
)
def test_a_mode_the_tenant_may_not_use_is_refused_naming_the_field(
    tmp_path: Path, spec: dict[str, Any], field: str, words: str
) -> None:
    rt = runtime(tmp_path, strict_namespace())

    found = rt.translate(NAMESPACE, sidecar_policy(spec))

    assert isinstance(found, PolicyProblem)
    assert found.name == "web"
    assert found.reason is Reason.TENANCY_REFUSED
    assert found.message.startswith(f"{field}: ")
    assert "not allowed by TenantPolicy strict" in found.message
    assert words in found.message


@pytest.mark.parametrize(
    ("spec", "modes"),
    [
        (AUDIT, {"allowAudit": True}),
        (SKIP, {"allowTlsSkip": True}),
        (policies.pypi_spec(), {}),
    ],
    ids=["audit-allowed", "tls-skip-allowed", "no-such-mode"],
)
def test_an_allowed_policy_is_translated(
    tmp_path: Path, spec: dict[str, Any], modes: dict[str, bool]
) -> None:
    rt = runtime(tmp_path, strict_namespace(**modes))

    found = rt.translate(NAMESPACE, sidecar_policy(spec))

    assert isinstance(found, DesiredPolicy)
    assert found.name == "web"
    assert found.revision.startswith("sha256:")


def test_a_namespace_naming_a_missing_tenant_policy_gets_no_policy(tmp_path: Path) -> None:
    rt = runtime(tmp_path, indices({}, {NAMESPACE: {LABEL_TENANT_POLICY: "gone"}}))

    found = rt.translate(NAMESPACE, sidecar_policy(policies.pypi_spec()))

    assert isinstance(found, PolicyProblem)
    assert found.reason is Reason.TENANCY_REFUSED
    assert "TenantPolicy gone" in found.message
    assert "does not exist" in found.message


@pytest.mark.parametrize(
    ("fallback", "refused"), [("Safe", True), ("Open", False)], ids=["safe", "open"]
)
def test_without_any_tenant_policy_the_fallback_decides(
    tmp_path: Path, fallback: str, refused: bool
) -> None:
    rt = runtime(tmp_path, indices(), fallback=fallback)

    found = rt.translate(NAMESPACE, sidecar_policy(AUDIT))

    assert isinstance(found, PolicyProblem) is refused
    if isinstance(found, PolicyProblem):
        assert "the operator's built-in default tenancy rules" in found.message


def test_a_change_of_the_rules_counts_without_a_new_generation(tmp_path: Path) -> None:
    """The translation is remembered per generation; the tenancy check is not."""
    index = strict_namespace()
    rt = runtime(tmp_path, index)
    body = sidecar_policy(AUDIT)
    assert isinstance(rt.translate(NAMESPACE, body), PolicyProblem)

    index["tenant_policies"]["strict"] = [tenant_rules("strict", {"policy": {"allowAudit": True}})]

    assert isinstance(rt.translate(NAMESPACE, body), DesiredPolicy)


def test_an_invalid_policy_stays_invalid_whatever_the_rules(tmp_path: Path) -> None:
    rt = runtime(tmp_path, strict_namespace())
    broken = policies.with_endpoint("api", port=0, enforcement="audit")

    found = rt.translate(NAMESPACE, sidecar_policy(broken))

    assert isinstance(found, PolicyProblem)
    assert found.reason is Reason.POLICY_INVALID


# -- Runtime.ask_of -------------------------------------------------------------------


def test_a_stored_session_asks_for_its_spec_over_its_family_defaults(tmp_path: Path) -> None:
    rt = runtime(tmp_path, indices())
    defaults = rt.config.families["python"]
    body = objects.session(
        "s1",
        family="python",
        resources={"cpu": 2},
        providers=["github"],
        ports=[{"name": "a", "port": 8000}, {"name": "b", "port": 8001}],
    )

    assert rt.ask_of(body) == Ask(
        gateway="pods",
        image=None,
        providers=("github",),
        cpu="2",
        memory=defaults.resources.memory,
        gpu=defaults.resources.gpu,
        ports=2,
    )


def test_a_stored_session_keeps_the_gateway_its_sandbox_was_created_on(tmp_path: Path) -> None:
    rt = runtime(tmp_path, indices())
    body = objects.session("s1", family="python")
    body["status"] = {"sandbox": {"id": "sbx-1", "gateway": "microvm"}}

    found = rt.ask_of(body)

    assert found is not None
    assert found.gateway == "microvm"


def test_a_session_spec_the_operator_cannot_read_asks_for_nothing(tmp_path: Path) -> None:
    rt = runtime(tmp_path, indices())

    assert rt.ask_of({"spec": {"family": "cobol"}}) is None


@pytest.mark.parametrize(
    ("allow", "sent"),
    [
        ([], ["10.128.0.0/9"]),  # 10.0.0.0/8 less the guarded 10.0.0.0/9
        (["10.0.0.0/9"], ["10.0.0.0/8"]),  # the tenant's exemption lets the range through
    ],
    ids=["guarded", "exempted"],
)
def test_the_namespaces_egress_exemptions_reach_the_guard(
    tmp_path: Path, allow: list[str], sent: list[str]
) -> None:
    index = indices({"t": {"egress": {"allow": allow}}}, {NAMESPACE: {LABEL_TENANT_POLICY: "t"}})
    rt = runtime(tmp_path, index, egress_guard={"service_cidrs": ["10.0.0.0/9"]})
    wide = policies.with_endpoint("api", allowedIps=["10.0.0.0/8"])

    found = rt.translate(NAMESPACE, sidecar_policy(wide))

    assert isinstance(found, DesiredPolicy)
    [endpoint] = found.policy.network_policies["api"].endpoints
    assert sorted(endpoint.allowed_ips) == sent
