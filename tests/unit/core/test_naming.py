"""Sandbox names and labels: deterministic, valid on the gateway, and traceable back.

The name is a function of the session UID alone, so a restart finds the same sandbox; it
must be a DNS-1123 label of at most 19 characters (the gateway's rule) and distinct UIDs
must not collide.
"""

from __future__ import annotations

import re
import uuid

from hypothesis import given
from hypothesis import strategies as st

from helmdeck_operator.core import naming
from tests.support.builders import UID

DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_sandbox_name_is_pinned_for_a_known_uid() -> None:
    """A restart, or an upgrade, must find the sandboxes it created: the derivation is fixed."""
    assert naming.sandbox_name(UID) == "hd-426ho26l5xzzk3hq"


@given(st.uuids().map(str) | st.text(min_size=1, max_size=64))
def test_sandbox_name_is_a_short_dns_label(uid: str) -> None:
    name = naming.sandbox_name(uid)

    assert len(name) == naming.MAX_SANDBOX_NAME == 19
    assert DNS_1123_LABEL.match(name)
    assert name.startswith("hd-")


@given(st.lists(st.uuids(), min_size=2, max_size=50, unique=True))
def test_distinct_uids_get_distinct_names(uids: list[uuid.UUID]) -> None:
    names = {naming.sandbox_name(str(u)) for u in uids}

    assert len(names) == len(uids)


def test_labels_bind_the_sandbox_to_its_session_and_operator_instance() -> None:
    labels = naming.sandbox_labels(session_uid=UID, family="node", instance="helmdeck-prod")

    assert labels == {
        "helmdeck.dev/managed-by": "helmdeck-prod",
        "helmdeck.dev/session-uid": UID,
        "helmdeck.dev/family": "node",
    }


def test_session_of_reads_back_what_labels_and_annotations_wrote() -> None:
    labels = naming.sandbox_labels(session_uid=UID, family="node", instance="helmdeck")
    annotations = naming.sandbox_annotations(namespace="team-a", name="my-session")

    assert annotations == {"helmdeck.dev/session": "team-a/my-session"}
    assert naming.session_of(labels, annotations) == ("team-a", "my-session", UID)


def test_session_of_ignores_sandboxes_that_are_not_ours() -> None:
    labels = naming.sandbox_labels(session_uid=UID, family="node", instance="helmdeck")
    annotations = naming.sandbox_annotations(namespace="team-a", name="s")

    assert naming.session_of({}, {}) is None
    assert naming.session_of({}, annotations) is None
    assert naming.session_of(labels, {}) is None
    assert naming.session_of(labels, {"helmdeck.dev/session": "no-slash"}) is None
    assert naming.session_of(labels, {"helmdeck.dev/session": "/name"}) is None
    assert naming.session_of(labels, {"helmdeck.dev/session": "ns/"}) is None
    assert naming.session_of({"helmdeck.dev/session-uid": ""}, annotations) is None


# -- the instance of an installation that does not set one --------------------------------

CLUSTER = "9c1e4b6a-2f3d-4e5a-8b7c-1d2e3f4a5b6c"


def test_derived_instance_is_pinned_for_a_known_cluster_and_release() -> None:
    """Every start, upgrade and re-render of an installation must find its sandboxes: the
    derivation is fixed."""
    assert naming.derived_instance(CLUSTER, "helmdeck-system/hd") == "hd-24458062c50a"


@given(st.uuids().map(str), st.text(max_size=300))
def test_derived_instance_is_a_short_label_value(cluster: str, release: str) -> None:
    instance = naming.derived_instance(cluster, release)

    assert re.fullmatch(r"hd-[0-9a-f]{12}", instance)
    assert DNS_1123_LABEL.match(instance)


def test_derived_instance_differs_per_cluster_and_per_release() -> None:
    """Two clusters sharing a gateway, or two releases on one cluster, never share an
    instance; the separator keeps a shifted boundary from colliding."""
    instances = {
        naming.derived_instance(cluster, release)
        for cluster in (CLUSTER, "0f0e0d0c-0b0a-4908-8706-050403020100")
        for release in ("helmdeck-system/hd", "helmdeck-system/hd2", "team-a/hd")
    }
    assert len(instances) == 6
    assert naming.derived_instance("a", "b/c") != naming.derived_instance("ab", "/c")
