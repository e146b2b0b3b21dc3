"""docs/crd-reference.md is generated from crds/*.yaml and must stay current with them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from helmdeck_dev import cli, crdref

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = REPO_ROOT / "crds"
PAGE = REPO_ROOT / "docs" / "crd-reference.md"


@pytest.fixture(scope="module")
def crds() -> list[dict[str, Any]]:
    return crdref.load_crds(CRD_DIR)


@pytest.fixture(scope="module")
def page(crds: list[dict[str, Any]]) -> str:
    return crdref.render(crds)


def test_reference_is_current(page: str) -> None:
    assert PAGE.read_text() == page, "regenerate it with: helmdeck-dev crd-reference"


def _fields(schema: Mapping[str, Any], path: str) -> Iterator[str]:
    for name, child in schema.get("properties", {}).items():
        field = f"{path}.{name}"
        yield field
        yield from _fields(child, field)
    items = schema.get("items")
    if isinstance(items, Mapping):
        yield from _fields(items, f"{path}[]")


def test_every_spec_field_appears(crds: list[dict[str, Any]], page: str) -> None:
    for crd in crds:
        spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        fields = list(_fields(spec, "spec"))
        assert fields
        missing = [f for f in fields if f"| `{f}` |" not in page]
        assert not missing, f"{crd['spec']['names']['kind']}: {missing}"


def test_cel_rules_appear_with_their_messages(page: str) -> None:
    assert "family is immutable; delete the session and create a new one" in page
    assert "| `spec.family` | `self == oldSelf` |" in page
    assert "set exactly one of port or ports" in page
    # A rule with a fieldPath names where the apiserver reports it.
    assert "`spec` (reported at `spec.gateway`)" in page
    assert "`spec` (reported at `spec.poolRef`)" in page
    assert "family is immutable; delete the pool and create a new one" in page
    # A messageExpression is shown as the expression it is.
    assert 'computed: `"host " + self + " may use a wildcard' in page


def test_identity_and_printer_columns(page: str) -> None:
    assert "## HelmdeckSession" in page
    assert "| short names | `hds` |" in page
    assert "| categories | `helmdeck` |" in page
    assert "| Policy-Ver | integer | `.status.policy.gatewayVersion` | always |" in page
    assert "| Revision | string | `.status.revision` | wide |" in page
    assert "## SessionPool" in page
    assert "| short names | `hdp` |" in page
    assert "| subresources (v1alpha1) | `status`, `scale` |" in page
    assert (
        "| scale (v1alpha1) | replicas `.spec.replicas`, status `.status.replicas`, "
        "selector `.status.selector` |"
    ) in page
    assert "| Desired | integer | `.spec.replicas` | always |" in page
    assert "| Pool | string | `.status.pool.name` | wide |" in page


def test_every_kind_is_on_the_page(crds: list[dict[str, Any]], page: str) -> None:
    kinds = sorted(str(crd["spec"]["names"]["kind"]) for crd in crds)
    assert kinds == ["HelmdeckSession", "SessionPool", "SidecarPolicy", "TenantPolicy"]
    for kind in kinds:
        assert f"- [{kind}](#{kind.lower()})" in page
        assert f"## {kind}\n" in page


def test_defaults_and_enums(page: str) -> None:
    assert "| `spec.staticChanges` | string |  | `Reject` | one of `Reject`, `Recreate` |" in page
    assert "| `spec.suspend` | boolean |  | `false` |" in page
    assert "| `spec.replicas` | integer |  | `1` | min 0; max 1000 |" in page
    assert "| `spec.maxProvisioning` | integer |  | `10` | min 1; max 100 |" in page


def test_pipes_and_emphasis_cannot_break_a_table() -> None:
    crd = {
        "spec": {
            "group": "example.dev",
            "scope": "Namespaced",
            "names": {"kind": "Thing", "plural": "things", "singular": "thing"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "mode": {
                                            "type": "string",
                                            "description": "a | b, *not* <c>",
                                            "pattern": "^(a|b)$",
                                            "x-kubernetes-validations": [
                                                {"rule": "self != 'a' || true", "message": "x|y"}
                                            ],
                                        }
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        }
    }
    text = crdref.render([crd])
    assert "pattern `^(a\\|b)$`" in text
    assert "a \\| b, \\*not\\* &lt;c&gt;" in text
    assert "| `self != 'a' \\|\\| true` | x\\|y |" in text
    assert crdref.render([crd]) == text


def test_a_scale_subresource_shows_its_paths() -> None:
    version = {
        "name": "v1",
        "served": True,
        "storage": True,
        "subresources": {
            "status": {},
            "scale": {"specReplicasPath": ".spec.n", "statusReplicasPath": ".status.n"},
        },
        "schema": {"openAPIV3Schema": {"type": "object"}},
    }
    crd = {
        "spec": {
            "group": "example.dev",
            "scope": "Namespaced",
            "names": {"kind": "Thing", "plural": "things", "singular": "thing"},
            "versions": [version],
        }
    }
    text = crdref.render([crd])
    assert "| subresources (v1) | `status`, `scale` |" in text
    assert "| scale (v1) | replicas `.spec.n`, status `.status.n` |" in text


def test_check_fails_on_a_stale_page_and_passes_once_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "crd-reference.md"
    args = ["crd-reference", "--crds", str(CRD_DIR), "--output", str(output)]
    assert cli.main([*args, "--check"]) == 1
    assert "regenerate it with: helmdeck-dev crd-reference" in capsys.readouterr().err
    assert cli.main(args) == 0
    assert output.read_text() == PAGE.read_text()
    assert cli.main([*args, "--check"]) == 0
    output.write_text(output.read_text() + "edited by hand\n")
    assert cli.main([*args, "--check"]) == 1


def test_no_crds_is_an_error(tmp_path: Path) -> None:
    assert cli.main(["crd-reference", "--crds", str(tmp_path), "--check"]) == 2
