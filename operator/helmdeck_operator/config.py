"""The operator's configuration: one YAML file plus `HELMDECK_*` environment overrides.

Validated once at start-up into frozen models, so a bad field stops the operator with one
line per problem (`gateways.0.endpoint: ...`) instead of failing later inside a reconcile.
The Helm chart renders the file from its values; the environment is for one-off overrides
(`HELMDECK_DEFAULT_GATEWAY=vm`, `HELMDECK_INTERVALS__RESYNC_SECONDS=10`,
`HELMDECK_NAMESPACES=team-a,team-b`). Secrets never appear here, only paths to mounted files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from helmdeck_operator.gateway.config import GatewayConfig
from helmdeck_operator.policy.guard import EgressGuard, parse_cidr, parse_name

__all__ = [
    "ENV_PREFIX",
    "FAMILIES",
    "FAMILY_PORTS",
    "Authorization",
    "Concurrency",
    "ConfigError",
    "EgressGuardConfig",
    "Family",
    "FamilyDefaults",
    "Intervals",
    "Observability",
    "OperatorConfig",
    "Port",
    "RateLimits",
    "Resources",
    "Sessions",
    "Tenancy",
    "TenancyFallback",
    "load_config",
]

Family = Literal["browser", "python", "node", "vision"]
Authorization = Literal["Strip", "BearerPassthrough"]
FAMILIES: tuple[Family, ...] = ("browser", "python", "node", "vision")
ENV_PREFIX = "HELMDECK_"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class ConfigError(ValueError):
    """The configuration is invalid; `problems` holds one `path: message` line per field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"invalid configuration ({source}):\n  " + "\n  ".join(problems))


class _Frozen(BaseModel):
    # `cpu: 2` in YAML, or HELMDECK_INSTANCE=2024, arrive as numbers; they mean the string.
    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)


class Resources(_Frozen):
    """Default sandbox size for a family (Kubernetes quantities)."""

    cpu: str = "1"
    memory: str = "1Gi"
    gpu: int = Field(default=0, ge=0, le=8)


