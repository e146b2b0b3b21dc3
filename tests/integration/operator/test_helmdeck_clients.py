"""helmdeck's session runtime from the consumer's side (docs/helmdeck.md): the Go and Python
examples, built and run as a user would, against the real operator and the emulator as the
gateway; and the documented Roles, applied from the page: a consumer bound to its Role runs
a whole session, a renewer bound to its Role renews and can do nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from helmdeck_dev.controlplane import ControlPlane
from helmdeck_dev.emulator_process import EmulatorProcess
from helmdeck_dev.objects import condition
from tests.support.cluster import Kube
from tests.support.helmdeck_doc import GO_EXAMPLE, PY_EXAMPLE, doc_yaml

#: The examples wait this long for Ready: the operator may still be starting.
READY_TIMEOUT_S = 60
#: An absent time, read as long ago.
EPOCH = "1970-01-01T00:00:00Z"
#: A Go build of client-go on a cold cache takes about a minute on two cores.
GO_BUILD_TIMEOUT_S = 280


@pytest.fixture(scope="module")
def go_example(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The Go example built as its README says (into a temporary dir, never the repo)."""
    if shutil.which("go") is None:
        pytest.skip("no `go` on PATH: the Go example cannot be built here")
    binary = tmp_path_factory.mktemp("go-example") / "helmdeck-session"
    built = subprocess.run(
        ["go", "build", "-o", str(binary), "./"],
        cwd=GO_EXAMPLE,
        env={**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"},
        capture_output=True,
        text=True,
        check=False,
        timeout=GO_BUILD_TIMEOUT_S,
    )
    assert built.returncode == 0, built.stderr
    return [str(binary)]


@pytest.fixture
def python_example() -> list[str]:
    return [sys.executable, str(PY_EXAMPLE)]


Example = Callable[..., dict[str, str]]


@pytest.fixture
def example(kube: Kube) -> Example:
    """example(command, label, name, kubeconfig, *flags) -> its `key: value` lines, printed.

    Both examples take the same flags (Go's flag package reads `--name` as `-name`)."""

    def run(command: list[str], label: str, name: str, kubeconfig: Path, *flags: str) -> Any:
        args = ["--kubeconfig", str(kubeconfig), "--namespace", kube.namespace, "--name", name]
        args += ["--timeout", f"{READY_TIMEOUT_S}s" if label == "go" else str(READY_TIMEOUT_S)]
        result = subprocess.run(
            [*command, *args, *flags],
            capture_output=True,
            text=True,
            check=False,
            timeout=READY_TIMEOUT_S + 60,
        )
        for line in result.stdout.splitlines():
            print(f"{label} example: {line}")
        assert result.returncode == 0, result.stdout + result.stderr
        lines = [line.split(": ", 1) for line in result.stdout.splitlines()]
        keys = [key for key, _ in lines]
        assert len(keys) == len(set(keys)), f"a line printed twice: {result.stdout}"
        return dict(lines)

    return run


def sandbox_of(gateway: EmulatorProcess, namespace: str, name: str) -> dict[str, Any] | None:
    for s in gateway.snapshot()["sandboxes"]:
        if s["annotations"].get("helmdeck.dev/session") == f"{namespace}/{name}":
            return dict(s)
    return None


def gateway_url(gateway: EmulatorProcess, kube: Kube, name: str, port: str) -> str:
    """The URL the gateway holds for the session's sandbox's endpoint `port`; from the
    session's status if this emulator does not list services."""
    sandbox = sandbox_of(gateway, kube.namespace, name)
    assert sandbox is not None, f"no sandbox on the gateway for {name}"
    if "services" in sandbox:
        urls = {s["name"]: s["url"] for s in sandbox["services"]}
    else:
        urls = ((kube.get("hds", name) or {}).get("status") or {}).get("endpoints", {})
    return str(urls[port])


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@pytest.mark.usefixtures("operator")
@pytest.mark.parametrize("label", ["go", "python"])
def test_an_example_provisions_waits_renews_and_extends_a_session(
    label: str,
    request: pytest.FixtureRequest,
    example: Example,
    cluster: ControlPlane,
    kube: Kube,
    gateway: EmulatorProcess,
    eventually: Any,
) -> None:
    command = request.getfixturevalue(f"{label}_example")
    name = f"{label}-research"
    out = example(command, label, name, cluster.kubeconfig, "--keep")

    session = kube.get("hds", name)
    assert session is not None
    status = session["status"]
    on_gateway = sandbox_of(gateway, kube.namespace, name)
    assert on_gateway is not None
    assert out["sandbox"] == status["sandbox"]["name"] == on_gateway["name"]
    # The URL the gateway returned for the sandbox's cdp service, as the consumer read it.
    assert out["cdp endpoint"] == gateway_url(gateway, kube, name, "cdp")
    assert out["mcp endpoint"] == gateway_url(gateway, kube, name, "mcp")

    # Renewed and extended: the lease is the consumer's, written as sent.
    assert status["lease"] == {
        "renewTime": out["renewed"],
        "expireTime": out["extension requested"],
    }
    created = parse(session["metadata"]["creationTimestamp"])
    wanted = parse(out["extension requested"])
    assert (wanted - created).total_seconds() == 90 * 60  # ttl 1h, then 30 minutes more
    renewed = parse(out["renewed"])

    def answered(s: dict[str, Any]) -> bool:
        st = s["status"]
        return (
            parse(st.get("expiresAt", EPOCH)) == wanted
            and parse(st.get("lastActivityAt", EPOCH)) >= renewed
        )

    extended = eventually(
        kube.when("hds", name, answered), "expiresAt at the extension, activity at the renewal"
    )
    granted = condition(extended, "LifetimeExtended")
    status = extended["status"]
    print(
        f"{label} example: expiresAt {status['expiresAt']} (created {created:%H:%M:%S}),"
        f" lastActivityAt {status['lastActivityAt']}, idleAt {status.get('idleAt')},"
        f" LifetimeExtended {granted.get('status')} {granted.get('reason')}"
    )
    assert granted["status"] == "True"
    assert parse(status["idleAt"]) == parse(status["lastActivityAt"]) + timedelta(minutes=15)

    kube.run("delete", "hds", name)
    eventually(lambda: sandbox_of(gateway, kube.namespace, name) is None, "the sandbox gone")


def bind(kube: Kube, role: str, account: str) -> str:
    """Apply the doc's Role `role`, bind it to a new ServiceAccount; its user name."""
    kube.run("create", "serviceaccount", account)
    granted = doc_yaml("role", role)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": account},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": granted["metadata"]["name"],
        },
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": kube.namespace}],
    }
    kube.apply(granted, binding)
    return f"system:serviceaccount:{kube.namespace}:{account}"


