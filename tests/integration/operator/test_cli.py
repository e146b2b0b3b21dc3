"""`helmdeck-operator check` and `run` as an administrator meets them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from helmdeck_dev.controlplane import ControlPlane


def cli(*args: str, kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "helmdeck_operator", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        check=False,
    )


def test_check_passes_against_a_working_setup(cluster: ControlPlane, operator_config: Path) -> None:
    result = cli("check", "--config", str(operator_config), kubeconfig=cluster.kubeconfig)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(
        line.startswith("ok") and "CRD helmdecksessions.helmdeck.dev" in line for line in lines
    )
    assert any(line.startswith("ok") and "patch helmdecksessions/status" in line for line in lines)
    assert any(line.startswith("ok") and "CRD sessionpools.helmdeck.dev" in line for line in lines)
    assert any(line.startswith("ok") and "patch sessionpools/status" in line for line in lines)
    assert any(
        line.startswith("ok") and "gateway pods" in line and "HEALTHY" in line for line in lines
    )
    assert lines[-1].endswith(" passed, 0 failed")


def test_check_names_what_is_missing(
    cluster: ControlPlane, namespace: str, operator_config: Path, tmp_path: Path
) -> None:
    config = yaml.safe_load(operator_config.read_text())
    config["gateways"][1]["endpoint"] = "127.0.0.1:9"  # nothing listens on the discard port
    broken = tmp_path / "config.yaml"
    broken.write_text(yaml.safe_dump(config))
    assert cluster.kubectl("create", "serviceaccount", "nobody", "-n", namespace).returncode == 0
    kubeconfig = cluster.serviceaccount_kubeconfig(namespace, "nobody", tmp_path / "kubeconfig")

    result = cli("check", "--config", str(broken), "--namespace", namespace, kubeconfig=kubeconfig)

    assert result.returncode == 1
    failures = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert any(
        f"patch helmdecksessions/status in {namespace}" in f and "denied" in f for f in failures
    )
    assert any("gateway microvm" in f and "GatewayUnavailable" in f for f in failures)
    assert not any("gateway pods" in f for f in failures)


def test_run_refuses_a_bad_configuration_naming_each_field(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "default_gateway": "nowhere",
                "gateways": [
                    {"name": "pods", "endpoint": "gateway.example.com:8080", "plaintext": True}
                ],
                "families": {},
            }
        )
    )
    result = cli("run", "--config", str(config), kubeconfig=tmp_path / "unused")
    assert result.returncode == 2
    assert "gateways.0" in result.stderr
    assert "plaintext" in result.stderr
    assert "families" in result.stderr
