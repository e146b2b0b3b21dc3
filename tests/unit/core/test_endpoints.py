"""A session's ports as gateway service endpoints: the conversion and the changes to make."""

from __future__ import annotations

from pathlib import Path

from helmdeck_operator.config import FAMILY_PORTS, FamilyDefaults, Port
from helmdeck_operator.core.endpoints import exposures, port_changes, ports_of
from helmdeck_operator.core.session import SessionSpec, ports_digest, session_ports
from helmdeck_operator.gateway import models

STRIP = models.ServiceAuthorization.STRIP
BEARER = models.ServiceAuthorization.BEARER_PASSTHROUGH
CDP = Port(name="cdp", port=9222)
MCP = Port(name="mcp", port=8931, authorization="BearerPassthrough")


def endpoint(
    name: str, port: int, mode: models.ServiceAuthorization = STRIP
) -> models.ServiceEndpoint:
    return models.ServiceEndpoint(name, port, mode, f"http://{name}.example/")


def test_ports_become_exposures_with_the_gateway_modes() -> None:
    assert exposures((CDP, MCP)) == (
        models.ServiceExposure("cdp", 9222, STRIP),
        models.ServiceExposure("mcp", 8931, BEARER),
    )


def test_endpoints_read_back_as_the_ports_they_expose() -> None:
    listed = [endpoint("cdp", 9222), endpoint("mcp", 8931, BEARER), endpoint("", 80)]

    assert ports_of(listed) == (CDP, MCP)  # the unnamed endpoint is none of ours
    assert ports_digest(ports_of(listed)) == ports_digest((MCP, CDP))


def test_nothing_changes_when_the_endpoints_match() -> None:
    changes = port_changes((CDP, MCP), [endpoint("mcp", 8931, BEARER), endpoint("cdp", 9222)])

    assert changes.expose == ()
    assert changes.remove == ()


def test_a_missing_port_is_exposed_and_an_extra_endpoint_removed() -> None:
    changes = port_changes((CDP, MCP), [endpoint("cdp", 9222), endpoint("vnc", 6080)])

    assert changes.expose == (models.ServiceExposure("mcp", 8931, BEARER),)
    assert changes.remove == ("vnc",)


def test_a_port_moved_or_given_another_mode_is_exposed_again_under_its_name() -> None:
    changes = port_changes((CDP, MCP), [endpoint("cdp", 9333), endpoint("mcp", 8931, STRIP)])

    # ExposeService replaces an endpoint of the same name: nothing to remove first.
    assert [e.name for e in changes.expose] == ["cdp", "mcp"]
    assert changes.remove == ()


def test_no_ports_remove_every_endpoint_including_the_unnamed_one() -> None:
    changes = port_changes((), [endpoint("cdp", 9222), endpoint("", 80)])

    assert changes.remove == ("", "cdp")


def test_the_digest_ignores_order_and_sees_every_field() -> None:
    assert ports_digest((CDP, MCP)) == ports_digest((MCP, CDP))
    assert ports_digest((CDP,)) != ports_digest((Port(name="cdp", port=9223),))
    assert ports_digest((CDP,)) != ports_digest(
        (Port(name="cdp", port=9222, authorization="BearerPassthrough"),)
    )
    assert ports_digest(()) != ports_digest((CDP,))


def test_a_session_without_ports_takes_the_familys_and_an_empty_list_means_none() -> None:
    defaults = FamilyDefaults(
        image="x:1", command=("run",), policy_file=Path("p.yaml"), ports=FAMILY_PORTS["browser"]
    )

    assert (
        session_ports(SessionSpec.model_validate({"family": "browser"}), defaults)
        == (FAMILY_PORTS["browser"])
    )
    assert (
        session_ports(SessionSpec.model_validate({"family": "browser", "ports": []}), defaults)
        == ()
    )
    own = SessionSpec.model_validate(
        {"family": "browser", "ports": [{"name": "app", "port": 3000}]}
    )
    assert session_ports(own, defaults) == (Port(name="app", port=3000),)


def test_the_family_defaults_are_helmdecks_sidecar_ports() -> None:
    assert {f: [(p.name, p.port) for p in ports] for f, ports in FAMILY_PORTS.items()} == {
        "browser": [("cdp", 9222), ("mcp", 8931)],
        "vision": [("cdp", 9222), ("vnc", 6080)],
        "python": [],
        "node": [],
    }
