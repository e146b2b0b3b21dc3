"""`helmdeck-operator policy render`: YAML plus revision on success, `path: message` and exit 2
on invalid input."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml

from helmdeck_dev.operator_process import write_config
from helmdeck_operator import cli as main_cli
from helmdeck_operator.policy import cli, revision, translate
from helmdeck_operator.policy.guard import EgressGuard

SPEC = """\
network:
  - name: npm-registry
    endpoints:
      - {host: registry.npmjs.org, port: 443, protocol: rest, access: read-only}
    binaries: [/usr/bin/node]
process: {runAsUser: "1000"}
"""
MANIFEST = (
    "apiVersion: helmdeck.dev/v1alpha1\nkind: SidecarPolicy\nmetadata: {name: npm}\nspec:\n"
    + "".join(f"  {line}\n" for line in SPEC.splitlines())
)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main_cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return str(path)


def test_render_prints_the_policy_as_yaml_then_its_revision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["policy", "render", write(tmp_path, SPEC)], capsys)

    assert (code, err) == (0, "")
    expected = translate.to_sandbox_policy(yaml.safe_load(SPEC))
    document = yaml.safe_load(out)
    assert document.pop("revision") == revision.revision(expected)
    assert out.rstrip("\n").splitlines()[-1] == f"revision: {revision.revision(expected)}"
    assert document == {
        "version": 1,
        "filesystem": {"include_workdir": True},
        "landlock": {"compatibility": "best_effort"},
        "process": {"run_as_user": "1000"},
        "network_policies": {
            "npm-registry": {
                "name": "npm-registry",
                "endpoints": [
                    {
                        "host": "registry.npmjs.org",
                        "port": 443,
                        "protocol": "rest",
                        "access": "NETWORK_ACCESS_PRESET_READ_ONLY",
                    }
                ],
                "binaries": [{"path": "/usr/bin/node"}],
            }
        },
    }


def test_a_manifest_and_its_bare_spec_render_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, from_spec, _ = run(["policy", "render", write(tmp_path, SPEC)], capsys)
    _, from_manifest, _ = run(["policy", "render", write(tmp_path, MANIFEST)], capsys)

    assert from_manifest == from_spec


def test_dash_reads_standard_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(MANIFEST))

    code, out, _ = run(["policy", "render", "-"], capsys)

    assert code == 0
    assert out == cli.render(translate.to_sandbox_policy(yaml.safe_load(SPEC)))


def test_invalid_spec_prints_each_field_path_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = SPEC.replace("registry.npmjs.org", '"*.org"').replace('"1000"', "root")

    code, out, err = run(["policy", "render", write(tmp_path, bad)], capsys)

    assert (code, out) == (cli.EXIT_INVALID, "")
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("spec.network[0].endpoints[0].host: host *.org may use a wildcard")
    assert lines[1] == (
        "spec.process.runAsUser: runAsUser root must be sandbox or a numeric uid from 1 to "
        "4294967294 in plain decimal (no sign, spaces or leading zeros; OpenShell resolves no "
        "other user names, and never runs as root)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            MANIFEST.replace("kind: SidecarPolicy", "kind: HelmdeckSession"),
            "kind: must be SidecarPolicy",
        ),
        (
            MANIFEST.replace("helmdeck.dev/v1alpha1", "v1"),
            "apiVersion: must be helmdeck.dev/v1alpha1",
        ),
        ("apiVersion: helmdeck.dev/v1alpha1\nkind: SidecarPolicy\n", "spec: Field required"),
        ("- just\n- a list\n", "spec: Input should be a valid dictionary"),
        ("", "spec: Input should be a valid dictionary"),
    ],
    ids=["wrong-kind", "wrong-api-version", "no-spec", "not-a-mapping", "empty-file"],
)
def test_documents_that_are_not_a_sidecarpolicy_exit_2(
    text: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["policy", "render", write(tmp_path, text)], capsys)

    assert (code, out) == (2, "")
    assert expected in err


def test_unreadable_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "absent.yaml")

    code, _, err = run(["policy", "render", missing], capsys)

    assert code == 2
    assert err.startswith(f"{missing}: cannot read a YAML document")


def test_malformed_yaml_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["policy", "render", write(tmp_path, "network: [\n")], capsys)

    assert code == 2
    assert "cannot read a YAML document" in err


def test_render_needs_a_file_argument(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main_cli.main(["policy", "render"])

    assert exited.value.code == 2
    assert "file" in capsys.readouterr().err


# -- the egress guard ----------------------------------------------------------------------

WIDE = """\
network:
  - name: internal
    endpoints:
      - host: internal.example.com
        port: 443
        protocol: rest
        access: read-only
        allowedIps: [10.0.0.0/8]
"""


def operator_config(tmp_path: Path, **egress_guard: list[str]) -> str:
    path = write_config(tmp_path / "config.yaml", "127.0.0.1:17670", egress_guard=egress_guard)
    return str(path)


def test_render_merges_the_configured_guard_and_reports_each_narrowing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = operator_config(tmp_path, service_cidrs=["10.96.0.0/12"])

    code, out, err = run(["policy", "render", "--config", config, write(tmp_path, WIDE)], capsys)

    assert code == 0
    kept = ["10.0.0.0/10", "10.112.0.0/12", "10.128.0.0/9", "10.64.0.0/11"]
    endpoint = yaml.safe_load(out)["network_policies"]["internal"]["endpoints"][0]
    assert endpoint["allowed_ips"] == kept
    assert err == (
        "egress guard: spec.network[0].endpoints[0].allowedIps[0]: 10.0.0.0/8 narrowed to "
        "10.0.0.0/10, 10.64.0.0/11, 10.112.0.0/12, 10.128.0.0/9 to leave out "
        "10.96.0.0/12 (serviceCidrs)\n"
    )
    guard = EgressGuard.build(service_cidrs=["10.96.0.0/12"])
    assert out == cli.render(translate.to_guarded_policy(yaml.safe_load(WIDE), guard).policy)


def test_without_a_configuration_only_the_link_local_ranges_are_guarded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["policy", "render", write(tmp_path, WIDE)], capsys)

    assert (code, err) == (0, "")
    endpoint = yaml.safe_load(out)["network_policies"]["internal"]["endpoints"][0]
    assert endpoint["allowed_ips"] == ["10.0.0.0/8"]

    code, out, err = run(
        ["policy", "render", write(tmp_path, WIDE.replace("10.0.0.0/8", "169.254.0.0/15"))],
        capsys,
    )
    endpoint = yaml.safe_load(out)["network_policies"]["internal"]["endpoints"][0]
    assert endpoint["allowed_ips"] == ["169.255.0.0/16"]
    assert "to leave out 169.254.0.0/16 (linkLocal)" in err


def test_a_policy_the_guard_refuses_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = operator_config(tmp_path, api_server=["kubernetes.default.svc"])
    spec = SPEC.replace("registry.npmjs.org", '"*.default.svc"')

    code, out, err = run(["policy", "render", "--config", config, write(tmp_path, spec)], capsys)

    assert (code, out) == (2, "")
    assert err.startswith(
        "spec.network[0].endpoints[0].host: *.default.svc can name kubernetes.default.svc "
        "(apiServer), which the platform's egress guard closes"
    )


def test_an_invalid_configuration_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = operator_config(tmp_path, pod_cidrs=["10.244.0.1/16"])

    code, out, err = run(["policy", "render", "--config", config, write(tmp_path, SPEC)], capsys)

    assert (code, out) == (2, "")
    assert "egress_guard.pod_cidrs: '10.244.0.1/16' is not a CIDR" in err
