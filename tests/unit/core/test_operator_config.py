"""`load_config`: the operator's configuration file plus `HELMDECK_*` overrides.

A bad configuration must stop the operator at start-up with one line per bad field, named
by its path, instead of failing later inside a reconcile.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from helmdeck_operator.config import ConfigError, OperatorConfig, load_config
from tests.support.policies import FAMILIES
from tests.support.repo import POLICY_DIR


def valid() -> dict[str, Any]:
    return {
        "instance": "helmdeck-test",
        "default_gateway": "pods",
        "gateways": [
            {"name": "pods", "endpoint": "127.0.0.1:17670", "plaintext": True},
            {"name": "vm", "endpoint": "[::1]:17671", "plaintext": True, "driver": "vm"},
        ],
        "families": {
            family: {
                "image": f"ghcr.io/tosin2013/helmdeck-sidecar-{family}:0.9.0",
                "command": ["/usr/local/bin/helmdeck-sidecar"],
                "policy_file": str(POLICY_DIR / f"{family}.yaml"),
            }
            for family in FAMILIES
        },
    }


@pytest.fixture
def write(tmp_path: Path) -> Callable[[Any], Path]:
    def write_config(content: Any) -> Path:
        path = tmp_path / "config.yaml"
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
        return path

    return write_config


def problems_of(path: Path | None, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ or {})
    return caught.value.problems


# -- a valid file ----------------------------------------------------------------------


def test_a_valid_file_loads_with_defaults_for_what_it_leaves_out(
    write: Callable[[Any], Path],
) -> None:
    config = load_config(write(valid()), {})

    assert config.instance == "helmdeck-test"
    assert [g.name for g in config.gateways] == ["pods", "vm"]
    assert config.gateways[1].driver == "vm"
    assert set(config.families) == set(FAMILIES)
    assert config.families["node"].resources.memory == "1Gi"
    assert config.families["node"].policy_file == POLICY_DIR / "node.yaml"
    assert config.intervals.resync_seconds == 30.0
    assert config.concurrency.gateway_mutations == 32
    assert config.on_sandbox_lost == "Recreate"
    assert config.namespaces == ()


def test_numeric_quantities_in_the_file_are_read_as_quantities(
    write: Callable[[Any], Path],
) -> None:
    raw = valid()
    raw["families"]["node"]["resources"] = {"cpu": 2, "memory": 1073741824, "gpu": 1}

    resources = load_config(write(raw), {}).families["node"].resources

    assert (resources.cpu, resources.memory, resources.gpu) == ("2", "1073741824", 1)


def test_a_session_without_a_gateway_gets_the_default_one(write: Callable[[Any], Path]) -> None:
    config = load_config(write(valid()), {})

    assert config.gateway(None) is config.gateways[0]
    assert config.gateway("vm") is config.gateways[1]
    assert config.gateway("elsewhere") is None


def test_the_configuration_is_immutable(write: Callable[[Any], Path]) -> None:
    config = load_config(write(valid()), {})

    with pytest.raises(ValueError, match="frozen"):
        config.instance = "other"  # type: ignore[misc]


# -- one line per bad field, named by its path ------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = raw
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value

    return mutate


def _drop_family(raw: dict[str, Any]) -> None:
    del raw["families"]["vision"]


def _same_names(raw: dict[str, Any]) -> None:
    raw["gateways"][1]["name"] = "pods"


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (_set("gateways.0.endpoint", "openshell"), "gateways.0.endpoint: the endpoint must be"),
        (_set("gateways.0.endpoint", "host:99999"), "gateways.0.endpoint: port '99999'"),
        (_set("gateways.1.name", "Not_A_Label"), "gateways.1.name: 'Not_A_Label' is not a DNS"),
        (_set("gateways.0.driver", "firecracker"), "gateways.0.driver: Input should be"),
        (_set("gateways", []), "gateways: Tuple should have at least 1 item"),
        (_set("default_gateway", "gpu"), "(top level): default_gateway 'gpu' is not one of"),
        (_same_names, "(top level): gateway names must be unique; repeated: pods"),
        (_drop_family, "families: defaults missing for vision"),
        (_set("families.ruby", valid()["families"]["node"]), "families.ruby.[key]: Input"),
        (_set("families.node.image", ""), "families.node.image: String should have at least"),
        (_set("families.node.command", []), "families.node.command: Tuple should have at least"),
        (_set("instance", "Helmdeck Prod"), "instance: must be a DNS label"),
        (_set("instance", ""), "(top level): set instance, or release"),
        (_set("intervals", {"resync_seconds": 0}), "intervals.resync_seconds: Input should be"),
        (_set("on_sandbox_lost", "Ignore"), "on_sandbox_lost: Input should be 'Recreate'"),
        (_set("typo", 1), "typo: Extra inputs are not permitted"),
        (
            _set("observability", {"max_followers": 10}),
            "observability: max_followers was removed in 0.2",
        ),
        (
            _set("observability", {"denial_poll_min_seconds": 60, "denial_poll_max_seconds": 30}),
            "observability: denial_poll_min_seconds must not exceed",
        ),
        (_set("concurrency", {"workers": 0}), "concurrency.workers: Input should be greater"),
        (_set("rate_limits", {"kube_qps": -1}), "rate_limits.kube_qps: Input should be greater"),
        (
            _set("intervals", {"outage_grace_seconds": -1}),
            "intervals.outage_grace_seconds: Input should be greater",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_bad_field_is_named_by_its_path(
    write: Callable[[Any], Path], mutate: Callable[[dict[str, Any]], None], problem: str
) -> None:
    raw = valid()
    mutate(raw)

    (found,) = problems_of(write(raw))

    assert found.startswith(problem)


def test_an_empty_instance_with_a_release_is_derived_later(write: Callable[[Any], Path]) -> None:
    """Empty means "derive at start" (run.py reads the cluster's identity): valid with the
    release that seeds it, which the chart always writes."""
    raw = {**valid(), "instance": "", "release": "helmdeck-system/hd"}
    config = load_config(write(raw), {})
    assert (config.instance, config.release) == ("", "helmdeck-system/hd")
    raw.pop("instance")
    assert load_config(write(raw), {}).instance == ""


def test_every_bad_field_is_reported_at_once(write: Callable[[Any], Path]) -> None:
    raw = valid()
    raw["instance"] = "UPPER"
    raw["gateways"][0]["endpoint"] = "nope"
    raw["intervals"] = {"pending_seconds": 0}

    found = problems_of(write(raw))

    assert [p.split(":")[0] for p in found] == [
        "instance",
        "gateways.0.endpoint",
        "intervals.pending_seconds",
    ]


def test_the_error_message_names_the_file_and_lists_the_problems(
    write: Callable[[Any], Path],
) -> None:
    raw = valid()
    raw["instance"] = "UPPER"
    path = write(raw)

    with pytest.raises(ConfigError) as caught:
        load_config(path, {})

    assert str(caught.value).startswith(f"invalid configuration ({path}):\n  instance: ")


def test_an_empty_file_names_every_required_setting(write: Callable[[Any], Path]) -> None:
    found = problems_of(write(""))

    assert [p.split(":")[0] for p in found] == ["default_gateway", "gateways", "families"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("gateways: [", "not valid YAML"),
        ("- a\n- b\n", "the file must hold a mapping of settings"),
        ("just a string", "the file must hold a mapping of settings"),
    ],
)
def test_a_file_that_is_not_a_settings_mapping_is_refused(
    write: Callable[[Any], Path], content: str, problem: str
) -> None:
    (found,) = problems_of(write(content))

    assert found.startswith(problem)


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    (found,) = problems_of(tmp_path / "missing.yaml")

    assert found == "cannot read the file: No such file or directory"


# -- transport security ------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["127.0.0.1:80", "127.9.9.9:80", "localhost:80", "[::1]:80"])
def test_plaintext_to_loopback_is_allowed(write: Callable[[Any], Path], endpoint: str) -> None:
    raw = valid()
    raw["gateways"][0]["endpoint"] = endpoint

    assert load_config(write(raw), {}).gateways[0].effective_tls is None


@pytest.mark.parametrize(
    "endpoint", ["openshell.openshell.svc:8080", "10.0.0.1:80", "[2001:db8::1]:80", "0.0.0.0:80"]
)
def test_plaintext_to_anything_but_loopback_is_refused(
    write: Callable[[Any], Path], endpoint: str
) -> None:
    raw = valid()
    raw["gateways"][0]["endpoint"] = endpoint

    (found,) = problems_of(write(raw))

    assert found.startswith("gateways.0: plaintext is allowed only when the endpoint host is")


# -- relative paths ----------------------------------------------------------------------


def test_relative_policy_files_are_read_next_to_the_config_file(
    write: Callable[[Any], Path], tmp_path: Path
) -> None:
    raw = valid()
    raw["families"]["node"]["policy_file"] = "policies/node.yaml"

    config = load_config(write(raw), {})

    assert config.families["node"].policy_file == tmp_path / "policies" / "node.yaml"
    assert config.families["python"].policy_file == POLICY_DIR / "python.yaml"


# -- environment overrides -------------------------------------------------------------


def load_with(write: Callable[[Any], Path], **environ: str) -> OperatorConfig:
    return load_config(write(valid()), environ)


def test_a_scalar_setting_is_overridden(write: Callable[[Any], Path]) -> None:
    config = load_with(write, HELMDECK_DEFAULT_GATEWAY="vm", HELMDECK_ON_SANDBOX_LOST="Fail")

    assert config.gateway(None) is config.gateways[1]
    assert config.on_sandbox_lost == "Fail"


def test_a_nested_setting_is_overridden_with_double_underscores(
    write: Callable[[Any], Path],
) -> None:
    config = load_with(write, HELMDECK_INTERVALS__RESYNC_SECONDS="10")

    assert config.intervals.resync_seconds == 10.0
    assert config.intervals.pending_seconds == 1.0


def test_a_list_entry_is_overridden_by_index(write: Callable[[Any], Path]) -> None:
    config = load_with(write, HELMDECK_GATEWAYS__1__ENDPOINT="127.0.0.2:9000")

    assert config.gateways[1].endpoint == "127.0.0.2:9000"
    assert config.gateways[0].endpoint == "127.0.0.1:17670"


def test_an_ipv6_endpoint_is_overridden_as_written(write: Callable[[Any], Path]) -> None:
    """`[::1]:17670` is not YAML; it is taken as the string it is."""
    config = load_with(write, HELMDECK_GATEWAYS__0__ENDPOINT="[::1]:17670")

    assert config.gateways[0].endpoint == "[::1]:17670"


def test_a_number_is_taken_as_text_where_text_is_expected(write: Callable[[Any], Path]) -> None:
    config = load_with(write, HELMDECK_INSTANCE="2024", HELMDECK_FAMILIES__NODE__RESOURCES__CPU="2")

    assert config.instance == "2024"
    assert config.families["node"].resources.cpu == "2"


def test_a_family_default_is_overridden(write: Callable[[Any], Path]) -> None:
    config = load_with(write, HELMDECK_FAMILIES__NODE__IMAGE="ghcr.io/org/node:2.0")

    assert config.families["node"].image == "ghcr.io/org/node:2.0"


@pytest.mark.parametrize("value", ["team-a,team-b", "team-a, team-b,", "[team-a, team-b]"])
def test_namespaces_are_a_comma_separated_list(write: Callable[[Any], Path], value: str) -> None:
    assert load_with(write, HELMDECK_NAMESPACES=value).namespaces == ("team-a", "team-b")


def test_a_flow_value_replaces_a_whole_list(write: Callable[[Any], Path]) -> None:
    config = load_with(
        write,
        HELMDECK_GATEWAYS='[{name: local, endpoint: "127.0.0.1:1", plaintext: true}]',
        HELMDECK_DEFAULT_GATEWAY="local",
    )

    assert [g.name for g in config.gateways] == ["local"]


def test_an_unknown_setting_is_refused(write: Callable[[Any], Path]) -> None:
    found = problems_of(write(valid()), {"HELMDECK_RESYNC": "10"})

    assert found == ["HELMDECK_RESYNC: no setting 'resync'"]


def test_an_index_past_the_end_of_a_list_is_refused(write: Callable[[Any], Path]) -> None:
    found = problems_of(write(valid()), {"HELMDECK_GATEWAYS__5__ENDPOINT": "127.0.0.1:1"})

    assert found == ["HELMDECK_GATEWAYS__5__ENDPOINT: no list entry 5"]


def test_a_nested_override_below_a_plain_value_is_refused(write: Callable[[Any], Path]) -> None:
    found = problems_of(write(valid()), {"HELMDECK_INSTANCE__NAME": "x"})

    assert found == ["HELMDECK_INSTANCE__NAME: instance is not a mapping or list"]


def test_an_override_below_a_null_setting_is_refused(write: Callable[[Any], Path]) -> None:
    raw = valid()
    raw["gateways"][0]["tls"] = None

    found = problems_of(write(raw), {"HELMDECK_GATEWAYS__0__TLS__CA_FILE": "/ca.pem"})

    assert found == ["HELMDECK_GATEWAYS__0__TLS__CA_FILE: gateways.0.tls is not a mapping or list"]


def test_overridden_values_are_validated_like_the_file(write: Callable[[Any], Path]) -> None:
    found = problems_of(write(valid()), {"HELMDECK_GATEWAYS__0__ENDPOINT": "10.1.2.3:80"})

    assert found[0].startswith("gateways.0: plaintext is allowed only")


def test_variables_that_are_not_settings_are_ignored(write: Callable[[Any], Path]) -> None:
    config = load_with(
        write, HELMDECK_CONFIG="/etc/helmdeck/config.yaml", HELMDECK_LOG_LEVEL="debug", HOME="/"
    )

    assert config.instance == "helmdeck-test"


@pytest.mark.parametrize(
    "variable",
    [
        "HELMDECK_OPERATOR_METRICS_SERVICE_HOST",
        "HELMDECK_OPERATOR_METRICS_SERVICE_PORT",
        "HELMDECK_OPERATOR_METRICS_SERVICE_PORT_METRICS",
        "HELMDECK_OPERATOR_METRICS_PORT",
        "HELMDECK_OPERATOR_METRICS_PORT_8080_TCP",
        "HELMDECK_OPERATOR_METRICS_PORT_8080_TCP_ADDR",
    ],
)
def test_kubernetes_service_link_variables_are_not_settings(
    write: Callable[[Any], Path], variable: str
) -> None:
    """Kubernetes sets these for a Service named helmdeck-operator-metrics in the namespace."""
    config = load_config(write(valid()), {variable: "tcp://10.0.0.7:8080"})

    assert config.instance == "helmdeck-test"


def test_the_environment_alone_can_configure_the_operator() -> None:
    raw = valid()
    environ = {
        "HELMDECK_RELEASE": "helmdeck-system/hd",
        "HELMDECK_DEFAULT_GATEWAY": "pods",
        "HELMDECK_GATEWAYS": yaml.safe_dump(raw["gateways"], default_flow_style=True).strip(),
        "HELMDECK_FAMILIES": yaml.safe_dump(raw["families"], default_flow_style=True).strip(),
    }

    config = load_config(None, environ)

    assert config.gateway(None) is config.gateways[0]
    assert (config.instance, config.release) == ("", "helmdeck-system/hd")


def test_errors_from_the_environment_alone_name_the_environment() -> None:
    with pytest.raises(ConfigError, match=r"^invalid configuration \(environment\)"):
        load_config(None, {})


# -- the egress guard --------------------------------------------------------------------


def test_the_egress_guard_guards_link_local_unless_told_more(write: Callable[[Any], Path]) -> None:
    config = load_config(write(valid()), {})
    assert [n.entry for n in config.egress_guard.guard().networks] == [
        "169.254.0.0/16",
        "fe80::/10",
    ]

    raw = valid()
    raw["egress_guard"] = {
        "api_server": ["10.96.0.1", "kubernetes.default.svc"],
        "service_cidrs": ["10.96.0.0/12"],
        "pod_cidrs": ["10.244.0.0/16"],
        "hosts": ["metadata.google.internal"],
        "cidrs": ["100.100.100.200/32"],
    }
    guard = load_config(write(raw), {}).egress_guard.guard()
    assert [(n.entry, n.source) for n in guard.networks][2:] == [
        ("10.96.0.1/32", "apiServer"),
        ("10.96.0.0/12", "serviceCidrs"),
        ("10.244.0.0/16", "podCidrs"),
        ("100.100.100.200/32", "cidrs"),
    ]
    assert [n.name for n in guard.names] == ["kubernetes.default.svc", "metadata.google.internal"]


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"service_cidrs": ["10.96.0.1/12"]}, "egress_guard.service_cidrs: '10.96.0.1/12'"),
        ({"pod_cidrs": ["pods.local"]}, "egress_guard.pod_cidrs: 'pods.local' is not a CIDR"),
        ({"hosts": ["http://metadata"]}, "egress_guard.hosts: 'http://metadata' is not a DNS"),
        ({"api_server": ["a b"]}, "egress_guard.api_server: 'a b' is not a DNS name"),
        ({"link_local": False}, "egress_guard.link_local: Extra inputs are not permitted"),
    ],
)
def test_a_bad_egress_guard_entry_is_named_by_its_field(
    write: Callable[[Any], Path], section: dict[str, Any], problem: str
) -> None:
    raw = valid()
    raw["egress_guard"] = section

    (found,) = problems_of(write(raw))

    assert found.startswith(problem)


def test_the_egress_guard_is_overridden_from_the_environment(
    write: Callable[[Any], Path],
) -> None:
    config = load_with(write, HELMDECK_EGRESS_GUARD__SERVICE_CIDRS="[10.96.0.0/12, fd00::/108]")

    assert config.egress_guard.service_cidrs == ("10.96.0.0/12", "fd00::/108")