class Port(_Frozen):
    """A sidecar port exposed through the gateway as a named endpoint: a family default
    here, and the shape of each `spec.ports` entry of a session (the same three fields)."""

    name: str = Field(min_length=1, max_length=19, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    """The gateway's service name rule: a lowercase DNS label of at most 19 characters
    without '--' (it separates workspace, sandbox and service in endpoint hosts)."""
    port: int = Field(ge=1, le=65535)
    authorization: Authorization = "Strip"
    """Strip: the gateway removes the caller's Authorization header; BearerPassthrough: it
    forwards one well-formed bearer token."""

    @field_validator("name")
    @classmethod
    def _no_double_dash(cls, value: str) -> str:
        if "--" in value:
            raise ValueError("a port name cannot contain '--'")
        return value


class FamilyDefaults(_Frozen):
    """What a session of one family gets when its spec leaves a field out."""

    image: str = Field(min_length=1)
    """Pinned image reference."""
    command: tuple[str, ...] = Field(min_length=1)
    """The sidecar entrypoint: OpenShell's supervisor replaces the image's own."""
    resources: Resources = Resources()
    policy_file: Path
    """A SidecarPolicy manifest (policies/<family>.yaml): the policy when no policyRef is set."""
    ports: tuple[Port, ...] | None = Field(default=None, max_length=32)
    """Ports exposed for a session that does not list its own (`spec.ports`); absent: the
    family's in `FAMILY_PORTS` (an empty list exposes none)."""

    @field_validator("ports")
    @classmethod
    def _unique_ports(cls, ports: tuple[Port, ...] | None) -> tuple[Port, ...] | None:
        # What the CRD enforces on spec.ports: the gateway refuses a repeated name.
        if ports is None:
            return None
        names, numbers = [p.name for p in ports], [str(p.port) for p in ports]
        for what, values in (("name", names), ("port", numbers)):
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(
                    f"each port {what} may be listed once; repeated: {', '.join(repeated)}"
                )
        return ports


#: What helmdeck's sidecars serve (DESIGN.md section 9): Chrome DevTools and Playwright MCP in
#: the browser, DevTools and noVNC on the desktop (vision); python and node serve nothing.
FAMILY_PORTS: dict[Family, tuple[Port, ...]] = {
    "browser": (Port(name="cdp", port=9222), Port(name="mcp", port=8931)),
    "vision": (Port(name="cdp", port=9222), Port(name="vnc", port=6080)),
    "python": (),
    "node": (),
}


class Intervals(_Frozen):
    """How often things are looked at again, in seconds."""

    resync_seconds: float = Field(default=30.0, gt=0, le=3600)
    """Each gateway's sandboxes are listed this often (one paginated call per gateway) to
    catch drift: a sandbox deleted, failed or changed behind the operator's back."""
    pending_seconds: float = Field(default=1.0, gt=0, le=60)
    """Pace of the fallbacks: probing a gateway that is down, the back-off of a failed pass
    (first between half and all of it, doubling up to 60 s), and, at a quarter of it, a
    listing while sandboxes in transition have no watch stream (more than
    `concurrency.gateway_watches` at once)."""
    orphan_sweep_seconds: float = Field(default=300.0, gt=0, le=86400)
    """How often each gateway is swept for sandboxes whose session no longer exists."""
    orphan_grace_seconds: float = Field(default=120.0, ge=0, le=86400)
    """Sandboxes younger than this are never swept (their session may not be visible yet)."""
    outage_grace_seconds: float = Field(default=10.0, ge=0, le=3600)
    """A gateway that has not answered for this long is reported on every session it
    serves (Ready Unknown); shorter blips are reported only by sessions that had work."""


class Concurrency(_Frozen):
    """Bounds that keep a burst of work from overwhelming the operator or a gateway."""

    workers: int = Field(default=32, ge=1, le=1024)
    """Reconcile passes running at once (each on its own object)."""
    gateway_mutations: int = Field(default=32, ge=1, le=1024)
    """Create / delete / stop / start / config-update calls in flight per gateway."""
    gateway_watches: int = Field(default=100, ge=0, le=10000)
    """WatchSandbox streams open at once per gateway, for sandboxes in transition, given
    while no more than this many wait for one (a burst or a fan-out is cheaper to observe
    with listings, one call for all); others
    are observed by a listing every quarter of `intervals.pending_seconds`. Keep it below the
    gateway's limit of concurrent streams per connection (200 with the real gateway)."""


class RateLimits(_Frozen):
    """How fast the operator may write to the Kubernetes API (gateways: per gateway,
    `gateways[].rate_limit`). Token buckets: `burst` at once, then `qps` per second; 0
    turns a limit off."""

    kube_qps: float = Field(default=1000.0, ge=0, le=100000)
    """Reads and writes of the operator's own calls (status, finalizers, Events, deletes)."""
    kube_burst: int = Field(default=2000, ge=1, le=100000)
    events_qps: float = Field(default=50.0, ge=0, le=100000)
    """Event writes, a share of the above: Events never delay a status write."""
    events_burst: int = Field(default=200, ge=1, le=100000)
    events_backlog: int = Field(default=5000, ge=1, le=1000000)
    """Events waiting to be written; beyond it they are dropped and counted."""
    recovery_wakes_per_second: float = Field(default=2000.0, ge=0, le=100000)
    """Sessions re-queued per second when a gateway answers again after an outage."""


class Observability(_Frozen):
    """Reading sandboxes' OCSF events to surface policy denials (reconcile/denials.py)."""

    follow_denials: bool = True
    """Read each READY sandbox's new log lines and turn OCSF denials into Events and
    helmdeck_policy_denials_total."""
    denial_poll_min_seconds: float = Field(default=10.0, gt=0, le=3600)
    """A sandbox is read this often while it produces denials (and first this long after
    it is seen READY)."""
    denial_poll_max_seconds: float = Field(default=300.0, gt=0, le=86400)
    """Each quiet read doubles a sandbox's interval up to this: the longest a denial after a
    quiet spell waits to be seen."""
    denial_polls_per_second: float = Field(default=5.0, gt=0, le=10000)
    """Log reads per second per gateway at most, whatever the number of sandboxes."""
    denial_window_seconds: float = Field(default=60.0, ge=1, le=3600)
    """Repeats of the same denial within this window become one summary Event."""

    @model_validator(mode="before")
    @classmethod
    def _removed(cls, values: Any) -> Any:
        if isinstance(values, dict) and "max_followers" in values:
            raise ValueError(
                "max_followers was removed in 0.2: denials are read by one poller per gateway, "
                "not a log stream per session; delete it (see denial_polls_per_second)"
            )
        return values

    @model_validator(mode="after")
    def _ordered(self) -> Observability:
        if self.denial_poll_min_seconds > self.denial_poll_max_seconds:
            raise ValueError("denial_poll_min_seconds must not exceed denial_poll_max_seconds")
        return self


#: A Kubernetes label key: an optional DNS-subdomain prefix and '/', then a name of at most
#: 63 characters (the gateway takes label keys by the same rule).
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)


