"""Typed, immutable models of the SidecarPolicy `spec`, mirroring the CRD exactly.

The CRD (crds/sidecarpolicies.helmdeck.dev.yaml) is the single source of truth for the spec
shape; these models restate it so that code below the kopf handlers works on typed values and
so that `helmdeck-operator policy render` gives the apiserver's answers without a cluster:

- field names are the CRD's camelCase spellings (aliases), unknown fields are refused (as
  `kubectl apply` with server-side field validation does);
- scalars are strict (a quoted port is an error, as it is for the apiserver);
- the CRD's defaults are applied, and an absent `filesystem`, `landlock`, `process` or
  `rollout` object means the same as an empty one, so a spec read before or after apiserver
  defaulting yields equal models;
- every OpenAPI constraint (lengths, patterns, bounds, enums, list sets and map keys) and every
  CEL rule is re-checked, and reported at the path the apiserver would report.

tests/unit/policy/test_policy_crd_agreement.py walks the CRD and these models side by side.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Hashable, Mapping
from typing import Annotated, Literal, TypeVar

import pydantic
from annotated_types import Interval, Len, MaxLen
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, StringConstraints
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from helmdeck_operator.policy import ambiguity, errors

__all__ = [
    "Access",
    "Compatibility",
    "Endpoint",
    "Enforcement",
    "Filesystem",
    "L7Match",
    "L7Rule",
    "Landlock",
    "McpOptions",
    "Method",
    "NetworkRule",
    "OperationType",
    "Process",
    "Protocol",
    "QueryMatcher",
    "Rollout",
    "SidecarPolicySpec",
    "StaticChanges",
    "TlsMode",
    "parse_spec",
]

_Item = TypeVar("_Item", bound=Hashable)

#: The error type our own checks report under; pydantic prints only the message.
_RULE_ERROR = "policy_rule"


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError(_RULE_ERROR, message)


# --- checks restating the CRD's x-kubernetes-list-type and CEL rules --------------------------


def _unique(items: tuple[_Item, ...]) -> tuple[_Item, ...]:
    """`x-kubernetes-list-type: set`: the apiserver refuses duplicate entries."""
    seen: set[_Item] = set()
    for item in items:
        if item in seen:
            raise _fail(f"duplicate value {item!r}: this list is a set")
        seen.add(item)
    return items


# CEL `matches` is RE2, which anchors `$` at the very end; `re.fullmatch` and `re.search`
# with explicit anchors do the same where Python's `$` would also accept a trailing newline.
_WILDCARD_HOST = re.compile(r"\*\*?\.[^*.]+\.[^*]+")
_WILDCARD_WELL_PLACED = re.compile(r"(\*\*?\.)?[^*]*")
_HOST_CHARACTERS = re.compile(r"(\*\*?\.)?[-a-z0-9.]+")
_EMPTY_LABEL = re.compile(r"^\.|\.\.|\.\Z")
_HYPHEN_AT_LABEL_EDGE = re.compile(r"(^|\.)-|-(\.|\Z)")
_LONG_LABEL = re.compile(r"[^.]{64,}")
_DIGITS_AND_DOTS = re.compile(r"[0-9]+(\.[0-9]+)*")


def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address as CEL's `isIP` reads one (Go's net/netip, as Kubernetes configures
    it): dotted IPv4 without leading zeros, or IPv6 without a zone and not IPv4-mapped."""
    if "%" in value:
        return None
    try:
        parsed = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return None
    return parsed


def _host_problems(host: str) -> list[str]:
    """The CEL rules on `host`, in the CRD's order. Each judges one property of the name,
    and the character rules wait for a well-placed wildcard, so one mistake gives one
    message, as in the CRD."""
    problems = []
    if "*" in host and not _WILDCARD_HOST.fullmatch(host):
        problems.append(
            f"host {host} may use a wildcard only as its whole first label, above at least "
            "two more labels (*.example.com or **.example.com)"
        )
    ipv6 = ":" in host and _parse_ip(host) is not None
    if ipv6:
        problems.append(
            f"host {host} is an IPv6 address: a host is a DNS name or an IPv4 address; "
            "give a name and list its IPv6 addresses or ranges in allowedIps"
        )
    characters_ok = _HOST_CHARACTERS.fullmatch(host) is not None
    if _WILDCARD_WELL_PLACED.fullmatch(host) and not characters_ok and not ipv6:
        problems.append(
            f"host {host} must be a lowercase DNS name or IPv4 address (letters, digits, '-' "
            "and '.'; no scheme, port or path)"
        )
    if characters_ok and _EMPTY_LABEL.search(host):
        problems.append(f"host {host} has an empty label (a leading, trailing or doubled '.')")
    if characters_ok and _HYPHEN_AT_LABEL_EDGE.search(host):
        problems.append(f"host {host} has a label that starts or ends with '-'")
    if _LONG_LABEL.search(host):
        problems.append(f"host {host} has a label longer than 63 characters")
    if _DIGITS_AND_DOTS.fullmatch(host) and _parse_ip(host) is None:
        problems.append(
            f"host {host} is all digits and dots, so it must be an IPv4 address: four numbers "
            "from 0 to 255 without leading zeros, such as 203.0.113.7"
        )
    return problems


