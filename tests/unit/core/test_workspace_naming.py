"""Which OpenShell workspace a namespace's sandboxes go to: the name of a namespace's own
workspace (pure, deterministic, valid for the gateway, unique) and the mode's choice."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from helmdeck_operator.core.naming import (
    MAX_WORKSPACE_NAME,
    allowed_workspaces,
    home_workspace,
    in_its_workspace,
    namespace_workspace,
    pool_sandbox_annotations,
    pool_sandbox_labels,
    sandbox_annotations,
    sandbox_labels,
)
from helmdeck_operator.gateway.config import GatewayConfig, WorkspaceMode

#: The gateway's workspace-name rule (grpc/workspace.rs, validate_dns1123_label).
GATEWAY_RULE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

namespaces = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z", fullmatch=True)
prefixes = st.from_regex(r"\A[a-z0-9](-?[a-z0-9]){0,6}-?\Z", fullmatch=True).filter(
    lambda p: len(p) <= 8
)


def gateway(**fields: object) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {"name": "pods", "endpoint": "127.0.0.1:17670", "plaintext": True, **fields}
    )


def test_a_short_namespace_keeps_its_name() -> None:
    assert namespace_workspace("ns-", "team-a") == "ns-team-a"
    assert namespace_workspace("ns-", "a" * 15) == "ns-" + "a" * 15  # 18: still plain


def test_a_long_namespace_is_shortened_with_a_hash_of_all_of_it() -> None:
    first = namespace_workspace("ns-", "platform-engineering-a")
    second = namespace_workspace("ns-", "platform-engineering-b")
    assert first.startswith("ns-platform-")
    assert len(first) == len(second) == MAX_WORKSPACE_NAME
    assert first != second
    assert namespace_workspace("ns-", "a" * 16) != "ns-" + "a" * 16  # 19 would be plain's
    assert namespace_workspace("ns-", "platform-engineering") == "ns-platform-5t3yyhv"  # docs


def test_consecutive_hyphens_which_the_gateway_refuses_are_folded() -> None:
    name = namespace_workspace("ns-", "team--a")
    assert "--" not in name
    assert name.startswith("ns-team-a-")
    assert name != namespace_workspace("ns-", "team-a")


@given(prefixes, namespaces)
def test_every_name_is_one_the_gateway_accepts(prefix: str, namespace: str) -> None:
    name = namespace_workspace(prefix, namespace)
    assert len(name) <= MAX_WORKSPACE_NAME
    assert GATEWAY_RULE.match(name), name
    assert "--" not in name
    assert name == namespace_workspace(prefix, namespace)  # stable


@given(namespaces, namespaces)
def test_different_namespaces_get_different_workspaces(first: str, second: str) -> None:
    if first != second:
        assert namespace_workspace("ns-", first) != namespace_workspace("ns-", second)


def test_the_mode_decides_where_new_sandboxes_go_and_both_places_are_allowed() -> None:
    shared = gateway(workspace="agents")
    assert shared.workspaces is WorkspaceMode.SHARED  # the default: nothing changes
    assert home_workspace(shared, "team-a") == "agents"
    assert allowed_workspaces(shared, "team-a") == ("agents", "ns-team-a")
    per = gateway(workspace="agents", workspaces="PerNamespace", workspace_prefix="hd-")
    assert home_workspace(per, "team-a") == "hd-team-a"
    assert allowed_workspaces(per, "team-a") == ("hd-team-a", "agents")


@pytest.mark.parametrize("prefix", ["", "-ns", "ns--", "NS-", "ns_", "prefix-too-long"])
def test_a_prefix_must_start_a_workspace_name(prefix: str) -> None:
    with pytest.raises(ValidationError, match="workspace_prefix"):
        gateway(workspace_prefix=prefix)


def test_a_sandbox_labelled_as_ours_is_ours_only_where_its_namespace_may_be() -> None:
    per = gateway(workspaces="PerNamespace")
    labels = sandbox_labels(session_uid="u1", family="python", instance="x")
    of_a = sandbox_annotations(namespace="team-a", name="s1")
    assert in_its_workspace(per, "ns-team-a", labels, of_a)
    assert in_its_workspace(per, "default", labels, of_a)  # made before the switch
    assert not in_its_workspace(per, "ns-team-b", labels, of_a)  # another tenant's
    pool = pool_sandbox_labels(pool_uid="p1", family="python", instance="x")
    of_pool = pool_sandbox_annotations(namespace="team-b", name="warm")
    assert in_its_workspace(per, "ns-team-b", pool, of_pool)
    assert not in_its_workspace(per, "ns-team-a", pool, of_pool)
    # Naming no owner: only where the operator has always listed.
    assert in_its_workspace(per, "default", {}, {})
    assert not in_its_workspace(per, "ns-team-a", {}, {})