class Sessions(_Frozen):
    """What every session gets, whatever its spec says."""

    max_lifetime_seconds: float = Field(default=7 * 86400.0, gt=0, le=8760 * 3600.0)
    """A lease renewal (status.lease.expireTime) may extend a session's lifetime up to this
    long after its creation; a later end is refused (condition LifetimeExtended False)."""
    copy_labels: tuple[str, ...] = ("helmdeck.dev/run-id",)
    """Label keys copied from a session onto its sandbox when the sandbox is created, so
    gateway-side tooling can select a run's sandboxes. The operator's own sandbox labels
    (helmdeck.dev/managed-by, session-uid, pool-uid, family) always keep their values."""

    @field_validator("copy_labels")
    @classmethod
    def _label_keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        bad = [k for k in keys if len(k) > 316 or not _LABEL_KEY.match(k)]
        if bad:
            raise ValueError(f"not Kubernetes label keys: {', '.join(bad)}")
        return keys


class TenancyFallback(StrEnum):
    """The rules of a namespace that names no TenantPolicy when none is called `default`."""

    SAFE = "Safe"
    """The built-in safe rules (core/tenancy.py SAFE_DEFAULT)."""
    OPEN = "Open"
    """No tenancy rules: a single-tenant cluster, or one where `default` always exists."""


class Tenancy(_Frozen):
    """Tenancy (core/tenancy.py): namespaces as tenants, ruled by TenantPolicy objects."""

    fallback: TenancyFallback = TenancyFallback.OPEN
    """Open keeps an operator run without any TenantPolicy (a development cluster, CRDs
    only) working as before; the chart sets Safe and creates a safe `default` TenantPolicy,
    so a chart install is safe for a shared cluster from the start."""