def _check_host(host: str) -> str:
    problems = _host_problems(host)
    if problems:
        raise _fail("; ".join(problems))
    return host


_PREFIX_BITS = re.compile(r"0|[1-9][0-9]{0,2}")
_IP_OR_CIDR = "allowedIps entries must be an IP address or a CIDR such as 203.0.113.0/24"


def _check_ip_or_cidr(value: str) -> str:
    """CEL `isIP(self) || isCIDR(self)` as Kubernetes implements them (Go's net/netip):
    no IPv6 zones, no IPv4-mapped IPv6, a prefix length in decimal rather than a netmask;
    then, for a CIDR, the rule that it names its network (no host bits)."""
    address, slash, bits = value.partition("/")
    if _parse_ip(address) is None or (slash and not _PREFIX_BITS.fullmatch(bits)):
        raise _fail(_IP_OR_CIDR)
    if not slash:
        return value
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise _fail(_IP_OR_CIDR) from None
    if network.network_address != ipaddress.ip_address(address):
        raise _fail(
            f"allowedIps entry {value} has host bits set: write its network address, with "
            f"every bit after the first {bits} set to 0"
        )
    return value


#: The largest uid or gid OpenShell takes (2^32 - 2: 2^32 - 1 is the kernel's "no id").
_MAX_ID = 4294967294
#: A plain decimal number from 1: no sign, spaces or leading zeros, so that no spelling of
#: root (`00`, `+0`, `0x0`) or of another id (`007`) depends on how a tool parses it.
_CANONICAL_ID = re.compile(r"[1-9][0-9]{0,9}")


def _identity(field: str, kind: str, root: str) -> AfterValidator:
    """`sandbox` or a number from 1 to _MAX_ID in plain decimal: the gateway resolves no
    other names, and would read `007` as 7 and `000` as root."""

    def check(value: str) -> str:
        if value != "sandbox" and not (_CANONICAL_ID.fullmatch(value) and int(value) <= _MAX_ID):
            raise _fail(
                f"{field} {value} must be sandbox or a numeric {kind} from 1 to {_MAX_ID} in "
                "plain decimal (no sign, spaces or leading zeros; OpenShell resolves no other "
                f"{'user' if kind == 'uid' else 'group'} names, and never runs as {root})"
            )
        return value

    return AfterValidator(check)


_DOTDOT = re.compile(r"(^|/)\.\.(/|\Z)")
_DOT = re.compile(r"(^|/)\.(/|\Z)")


def _segment_problems(path: str) -> list[str]:
    """The CEL rules every path has: no `..` or `.` segment and no empty one (`//`). A
    request path is matched after the proxy normalises it, and a file path after the kernel
    resolves it, so a spelling with such segments names something other than it reads."""
    problems = []
    if _DOTDOT.search(path):
        problems.append(f"path {path} has a .. component; write it without one")
    if _DOT.search(path):
        problems.append(f"path {path} has a . component; write it without one")
    if "//" in path:
        problems.append(f"path {path} has an empty component (//); write a single /")
    return problems


def _request_path(path: str) -> str:
    """An L7 path glob: its segments are canonical; a trailing `/` is meaningful there."""
    problems = _segment_problems(path)
    if problems:
        raise _fail("; ".join(problems))
    return path


def _file_path(path: str) -> str:
    """A filesystem or program path in canonical form, so that set membership and the
    readOnly/readWrite check compare what the kernel compares."""
    problems = _segment_problems(path)
    if path != "/" and path.endswith("/"):
        problems.append(f"path {path} ends with /; write it without the trailing /")
    if problems:
        raise _fail("; ".join(problems))
    return path


