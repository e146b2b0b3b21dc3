"""`helmdeck-operator run` and `helmdeck-operator check`.

`run` validates the configuration (a clear line per bad field, exit 2), then runs the kopf
operator against the current kubeconfig or the in-cluster ServiceAccount. `check` is the
preflight a platform engineer runs before (or instead of) trusting a deployment: CRDs
installed at the expected version, every permission the operator uses granted, every
gateway reachable with its credentials accepted; a table, and a non-zero exit on any miss.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from helmdeck_operator.config import OperatorConfig
    from helmdeck_operator.kube import Kube

__all__ = ["CLUSTER_PERMISSIONS", "CRDS", "PERMISSIONS", "register"]

logger = logging.getLogger(__name__)

#: (verb, resource, subresource) the operator needs in the helmdeck.dev group, and events.
PERMISSIONS: tuple[tuple[str, str, str, str | None], ...] = (
    ("get", "helmdeck.dev", "helmdecksessions", None),
    ("list", "helmdeck.dev", "helmdecksessions", None),
    ("watch", "helmdeck.dev", "helmdecksessions", None),
    ("patch", "helmdeck.dev", "helmdecksessions", None),
    ("delete", "helmdeck.dev", "helmdecksessions", None),
    ("patch", "helmdeck.dev", "helmdecksessions", "status"),
    ("get", "helmdeck.dev", "sessionpools", None),
    ("list", "helmdeck.dev", "sessionpools", None),
    ("watch", "helmdeck.dev", "sessionpools", None),
    ("patch", "helmdeck.dev", "sessionpools", None),
    ("patch", "helmdeck.dev", "sessionpools", "status"),
    ("list", "helmdeck.dev", "sidecarpolicies", None),
    ("watch", "helmdeck.dev", "sidecarpolicies", None),
    ("patch", "helmdeck.dev", "sidecarpolicies", None),
    ("patch", "helmdeck.dev", "sidecarpolicies", "status"),
    ("create", "", "events", None),
    ("patch", "", "events", None),
)
#: Cluster-wide reads for tenancy (core/tenancy.py), whatever namespaces are watched.
CLUSTER_PERMISSIONS: tuple[tuple[str, str, str, str | None], ...] = (
    ("list", "helmdeck.dev", "tenantpolicies", None),
    ("watch", "helmdeck.dev", "tenantpolicies", None),
    ("list", "", "namespaces", None),
    ("watch", "", "namespaces", None),
)
CRDS = (
    "helmdecksessions.helmdeck.dev",
    "sessionpools.helmdeck.dev",
    "sidecarpolicies.helmdeck.dev",
    "tenantpolicies.helmdeck.dev",
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, handler, text in (
        ("run", _run, "run the operator"),
        ("check", _check, "preflight: CRDs, permissions, gateways"),
    ):
        parser = sub.add_parser(name, help=text)
        parser.add_argument(
            "--config",
            type=Path,
            default=os.environ.get("HELMDECK_CONFIG"),
            help="operator configuration file (default: $HELMDECK_CONFIG)",
        )
        parser.add_argument(
            "--namespace",
            action="append",
            default=[],
            help="watch only this namespace (repeatable; overrides the configuration)",
        )
        parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        parser.set_defaults(handler=handler)
        if name == "run":
            parser.add_argument(
                "--leader-election",
                action="store_true",
                help="run only while holding a coordination.k8s.io Lease (for several replicas)",
            )
            parser.add_argument("--lease-name", default="helmdeck-operator")
            parser.add_argument(
                "--lease-namespace", help="namespace of the Lease (default: $POD_NAMESPACE)"
            )
            parser.add_argument(
                "--health-port",
                type=int,
                default=0,
                help="serve /healthz and /readyz on this port (0: off)",
            )
            parser.add_argument(
                "--metrics-port",
                type=int,
                default=0,
                help="serve Prometheus /metrics on this port (0: off)",
            )


def _load(args: argparse.Namespace) -> OperatorConfig | None:
    from helmdeck_operator.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return None
    if args.namespace:
        config = config.model_copy(update={"namespaces": tuple(args.namespace)})
    problems = _family_policy_problems(config)
    if problems:
        print("error: family default policies:\n  " + "\n  ".join(problems), file=sys.stderr)
        return None
    return config


def _family_policy_problems(config: OperatorConfig) -> list[str]:
    """Each family's policy_file must exist, translate and pass the egress guard: checked
    before kopf starts, so a bad file stops the operator with its path instead of failing
    inside a start-up handler."""
    import yaml

    from helmdeck_operator.config import FAMILIES
    from helmdeck_operator.policy.errors import PolicyValidationError
    from helmdeck_operator.runtime import load_family_policy

    problems = []
    guard = config.egress_guard.guard()
    for family in FAMILIES:
        path = config.families[family].policy_file
        try:
            load_family_policy(family, path, guard)
        except OSError as err:
            problems.append(f"families.{family}.policy_file: cannot read {path}: {err.strerror}")
        except (PolicyValidationError, ValueError, yaml.YAMLError) as err:
            problems.append(f"families.{family}.policy_file: {path}: {err}")
    return problems


def _run(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return 2
    level = "DEBUG" if args.verbose else os.environ.get("HELMDECK_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if level != "DEBUG":
        # A line per HTTP request and per kopf handler call is noise at a thousand sessions
        # (and costs CPU); their warnings and errors still show.
        for chatty in ("httpx", "httpx2", "kopf.objects"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
    return asyncio.run(_operate(config, args))


async def _operate(config: OperatorConfig, args: argparse.Namespace) -> int:
    """Serve probes, wait for the Lease when electing, run kopf until stopped or deposed."""
    import kopf

    from helmdeck_operator.core.naming import CLUSTER_ID_NAMESPACE
    from helmdeck_operator.handlers import build_registry
    from helmdeck_operator.health import Health, serve_health, serve_metrics
    from helmdeck_operator.kube import Kube, KubeError
    from helmdeck_operator.leader import LeaderElector
    from helmdeck_operator.observability.metrics import Metrics
    from helmdeck_operator.observability.tracing import configure_tracing

    configure_tracing()
    metrics = Metrics()
    health = Health()
    probes = await serve_health(health, args.health_port) if args.health_port else None
    scrape = await serve_metrics(metrics, args.metrics_port) if args.metrics_port else None
    elector: LeaderElector | None = None
    lost = asyncio.Event()
    keeper: asyncio.Task[None] | None = None
    # For the derived instance and the Lease (kopf has its own client for the rest).
    kube = Kube.from_environment()
    try:
        try:
            config, source = await _instance(config, kube)
        except KubeError as err:
            logger.error(
                "cannot derive the instance: %s; set the configuration's instance, or grant "
                "get on Namespace %s",
                err,
                CLUSTER_ID_NAMESPACE,
            )
            return 1
        # Logged on every start (and shown by `check`): what this installation's sandboxes
        # carry as helmdeck.dev/managed-by, the value to pin before a rename or a migration.
        logger.info("instance %s (%s)", config.instance, source)
        if args.leader_election:
            identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
            elector = LeaderElector(
                kube,
                name=args.lease_name,
                namespace=args.lease_namespace or os.environ.get("POD_NAMESPACE", "default"),
                identity=identity,
            )
            health.role = "standby"
            await elector.acquire()
            keeper = asyncio.create_task(elector.keep(lost))
        health.role = "leader"
        namespaces = list(config.namespaces)
        await kopf.operator(
            registry=build_registry(),
            clusterwide=not namespaces,
            namespaces=namespaces,
            memo=kopf.Memo(config=config, metrics=metrics, health=health),
            standalone=True,
            stop_flag=lost,
            ready_flag=health.watching,
        )
    finally:
        if keeper is not None:
            keeper.cancel()
        if elector is not None and not lost.is_set():
            await elector.release()
        await kube.close()
        for server in (probes, scrape):
            if server is not None:
                await server.cleanup()
    # A deposed leader exits non-zero: its pod restarts and comes back as a standby.
    return 1 if lost.is_set() else 0


async def _instance(config: OperatorConfig, kube: Kube) -> tuple[OperatorConfig, str]:
    """The configuration with its instance set (derived from the cluster when left empty:
    one GET of the kube-system Namespace), and where the value came from."""
    from helmdeck_operator.core.naming import CLUSTER_ID_NAMESPACE, derived_instance

    if config.instance:
        return config, "configured"
    uid = await kube.namespace_uid(CLUSTER_ID_NAMESPACE)
    derived = derived_instance(uid, config.release)
    source = f"derived from the {CLUSTER_ID_NAMESPACE} Namespace's UID and release {config.release}"
    return config.model_copy(update={"instance": derived}), source


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool
    detail: str


def _check(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return 2
    checks = asyncio.run(_run_checks(config))
    width = max(len(c.what) for c in checks)
    for c in checks:
        print(f"{'ok  ' if c.ok else 'FAIL'}  {c.what.ljust(width)}  {c.detail}")
    failed = sum(not c.ok for c in checks)
    print(f"\n{len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


async def _run_checks(config: OperatorConfig) -> list[Check]:
    from helmdeck_operator import API_VERSION
    from helmdeck_operator.gateway.client import GatewayClient
    from helmdeck_operator.gateway.errors import GatewayError
    from helmdeck_operator.kube import Kube, KubeError

    checks: list[Check] = []
    kube = Kube.from_environment()
    try:
        try:
            resolved, source = await _instance(config, kube)
            checks.append(Check(f"instance {resolved.instance}", True, source))
        except KubeError as err:
            checks.append(Check("instance", False, f"cannot derive it: {err}"))
        for crd in CRDS:
            try:
                served = await kube.crd_versions(crd)
            except KubeError as err:
                checks.append(Check(f"CRD {crd}", False, str(err)))
                continue
            if served is None:
                checks.append(Check(f"CRD {crd}", False, "not installed: kubectl apply -f crds/"))
            else:
                ok = API_VERSION in served
                checks.append(Check(f"CRD {crd}", ok, f"serves {', '.join(served)}"))
        scopes: list[str | None] = list(config.namespaces) or [None]
        wanted = [(ns, p) for ns in scopes for p in PERMISSIONS]
        wanted += [(None, p) for p in CLUSTER_PERMISSIONS]
        for namespace, (verb, group, resource, sub) in wanted:
            what = f"{verb} {resource}{'/' + sub if sub else ''}"
            where = f" in {namespace}" if namespace else " cluster-wide"
            try:
                allowed = await kube.can_i(verb, group, resource, namespace, sub)
            except KubeError as err:
                checks.append(Check(what + where, False, str(err)))
                continue
            checks.append(Check(what + where, allowed, "allowed" if allowed else "denied"))
    finally:
        await kube.close()
    for gateway in config.gateways:
        client = GatewayClient(gateway)
        try:
            await client.start()
            health = await client.health()
            identity = await client.whoami()
            detail = f"{health.status.value} {health.version}; authenticated as {identity.subject}"
            checks.append(Check(f"gateway {gateway.name}", True, detail))
        except GatewayError as err:
            # The platform team runs the checks: it gets the gateway's words, not a tenant's.
            checks.append(Check(f"gateway {gateway.name}", False, f"{err.reason}: {err.for_log()}"))
        finally:
            await client.close()
    return checks
