"""Two replicas, one active: the Lease holder reconciles, the other waits and takes over."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helmdeck_dev.controlplane import ControlPlane, free_port
from helmdeck_dev.objects import phase, session
from helmdeck_dev.operator_process import OperatorProcess
from tests.support.replicas import holder, probe


def test_only_the_lease_holder_reconciles_and_a_standby_takes_over(
    cluster: ControlPlane,
    namespace: str,
    kube: Any,
    eventually: Any,
    operator_config: Path,
    tmp_path: Path,
) -> None:
    replicas = []
    for name in ("replica-a", "replica-b"):
        port = free_port()
        process = OperatorProcess(
            operator_config,
            cluster.kubeconfig,
            tmp_path / f"{name}.log",
            env={"POD_NAME": name, "POD_NAMESPACE": namespace},
            args=["--leader-election", "--health-port", str(port), "--namespace", namespace],
        )
        replicas.append((name, port, process))
    try:
        replicas[0][2].start()
        eventually(lambda: holder(cluster, namespace) == "replica-a", "replica-a holds the lease")
        replicas[1][2].start()
        eventually(lambda: probe(replicas[1][1], "/readyz")[0] == 200, "standby ready")
        assert "standby" in probe(replicas[1][1], "/readyz")[1]
        eventually(
            lambda: "leader: watching" in probe(replicas[0][1], "/readyz")[1], "leader watching"
        )

        kube.apply(session("first", "python"))
        eventually(lambda: phase(kube.get("hds", "first")) == "Ready", "Ready under replica-a")
        assert "standby: lease" in replicas[1][2].log_tail()
        assert "session_daemon" not in replicas[1][2].log_tail(400)

        # Node loss: SIGKILL, no release. replica-b takes over once the lease expires.
        replicas[0][2].kill()
        eventually(
            lambda: holder(cluster, namespace) == "replica-b", "replica-b takes over", timeout=60
        )
        kube.apply(session("second", "python"))
        eventually(lambda: phase(kube.get("hds", "second")) == "Ready", "Ready under replica-b")

        # A clean stop releases the lease at once; a restarted replica-a takes it quickly.
        replicas[0][2].start()
        eventually(lambda: probe(replicas[0][1], "/readyz")[0] == 200, "replica-a back as standby")
        replicas[1][2].stop()
        eventually(
            lambda: holder(cluster, namespace) == "replica-a", "handover on stop", timeout=15
        )
    finally:
        for _, _, process in replicas:
            process.stop()


def test_probes_answer_without_leader_election(
    cluster: ControlPlane, eventually: Any, operator_config: Path, tmp_path: Path
) -> None:
    port = free_port()
    process = OperatorProcess(
        operator_config, cluster.kubeconfig, tmp_path / "op.log", args=["--health-port", str(port)]
    ).start()
    try:
        assert eventually(lambda: probe(port, "/healthz")[0] == 200, "alive")
        _, body = eventually(
            lambda: (answer := probe(port, "/readyz"))[0] == 200 and answer, "ready"
        )
        assert body.startswith("leader: watching")
        assert "gateway pods: reachable" in body
        assert "gateway microvm: reachable" in body
    finally:
        process.stop()