def _within(path: str, directory: str) -> bool:
    """Whether canonical `path` is `directory` or under it, segment by segment (`/data2` is
    not under `/data`). Written as the CRD's CEL rule is, so `/` (refused for readWrite by
    its own rule) contains nothing here."""
    return path == directory or path.startswith(directory + "/")


# --- scalar types, one per distinct CRD string or integer schema ------------------------------

_AbsolutePath = Annotated[str, StringConstraints(strict=True, max_length=1024, pattern=r"^/")]
_RequestPath = Annotated[_AbsolutePath, AfterValidator(_request_path)]
# The allow and deny rules' path: the same canonical segments as `_request_path` checks, as
# the CRD's pattern (CEL's cost budget cannot cover the 131,072 rule paths a policy may hold).
_MatchPath = Annotated[
    str,
    StringConstraints(
        strict=True,
        max_length=1024,
        pattern=r"^/$|^(/([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+))+/?$",
    ),
]
_RuleName = Annotated[
    str,
    StringConstraints(
        strict=True, min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$"
    ),
]
_Host = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=253),
    AfterValidator(_check_host),
]
_Port = Annotated[int, Strict(), Interval(ge=1, le=65535)]
_IpOrCidr = Annotated[
    str, StringConstraints(strict=True, max_length=64), AfterValidator(_check_ip_or_cidr)
]
# Query parameter names are free-form; the constraint only makes pydantic refuse strings that
# cannot be UTF-8 encoded (lone surrogates), which protobuf would otherwise raise on later.
_QueryName = Annotated[str, StringConstraints(strict=True)]
_QueryValue = Annotated[str, StringConstraints(strict=True, max_length=256)]
_Identity = Annotated[str, StringConstraints(strict=True, max_length=32)]
_FilePath = Annotated[_AbsolutePath, AfterValidator(_file_path)]
_OperationName = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256)]

Protocol = Literal["tcp", "rest", "websocket", "graphql", "sql", "json-rpc", "mcp"]
TlsMode = Literal["terminate", "passthrough", "skip"]
Enforcement = Literal["enforce", "audit"]
Access = Literal["read-only", "read-write", "full"]
Method = Literal[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "*"
]
OperationType = Literal["query", "mutation", "subscription"]
Compatibility = Literal["best_effort", "hard_requirement"]
StaticChanges = Literal["Reject", "Recreate"]