class EgressGuardConfig(_Frozen):
    """What no policy may reach, merged into every policy the operator sends
    (policy/guard.py). The link-local ranges (169.254.0.0/16, fe80::/10: the cloud metadata
    service) are always guarded and cannot be switched off; a tenant is let through only by
    its tenancy rules' exemptions."""

    api_server: tuple[str, ...] = ()
    """The Kubernetes API server: its addresses or CIDRs and its in-cluster names
    (kubernetes.default.svc...)."""
    service_cidrs: tuple[str, ...] = ()
    """The cluster's Service ranges."""
    pod_cidrs: tuple[str, ...] = ()
    """The cluster's Pod ranges."""
    hosts: tuple[str, ...] = ()
    """Further names (metadata.google.internal...); `*.` or `**.` as the first label
    guards a whole domain."""
    cidrs: tuple[str, ...] = ()
    """Further ranges or addresses."""

    # Each field checked on its own, so a bad entry stops the operator with its field's
    # path (egress_guard.service_cidrs: ...), not later inside a reconcile.
    @field_validator("api_server")
    @classmethod
    def _addresses_or_names(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        for entry in entries:
            try:
                parse_cidr(entry)
            except ValueError:
                parse_name(entry)
        return entries

    @field_validator("service_cidrs", "pod_cidrs", "cidrs")
    @classmethod
    def _cidrs(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        for entry in entries:
            parse_cidr(entry)
        return entries

    @field_validator("hosts")
    @classmethod
    def _names(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        for entry in entries:
            parse_name(entry)
        return entries

    def guard(self) -> EgressGuard:
        return EgressGuard.build(
            api_server=self.api_server,
            service_cidrs=self.service_cidrs,
            pod_cidrs=self.pod_cidrs,
            hosts=self.hosts,
            cidrs=self.cidrs,
        )


class OperatorConfig(_Frozen):
    """The whole operator configuration."""

    instance: str = ""
    """Written on every sandbox as helmdeck.dev/managed-by; the orphan sweep only ever
    touches sandboxes carrying this instance's value, so two installs can share a gateway.
    Empty: derived at start from the cluster's identity and `release`
    (core.naming.derived_instance), the same on every start of this installation."""
    release: str = ""
    """This installation's name, unique within the cluster (the chart writes its Helm
    release's namespace/name): with the cluster's identity, the seed of a derived
    `instance`. Unused when `instance` is set."""
    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty watches the whole cluster."""
    default_gateway: str
    """Gateway for sessions that do not name one."""
    gateways: tuple[GatewayConfig, ...] = Field(min_length=1)
    families: dict[Family, FamilyDefaults]
    intervals: Intervals = Intervals()
    concurrency: Concurrency = Concurrency()
    rate_limits: RateLimits = RateLimits()
    observability: Observability = Observability()
    sessions: Sessions = Sessions()
    tenancy: Tenancy = Tenancy()
    egress_guard: EgressGuardConfig = EgressGuardConfig()
    on_sandbox_lost: Literal["Recreate", "Fail"] = "Recreate"
    """A sandbox deleted behind the operator's back is recreated, or the session Failed."""

    @field_validator("instance")
    @classmethod
    def _label_value(cls, value: str) -> str:
        if value and not _DNS_LABEL.match(value):
            raise ValueError("must be a DNS label (lowercase letters, digits, '-'; 63 at most)")
        return value

    @model_validator(mode="after")
    def _instance_or_release(self) -> OperatorConfig:
        # Derived from the cluster alone, every installation on a cluster would share one
        # instance and sweep the others' sandboxes.
        if not self.instance and not self.release:
            raise ValueError(
                "set instance, or release (namespace/name of this installation) to derive it"
            )
        return self

    @model_validator(mode="after")
    def _consistent(self) -> OperatorConfig:
        names = [g.name for g in self.gateways]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"gateway names must be unique; repeated: {', '.join(duplicates)}")
        if self.default_gateway not in names:
            raise ValueError(
                f"default_gateway {self.default_gateway!r} is not one of the gateways: "
                + ", ".join(names)
            )
        return self

    @field_validator("families")
    @classmethod
    def _every_family(cls, families: dict[Family, FamilyDefaults]) -> dict[Family, FamilyDefaults]:
        # A field check (not a model check) so it is reported alongside other field errors.
        missing = [f for f in FAMILIES if f not in families]
        if missing:
            raise ValueError(f"defaults missing for {', '.join(missing)}")
        return {
            family: d
            if d.ports is not None
            else d.model_copy(update={"ports": FAMILY_PORTS[family]})
            for family, d in families.items()
        }

    def gateway(self, name: str | None) -> GatewayConfig | None:
        wanted = name or self.default_gateway
        return next((g for g in self.gateways if g.name == wanted), None)


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> OperatorConfig:
    """Read `path` (if any), apply `HELMDECK_*` overrides, validate; raise ConfigError."""
    environ = os.environ if environ is None else environ
    source = str(path) if path else "environment"
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as err:
            raise ConfigError(source, [f"cannot read the file: {err.strerror}"]) from None
        except yaml.YAMLError as err:
            raise ConfigError(source, [f"not valid YAML: {err}"]) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(source, ["the file must hold a mapping of settings"])
        raw = loaded or {}
    problems = _apply_environment(raw, environ)
    if problems:
        raise ConfigError(source, problems)
    if path is not None:
        _resolve_relative_paths(raw, path.parent)
    try:
        return OperatorConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(source, [_describe(e) for e in err.errors()]) from None


def _describe(error: Any) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{location}: {message}"


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Set `HELMDECK_A__B=v` as raw[a][b] = v (v parsed as a YAML scalar or flow value)."""
    problems: list[str] = []
    for key in sorted(environ):
        if not key.startswith(ENV_PREFIX) or key in _NOT_SETTINGS or _SERVICE_LINK.search(key):
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX) :].split("__")]
        if path[0] not in OperatorConfig.model_fields:
            problems.append(f"{key}: no setting {path[0]!r}")
            continue
        value = _env_value(environ[key])
        if path == ["namespaces"] and isinstance(value, str):
            value = [n.strip() for n in value.split(",") if n.strip()]
        target: Any = raw
        for depth, part in enumerate(path[:-1]):
            index: Any = int(part) if part.isdigit() else part
            if not isinstance(target, dict | list):
                problems.append(f"{key}: {'.'.join(path[:depth])} is not a mapping or list")
                break
            if isinstance(target, list):
                if not isinstance(index, int) or index >= len(target):
                    problems.append(f"{key}: no list entry {part}")
                    break
                target = target[index]
            else:
                target = target.setdefault(index, {})
        else:
            last = path[-1]
            if not isinstance(target, dict | list):
                problems.append(f"{key}: {'.'.join(path[:-1])} is not a mapping or list")
                continue
            if isinstance(target, list):
                if not last.isdigit() or int(last) >= len(target):
                    problems.append(f"{key}: no list entry {last}")
                    continue
                target[int(last)] = value
            else:
                target[last] = value
    return problems


def _env_value(text: str) -> Any:
    """A YAML scalar or flow value; text YAML cannot parse (`[::1]:17670`) is the string."""
    if not text:
        return ""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


#: Kubernetes' Docker-link variables for any Service named helmdeck-* in the operator's
#: namespace (HELMDECK_OPERATOR_METRICS_SERVICE_HOST, ..._PORT_8080_TCP_ADDR): never settings.
_SERVICE_LINK = re.compile(
    r"_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT(_\d+_(TCP|UDP|SCTP)(_\w+)?)?)$"
)
#: Variables with our prefix that configure something else (the operator's CLI flags).
_NOT_SETTINGS = frozenset({"HELMDECK_CONFIG", "HELMDECK_LOG_LEVEL", "HELMDECK_CRASHPOINTS"})


def _resolve_relative_paths(raw: dict[str, Any], base: Path) -> None:
    """Policy files are named relative to the config file, as the chart mounts them side by side."""
    families = raw.get("families")
    if not isinstance(families, dict):
        return
    for defaults in families.values():
        if isinstance(defaults, dict) and isinstance(defaults.get("policy_file"), str):
            policy = Path(defaults["policy_file"])
            defaults["policy_file"] = str(policy if policy.is_absolute() else base / policy)
