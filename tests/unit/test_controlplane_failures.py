"""Control-plane start-up failures name the binary and show its log, and leave nothing running."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from helmdeck_dev.controlplane import Binaries, ControlPlane, ControlPlaneError

FAKE_ETCD = """#!/usr/bin/env python3
import http.server, sys
url = next(a for a in sys.argv if a.startswith("--listen-client-urls="))
port = int(url.rsplit(":", 1)[1])

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"health":"true"}')

http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


def fake_binary(path: Path, script: str) -> Path:
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_a_crashing_etcd_is_named_with_its_log_tail(tmp_path: Path) -> None:
    binaries = Binaries(
        etcd=fake_binary(
            tmp_path / "etcd", "echo 'listen tcp: address already in use' >&2; exit 3"
        ),
        kube_apiserver=tmp_path / "kube-apiserver",
        kube_controller_manager=None,
        kubectl=tmp_path / "kubectl",
    )
    plane = ControlPlane(state_dir=tmp_path / "state", binaries=binaries)
    with pytest.raises(ControlPlaneError) as err:
        plane.start()
    message = str(err.value)
    assert message.startswith("etcd exited with code 3")
    assert "listen tcp: address already in use" in message
    assert plane.processes == []


def test_a_missing_apiserver_binary_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("cryptography")
    # A stand-in etcd that answers /health, so start-up reaches the apiserver step.
    etcd = tmp_path / "etcd"
    etcd.write_text(FAKE_ETCD)
    etcd.chmod(0o755)
    binaries = Binaries(
        etcd=etcd,
        kube_apiserver=tmp_path / "no-such-kube-apiserver",
        kube_controller_manager=None,
        kubectl=tmp_path / "kubectl",
    )
    plane = ControlPlane(state_dir=tmp_path / "state", binaries=binaries)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ControlPlaneError, match=r"kube-apiserver: binary .*no-such-kube-apiserver does not exist"
    ):
        plane.start()
    assert plane.processes == []