class _SpecModel(BaseModel):
    """Common configuration: camelCase names only, nothing unknown, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        extra="forbid",
        frozen=True,
        # Strict mode would refuse lists for tuple fields; the scalar types are strict each.
        strict=False,
    )

    @pydantic.model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: object) -> object:
        """The apiserver prunes null fields (none is nullable) before defaulting and
        validation, so `port: null` means absent and `includeWorkdir: null` means true."""
        if isinstance(data, Mapping):
            return {key: value for key, value in data.items() if value is not None}
        return data


# --- network ----------------------------------------------------------------------------------


class QueryMatcher(_SpecModel):
    """Matches one query parameter: by `glob`, or by exact values in `any`."""

    glob: _QueryValue | None = None
    any_of: Annotated[tuple[_QueryValue, ...], MaxLen(32)] | None = Field(None, alias="any")

    @pydantic.model_validator(mode="after")
    def _exactly_one(self) -> QueryMatcher:
        # CEL has() is true for an empty list or string too, hence `is None`.
        if (self.glob is None) == (self.any_of is None):
            raise _fail("a query matcher sets exactly one of glob or any")
        return self


class L7Match(_SpecModel):
    """The requests an allow rule allows, or a deny rule denies."""

    method: Method | None = None
    path: _MatchPath | None = None
    operation_type: OperationType | None = None
    operation_name: _OperationName | None = None
    query: Annotated[Mapping[_QueryName, QueryMatcher], MaxLen(16)] | None = None

    def allows_something(self) -> bool:
        """What the gateway counts as an allow clause (a query matcher alone is not one)."""
        return any(
            v is not None
            for v in (self.method, self.path, self.operation_type, self.operation_name)
        )

    def names_an_operation(self) -> bool:
        return self.operation_type is not None or self.operation_name is not None


class L7Rule(_SpecModel):
    """One explicit allow rule."""

    allow: L7Match


class McpOptions(_SpecModel):
    """Options of an mcp endpoint."""

    allow_all_known_methods: Annotated[bool, Strict()] | None = None


#: Protocols that inspect requests and allow only what access or rules say.
_NEEDS_ACCESS_OR_RULES = ("rest", "websocket", "graphql", "sql")
_JSON_RPC_FAMILY = ("json-rpc", "mcp")
_IPV4_LITERAL = re.compile(r"[0-9]+(\.[0-9]+){3}")


class Endpoint(_SpecModel):
    """One destination of a network rule."""

    host: _Host
    port: _Port | None = None
    ports: Annotated[tuple[_Port, ...], Len(1, 16), AfterValidator(_unique)] | None = None
    path: _RequestPath | None = None
    protocol: Protocol | None = None
    tls: TlsMode | None = None
    enforcement: Enforcement | None = None
    access: Access | None = None
    rules: Annotated[tuple[L7Rule, ...], Len(1, 64)] | None = None
    deny_rules: Annotated[tuple[L7Match, ...], MaxLen(64)] | None = None
    mcp: McpOptions | None = None
    allowed_ips: Annotated[tuple[_IpOrCidr, ...], MaxLen(32), AfterValidator(_unique)] | None = None

    @pydantic.model_validator(mode="after")
    def _cel_rules(self) -> Endpoint:
        # The apiserver evaluates every CEL rule and reports each failure; so do we, in one
        # error at the endpoint's path (CEL has() is true for empty lists, hence `is None`).
        # The rules after the first three are the gateway's (../shared/OPENSHELL-RULES.md).
        problems = []
        protocol = self.protocol
        l7 = protocol not in (None, "tcp")
        allow_all = self.mcp is not None and self.mcp.allow_all_known_methods is True
        if (self.port is None) == (self.ports is None):
            problems.append("set exactly one of port or ports")
        if self.access is not None and self.rules is not None:
            problems.append("access is a preset: set access or rules, not both")
        inspects = self.access is not None or self.rules is not None or self.deny_rules is not None
        if inspects and not l7:
            problems.append(
                "access, rules and denyRules inspect requests, so they need an L7 protocol "
                "(rest, websocket, graphql, sql, json-rpc or mcp), not tcp"
            )
        if not l7 and (self.path is not None or self.enforcement is not None):
            problems.append(
                "path and enforcement apply to request inspection, so they need an L7 protocol "
                "(rest, websocket, graphql, sql, json-rpc or mcp), not tcp"
            )
        if not l7 and _IPV4_LITERAL.fullmatch(self.host):
            problems.append(
                f"a tcp endpoint's host must be a DNS name, not the IP address {self.host}; "
                "to reach an address, give a name and limit it with allowedIps"
            )
        if protocol in _NEEDS_ACCESS_OR_RULES and self.access is None and self.rules is None:
            problems.append(
                f"protocol {protocol} inspects requests and allows only what access or rules "
                "say: set one of them (access: read-only, for example)"
            )
        if protocol in _JSON_RPC_FAMILY and self.access is not None:
            problems.append(
                f"protocol {protocol} takes no access preset: list rules with allow.method"
                + (", or set mcp.allowAllKnownMethods" if protocol == "mcp" else "")
            )
        if protocol == "json-rpc" and self.rules is None:
            problems.append(
                "protocol json-rpc needs rules naming the allowed methods (allow.method)"
            )
        if protocol == "mcp" and self.rules is None and self.access is None and not allow_all:
            problems.append(
                "protocol mcp needs rules naming the allowed methods, or "
                "mcp.allowAllKnownMethods: true"
            )
        if self.mcp is not None and protocol != "mcp":
            problems.append("mcp options apply to protocol mcp only")
        rules = self.rules
        if (
            rules is not None
            and not any(r.allow.allows_something() for r in rules)
            and not (protocol == "mcp" and allow_all)
        ):
            problems.append(
                "these rules allow nothing: give at least one rule's allow a method, path or "
                "operationType (a query matcher alone does not allow), or use access"
            )
        if self.deny_rules and protocol != "mcp" and rules is None and self.access is None:
            problems.append(
                "denyRules subtract from what access or rules allow: set one of them too"
            )
        if protocol == "sql" and self.enforcement == "enforce":
            problems.append(
                "protocol sql supports enforcement: audit only (the gateway cannot parse SQL "
                "fully enough to block)"
            )
        matches = [r.allow for r in rules or ()] + list(self.deny_rules or ())
        if protocol == "graphql" and any(m.operation_type is None for m in matches):
            problems.append(
                "on a graphql endpoint every rule's allow and every deny rule needs "
                "operationType (query, mutation or subscription)"
            )
        if protocol != "graphql" and any(m.names_an_operation() for m in matches):
            problems.append("operationType and operationName apply to protocol graphql only")
        if problems:
            raise _fail("; ".join(problems))
        return self


def _unique_names(rules: tuple[NetworkRule, ...]) -> tuple[NetworkRule, ...]:
    """`x-kubernetes-list-type: map` keyed by name; names are also the OpenShell map keys."""
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise _fail(f"duplicate rule name {rule.name!r}: rule names are unique")
        seen.add(rule.name)
    return rules


def _unambiguous(rules: tuple[NetworkRule, ...]) -> tuple[NetworkRule, ...]:
    """Not a CRD rule (CEL cannot compare every pair of endpoints within its cost limits) but
    the gateway's: endpoints that can meet must agree (`ambiguity`)."""
    problems = list(ambiguity.conflicts(rules))
    if problems:
        raise _fail("; ".join(problems))
    return rules