@pytest.mark.usefixtures("operator")
def test_a_consumer_with_the_documented_role_runs_both_examples_to_the_end(
    go_example: list[str],
    python_example: list[str],
    example: Example,
    cluster: ControlPlane,
    kube: Kube,
    gateway: EmulatorProcess,
    eventually: Any,
    tmp_path: Path,
) -> None:
    bind(kube, "consumer", "consumer")
    kubeconfig = cluster.serviceaccount_kubeconfig(
        kube.namespace, "consumer", tmp_path / "consumer.kubeconfig"
    )
    for label, command in (("go", go_example), ("python", python_example)):
        name = f"{label}-consumer"
        out = example(command, label, name, kubeconfig)
        assert out["deleted"] == name
        assert out["cdp endpoint"].startswith("http")
    eventually(lambda: kube.list("hds") == [], "both sessions gone")
    eventually(
        lambda: all(
            sandbox_of(gateway, kube.namespace, n) is None
            for n in ("go-consumer", "python-consumer")
        ),
        "both sandboxes gone",
    )


def test_a_renewer_with_only_the_status_right_renews_and_can_do_nothing_else(
    cluster: ControlPlane, kube: Kube
) -> None:
    # The doc's session, as written (no operator needed: this is the apiserver's RBAC).
    kube.apply(doc_yaml("session", "research"))
    renewer = bind(kube, "renewer", "renewer")
    token = kube.run("create", "token", "renewer").strip()

    def patch(path: str, body: dict[str, Any]) -> tuple[int, str]:
        """The consumer's request: a JSON merge patch, with the renewer's token."""
        url = f"{cluster.server}/apis/helmdeck.dev/v1alpha1/namespaces/{kube.namespace}"
        request = urllib.request.Request(
            f"{url}/helmdecksessions/research{path}",
            data=json.dumps(body).encode(),
            method="PATCH",
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/merge-patch+json",
            },
        )
        tls = ssl.create_default_context(cafile=str(cluster.ca_file))
        try:
            with urllib.request.urlopen(request, context=tls, timeout=10) as response:
                return response.status, ""
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())["message"]

    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    renewed = patch("/status", {"status": {"lease": {"renewTime": now}}})
    print(f"renewer: PATCH .../research/status lease.renewTime: HTTP {renewed[0]}")
    assert renewed == (200, "")
    refused = patch("", {"spec": {"suspend": True}})
    print(f"renewer: PATCH .../research spec.suspend: HTTP {refused[0]} {refused[1]}")
    assert refused[0] == 403
    session = kube.get("hds", "research")
    assert session is not None
    assert session["status"]["lease"]["renewTime"] == now
    assert not session["spec"].get("suspend")  # the spec patch changed nothing

    # It reads the status (the verdicts of its renewals) and nothing else.
    def as_renewer(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return cluster.kubectl(f"--as={renewer}", *args, "-n", kube.namespace, stdin=stdin)

    read = as_renewer("get", "hds", "research", "--subresource=status", "-o", "json")
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout)["status"]["lease"]["renewTime"] == now
    another = json.dumps({**doc_yaml("session", "research"), "metadata": {"name": "another"}})
    for what, args, stdin in (
        ("get", ("get", "hds", "research"), None),
        ("delete", ("delete", "hds", "research"), None),
        ("create", ("create", "-f", "-"), another),
    ):
        denied = as_renewer(*args, stdin=stdin)
        print(f"renewer: {what}: {denied.stderr.strip()}")
        assert denied.returncode != 0
        assert "forbidden" in denied.stderr.lower(), denied.stderr