class NetworkRule(_SpecModel):
    """A named rule: its binaries may reach its endpoints."""

    name: _RuleName
    endpoints: Annotated[tuple[Endpoint, ...], Len(1, 32)]
    binaries: Annotated[tuple[_FilePath, ...], MaxLen(32), AfterValidator(_unique)] | None = None


# --- filesystem, landlock, process, rollout ---------------------------------------------------

_PathSet = Annotated[tuple[_FilePath, ...], MaxLen(64), AfterValidator(_unique)]


class Filesystem(_SpecModel):
    """Paths the sandbox may read, or read and write."""

    include_workdir: Annotated[bool, Strict()] = True
    read_only: _PathSet | None = None
    read_write: _PathSet | None = None

    @pydantic.field_validator("read_write")
    @classmethod
    def _writes_no_read_only_path(
        cls, read_write: tuple[str, ...] | None, info: pydantic.ValidationInfo
    ) -> tuple[str, ...] | None:
        """The CRD's rules on `filesystem`, reported at `readWrite` (their `fieldPath`). A
        readOnly path that is a readWrite path, or under one, would be writable: the policy
        would say less than it grants. A readWrite path under a readOnly one is a writable
        carve-out and says what it means. Paths are canonical here, so a segment-wise prefix
        is the whole test. `read_only` is absent from `info.data` when it was invalid."""
        problems = []
        read_only = info.data.get("read_only") or ()
        if any(_within(ro, rw) for ro in read_only for rw in read_write or ()):
            problems.append(
                "a path cannot be both readOnly and readWrite: a readOnly path that is a "
                "readWrite path or under one would be writable"
            )
        if "/" in (read_write or ()):
            problems.append(
                "readWrite cannot be / (the whole filesystem); name the directories to write"
            )
        if problems:
            raise _fail("; ".join(problems))
        return read_write


class Landlock(_SpecModel):
    """Landlock LSM mode."""

    compatibility: Compatibility = "best_effort"


class Process(_SpecModel):
    """Identity of the sandboxed process; never root."""

    run_as_user: Annotated[_Identity, _identity("runAsUser", "uid", "root")] | None = None
    run_as_group: Annotated[_Identity, _identity("runAsGroup", "gid", "group root")] | None = None


class Rollout(_SpecModel):
    """Bounds for `staticChanges: Recreate`."""

    max_unavailable: Annotated[int, Strict(), Interval(ge=1, le=100)] = 1


class SidecarPolicySpec(_SpecModel):
    """The `spec` of a SidecarPolicy."""

    network: (
        Annotated[
            tuple[NetworkRule, ...],
            MaxLen(64),
            AfterValidator(_unique_names),
            AfterValidator(_unambiguous),
        ]
        | None
    ) = None
    filesystem: Filesystem = Field(default_factory=Filesystem)
    landlock: Landlock = Field(default_factory=Landlock)
    process: Process = Field(default_factory=Process)
    static_changes: StaticChanges = "Reject"
    rollout: Rollout = Field(default_factory=Rollout)


def parse_spec(raw: object) -> SidecarPolicySpec:
    """Validate a spec as the apiserver would; a model passes through unchanged.

    Raises `errors.PolicyValidationError` and nothing else, whatever `raw` is.
    """
    if isinstance(raw, SidecarPolicySpec):
        return raw
    try:
        return SidecarPolicySpec.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise errors.from_pydantic(exc) from exc
