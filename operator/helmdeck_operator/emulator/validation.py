"""What the gateway refuses in a CreateSandbox request, in any policy it is given, and in
a service exposure.

Written from the gateway's own rules (../shared/OPENSHELL-RULES.md), over the protobuf
messages, and independent of the operator's policy model on purpose: the two are checked
against each other by a property test, so a rule one of them gets wrong shows up as a
disagreement. Every violation of a policy is collected and reported in one
INVALID_ARGUMENT, as the gateway does; messages follow the gateway's wording. Service
exposures (ExposeService, CreateSandbox `service_exposures`) follow the gateway's
grpc/service.rs: the first broken rule, as a plain INVALID_ARGUMENT without details.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

from openshell._proto import openshell_pb2, sandbox_pb2

from helmdeck_operator.emulator.errors import Code, FieldViolation, GatewayError

__all__ = [
    "MAX_CREATE_SERVICE_EXPOSURES",
    "MAX_NAME_LEN",
    "MAX_PROVIDERS",
    "MAX_ROUTABLE_NAME_LEN",
    "check_endpoint_name",
    "check_policy",
    "check_provider_name",
    "check_sandbox_spec",
    "check_service_exposure",
    "check_service_exposures",
    "check_workspace_name",
]

_L7 = frozenset({"rest", "websocket", "graphql", "sql", "json-rpc", "mcp"})
_JSON_RPC_FAMILY = frozenset({"json-rpc", "mcp"})
_OPERATION_TYPES = frozenset({"query", "mutation", "subscription"})
_IPV4 = re.compile(r"[0-9]+(\.[0-9]+){3}")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

MAX_PATHS = 256
MAX_PATH_BYTES = 4096
MAX_ID = 4294967294
MAX_PROVIDERS = 32
#: A provider's name (the gateway's MAX_NAME_LEN, the Kubernetes name limit).
MAX_NAME_LEN = 253
MAX_ENV = 128
MAX_ENV_KEY_BYTES = 256
MAX_ENV_VALUE_BYTES = 8192
MAX_ENV_TOTAL_BYTES = 256 * 1024
MAX_ARGS = 256
MAX_ARG_BYTES = 32 * 1024
MAX_COMMAND_BYTES = 256 * 1024
MAX_IMAGE_BYTES = 1024
#: A name that becomes part of a service URL's host: `workspace--sandbox--service` must fit
#: one 63-character DNS label (19 + 2 + 19 + 2 + 19 = 61; the gateway's MAX_ROUTABLE_NAME_LEN).
MAX_ROUTABLE_NAME_LEN = 19
#: Service exposures one CreateSandbox may carry; ExposeService itself has no limit.
MAX_CREATE_SERVICE_EXPOSURES = 32
_DNS_LABEL_CHARS = re.compile(r"[a-z0-9-]*")
_STRIP = openshell_pb2.SERVICE_AUTHORIZATION_MODE_STRIP
_BEARER_PASSTHROUGH = openshell_pb2.SERVICE_AUTHORIZATION_MODE_BEARER_PASSTHROUGH


def check_policy(policy: sandbox_pb2.SandboxPolicy) -> None:
    """Raise INVALID_ARGUMENT listing every content rule `policy` breaks; for a policy
    without any, FAILED_PRECONDITION listing its ambiguous endpoints (the gateway's order)."""
    _refuse(Code.INVALID_ARGUMENT, "policy validation failed", "policy", _policy_problems(policy))
    _refuse(
        Code.FAILED_PRECONDITION,
        "policy has ambiguous endpoints",
        "policy.network_policies",
        _ambiguities(policy),
    )


def _refuse(code: Code, summary: str, field: str, problems: Iterable[str]) -> None:
    found = list(problems)
    if found:
        raise GatewayError(
            code,
            f"{summary}: " + "; ".join(found),
            tuple(FieldViolation(field, problem) for problem in found),
        )


def check_sandbox_spec(spec: openshell_pb2.SandboxSpec) -> None:
    """Raise INVALID_ARGUMENT for the first request-level rule a CreateSandbox spec breaks."""
    for field, problem in _spec_problems(spec):
        raise GatewayError(
            Code.INVALID_ARGUMENT, f"{field}: {problem}", (FieldViolation(field, problem),)
        )
    if spec.HasField("policy"):
        check_policy(spec.policy)


# -- policy --------------------------------------------------------------------------------------


def _policy_problems(policy: sandbox_pb2.SandboxPolicy) -> Iterator[str]:
    for key in sorted(policy.network_policies):
        rule = policy.network_policies[key]
        name = rule.name or key
        if name.startswith("_provider_"):
            yield f"network policy '{name}': names starting _provider_ are reserved"
        for index, endpoint in enumerate(rule.endpoints):
            for problem in _endpoint_problems(endpoint):
                yield f"network policy '{name}' endpoint[{index}]: {problem}"
    if policy.HasField("filesystem"):
        yield from _filesystem_problems(policy.filesystem)
    if policy.HasField("process"):
        for field in ("run_as_user", "run_as_group"):
            value = getattr(policy.process, field)
            if value and not _valid_identity(value):
                yield f"process.{field} '{value}' must be 'sandbox' or a number from 1 to {MAX_ID}"


def _valid_identity(value: str) -> bool:
    """As the gateway reads it, Rust's `str::parse::<u32>`: one optional `+`, then ASCII
    digits, leading zeros allowed (`+7` and `007` are 7, `+0` is root)."""
    digits = value.removeprefix("+")
    return value == "sandbox" or (
        digits.isascii() and digits.isdigit() and 1 <= int(digits) <= MAX_ID
    )


def _filesystem_problems(fs: sandbox_pb2.FilesystemPolicy) -> Iterator[str]:
    paths = list(fs.read_only) + list(fs.read_write)
    if len(paths) > MAX_PATHS:
        yield f"filesystem: at most {MAX_PATHS} paths (got {len(paths)})"
    for path in paths:
        if not path.startswith("/"):
            yield f"filesystem path '{path}' must be absolute"
        if len(path.encode()) > MAX_PATH_BYTES:
            yield f"filesystem path is longer than {MAX_PATH_BYTES} bytes"
        if ".." in path.split("/"):
            yield f"filesystem path '{path}' must not contain '..'"
    # The gateway trims trailing slashes first, so `//` is the root too.
    if any(not path.rstrip("/") for path in fs.read_write):
        yield "filesystem read_write must not include '/'"


def _endpoint_problems(ep: sandbox_pb2.NetworkEndpoint) -> Iterator[str]:
    protocol = ep.protocol.lower()
    tcp = protocol == "tcp"
    l7 = protocol in _L7
    has_access = ep.access != sandbox_pb2.NETWORK_ACCESS_PRESET_UNSPECIFIED
    has_rules, has_deny = len(ep.rules) > 0, len(ep.deny_rules) > 0
    allow_all = ep.HasField("mcp") and ep.mcp.allow_all_known_mcp_methods
    yield from _host_problems(ep, tcp)
    if protocol and not l7 and not tcp:
        yield (
            f"unknown protocol '{ep.protocol}' (expected tcp, rest, websocket, graphql, sql, "
            "json-rpc, or mcp)"
        )
    if tcp and (has_access or has_rules or has_deny):
        yield "protocol tcp does not support access, rules, or deny_rules; remove those L7 fields"
    tcp_only = [
        field
        for field, present in (
            ("enforcement", ep.enforcement != sandbox_pb2.NETWORK_ENFORCEMENT_MODE_UNSPECIFIED),
            ("path", bool(ep.path)),
            ("mcp", ep.HasField("mcp")),
        )
        if present
    ]
    if tcp and tcp_only:
        fields = ", ".join(tcp_only)
        yield f"protocol tcp does not support L7-only fields: {fields}; remove those fields"
    if has_rules and has_access:
        yield "rules and access are mutually exclusive"
    if protocol in _JSON_RPC_FAMILY and has_access:
        yield f"protocol {protocol} does not support access presets"
    if protocol == "json-rpc" and not has_rules and not has_access:
        yield f"protocol {protocol} requires explicit rules with allow.method"
    if l7 and protocol not in _JSON_RPC_FAMILY and not has_rules and not has_access:
        yield "protocol requires rules or access to define allowed traffic"
    if protocol == "mcp" and not has_rules and not has_access and not allow_all:
        yield "protocol mcp requires rules when mcp.allow_all_known_mcp_methods is false"
    denies_all = has_rules and not any(_allows(rule.allow) for rule in ep.rules)
    if denies_all and not (protocol == "mcp" and allow_all):
        yield "rules would deny all traffic (no allow clause found)"
    if has_deny and not l7:
        yield "deny_rules require protocol (L7 inspection must be enabled)"
    if has_deny and protocol != "mcp" and not has_rules and not has_access:
        yield "deny_rules require rules or access to define the base allow set"
    if ep.path and not ep.path.startswith("/") and ep.path != "**":
        yield "path must start with '/' or be '**'"
    if protocol == "sql" and ep.enforcement == sandbox_pb2.NETWORK_ENFORCEMENT_MODE_ENFORCE:
        yield "SQL enforcement requires full SQL parsing; use enforcement: audit"
    if ep.HasField("mcp") and protocol != "mcp":
        yield "mcp options are only valid for protocol mcp"
    if protocol == "graphql":
        kinds = "must be query, mutation, or subscription"
        for index, rule in enumerate(ep.rules):
            if rule.allow.operation_type not in _OPERATION_TYPES:
                yield f"rules[{index}].allow.operation_type {kinds}"
        for index, deny in enumerate(ep.deny_rules):
            if deny.operation_type not in _OPERATION_TYPES:
                yield f"deny_rules[{index}].operation_type {kinds}"


def _allows(allow: sandbox_pb2.L7Allow) -> bool:
    """An allow clause says something; a query matcher alone does not."""
    return bool(
        allow.method
        or allow.path
        or allow.command
        or allow.operation_type
        or allow.operation_name
        or allow.fields
        or allow.params
    )


def _host_problems(ep: sandbox_pb2.NetworkEndpoint, tcp: bool) -> Iterator[str]:
    host = ep.host
    if not host and (tcp or not ep.allowed_ips):
        yield "host is required (or allowed_ips, for an endpoint that is not tcp)"
    if tcp and _IPV4.fullmatch(host):
        yield f"protocol tcp host '{host}' must be a DNS name, not an IP address"
    ports = list(ep.ports) or ([ep.port] if ep.port else [])
    if not ports:
        yield "at least one port is required"
    for port in ports:
        if not 1 <= port <= 65535:
            yield f"port {port} is out of range 1-65535"
    labels = host.split(".")
    if host in ("*", "**"):
        yield f"host '{host}' is not a valid wildcard"
    elif "*" in host:
        first, rest = labels[0], labels[1:]
        if ("**" in first and first != "**") or ("*" in first and first not in ("*", "**")):
            yield f"host '{host}': a wildcard must be a whole label"
        elif any("**" in label or ("*" in label and label != "*") for label in rest):
            yield f"host '{host}': '**' may only be the first label"
        elif len([label for label in labels if "*" not in label]) < 2:
            yield f"host '{host}' wildcards a top-level domain"


# -- Attach/DetachSandboxProvider ---------------------------------------------------------------


def check_provider_name(name: str) -> None:
    """The provider an Attach/DetachSandboxProvider names (plain INVALID_ARGUMENT, the
    gateway's words: it says provider_name, the field's name before 0.1.5)."""
    if not name:
        raise GatewayError(Code.INVALID_ARGUMENT, "provider_name is required")
    if len(name) > MAX_NAME_LEN:
        raise GatewayError(
            Code.INVALID_ARGUMENT,
            f"provider_name exceeds maximum length ({len(name)} > {MAX_NAME_LEN})",
        )


# -- CreateSandbox request -----------------------------------------------------------------------


def _spec_problems(spec: openshell_pb2.SandboxSpec) -> Iterator[tuple[str, str]]:
    if len(spec.providers) > MAX_PROVIDERS:
        yield "spec.providers", f"at most {MAX_PROVIDERS} providers (got {len(spec.providers)})"
    env = spec.environment
    if len(env) > MAX_ENV:
        yield "spec.environment", f"at most {MAX_ENV} entries (got {len(env)})"
    total = 0
    for key, value in sorted(env.items()):
        total += len(key.encode()) + len(value.encode())
        if not _ENV_KEY.fullmatch(key) or len(key.encode()) > MAX_ENV_KEY_BYTES:
            yield "spec.environment", f"key '{key[:64]}' must match ^[A-Za-z_][A-Za-z0-9_]*$"
        if key.startswith("OPENSHELL_"):
            yield "spec.environment", f"key '{key}' is reserved (OPENSHELL_ prefix)"
        if len(value.encode()) > MAX_ENV_VALUE_BYTES:
            yield "spec.environment", f"value of '{key}' exceeds {MAX_ENV_VALUE_BYTES} bytes"
        if any(c in value for c in "\0\r\n"):
            yield "spec.environment", f"value of '{key}' must not contain NUL, CR or LF"
    if total > MAX_ENV_TOTAL_BYTES:
        yield "spec.environment", f"exceeds {MAX_ENV_TOTAL_BYTES} bytes in total"
    command = list(spec.command)
    if len(command) > MAX_ARGS:
        yield "spec.command", f"at most {MAX_ARGS} arguments (got {len(command)})"
    if command and not command[0]:
        yield "spec.command", "the first argument must not be empty"
    for arg in command:
        if "\0" in arg:
            yield "spec.command", "arguments must not contain NUL"
        if len(arg.encode()) > MAX_ARG_BYTES:
            yield "spec.command", f"an argument exceeds {MAX_ARG_BYTES} bytes"
    if sum(len(arg.encode()) for arg in command) > MAX_COMMAND_BYTES:
        yield "spec.command", f"exceeds {MAX_COMMAND_BYTES} bytes in total"
    template = spec.template
    if len(template.image.encode()) > MAX_IMAGE_BYTES:
        yield "spec.template.image", f"exceeds {MAX_IMAGE_BYTES} bytes"


# -- service exposures --------------------------------------------------------------------------


def _invalid(message: str) -> GatewayError:
    return GatewayError(Code.INVALID_ARGUMENT, message)


def check_endpoint_name(field: str, value: str) -> None:
    """Refuse a name that cannot be part of a service URL host; empty is allowed (the
    sandbox's unnamed endpoint). `--` is refused because it separates the host's parts."""
    if not value:
        return
    if len(value.encode()) > MAX_ROUTABLE_NAME_LEN:  # bytes, as the gateway counts
        raise _invalid(
            f"{field} must be at most {MAX_ROUTABLE_NAME_LEN} characters for sandbox service "
            "routing"
        )
    if "--" in value:
        raise _invalid(f"{field} must not contain '--'")
    if value[0] == "-" or value[-1] == "-" or not _DNS_LABEL_CHARS.fullmatch(value):
        raise _invalid(f"{field} must be a lowercase DNS label")


def check_service_exposure(
    name: str, target_port: int, mode: int
) -> openshell_pb2.ServiceAuthorizationMode:
    """The authorization mode to store for a valid exposure: STRIP when unspecified (the
    gateway's default), BEARER_PASSTHROUGH as asked; any other number is refused."""
    check_endpoint_name("service", name)
    if not 1 <= target_port <= 65535:
        raise _invalid("target_port must be in 1..=65535")
    if mode == _BEARER_PASSTHROUGH:
        return _BEARER_PASSTHROUGH
    if mode in (openshell_pb2.SERVICE_AUTHORIZATION_MODE_UNSPECIFIED, _STRIP):
        return _STRIP
    raise _invalid("authorization_mode is invalid")


def check_service_exposures(
    exposures: Sequence[openshell_pb2.SandboxServiceExposure],
) -> list[tuple[str, int, openshell_pb2.ServiceAuthorizationMode]]:
    """A CreateSandbox request's exposures as (name, port, mode to store), all checked
    before anything is stored; two entries of one name (two empty ones too) are refused."""
    if len(exposures) > MAX_CREATE_SERVICE_EXPOSURES:
        raise _invalid(
            f"service_exposures must contain at most {MAX_CREATE_SERVICE_EXPOSURES} entries"
        )
    checked: dict[str, tuple[str, int, openshell_pb2.ServiceAuthorizationMode]] = {}
    for exposure in exposures:
        mode = check_service_exposure(
            exposure.service, exposure.target_port, exposure.authorization_mode
        )
        if exposure.service in checked:
            raise _invalid(f"duplicate service exposure name: '{exposure.service}'")
        checked[exposure.service] = (exposure.service, exposure.target_port, mode)
    return list(checked.values())


# -- endpoint ambiguity ---------------------------------------------------------------------------

#: The gateway's default body limit for GraphQL and JSON-RPC parsing (0 means this).
_DEFAULT_BODY_LIMIT = 65536


def _ambiguities(policy: sandbox_pb2.SandboxPolicy) -> Iterator[str]:
    """Pairs of endpoints that can authorize the same request but disagree on what must
    have one value for it (the gateway checks this once the policy is otherwise valid)."""
    endpoints = [
        (policy.network_policies[key].name or key, index, endpoint)
        for key in sorted(policy.network_policies)
        for index, endpoint in enumerate(policy.network_policies[key].endpoints)
    ]
    for position, (left_rule, left_index, left) in enumerate(endpoints):
        for right_rule, right_index, right in endpoints[position + 1 :]:
            ports = sorted(_ports(left) & _ports(right))
            if not ports or not _hosts_overlap(left.host, right.host):
                continue
            conflicts = _connection_conflicts(left, right)
            if (
                _in_request_pipeline(left)
                and _in_request_pipeline(right)
                and _paths_overlap(left.path, right.path)
                and _specificity(left.path) == _specificity(right.path)
            ):
                conflicts += _request_conflicts(left, right)
            if conflicts:
                yield (
                    f"network policies '{left_rule}' endpoint[{left_index}] ({_selector(left)}) "
                    f"and '{right_rule}' endpoint[{right_index}] ({_selector(right)}) overlap "
                    f"on port(s) {','.join(map(str, ports))} with conflicting metadata: "
                    + "; ".join(conflicts)
                )


def _ports(ep: sandbox_pb2.NetworkEndpoint) -> set[int]:
    return {p for p in ep.ports if p > 0} if ep.ports else ({ep.port} if ep.port > 0 else set())


def _selector(ep: sandbox_pb2.NetworkEndpoint) -> str:
    return f"{ep.host or '<any-host>'}:{','.join(map(str, sorted(_ports(ep))))}{ep.path}"


def _conflict(field: str, left: object, right: object) -> list[str]:
    return [] if left == right else [f"{field}={left!r} vs {right!r}"]


def _connection_conflicts(
    left: sandbox_pb2.NetworkEndpoint, right: sandbox_pb2.NetworkEndpoint
) -> list[str]:
    def tls(ep: sandbox_pb2.NetworkEndpoint) -> int:
        skip = sandbox_pb2.NETWORK_TLS_MODE_SKIP
        return skip if ep.tls == skip else sandbox_pb2.NETWORK_TLS_MODE_UNSPECIFIED

    def ips(ep: sandbox_pb2.NetworkEndpoint) -> list[str]:
        return sorted({ip.strip().lower() for ip in ep.allowed_ips})

    return (
        _conflict(
            "transparent_tcp_eligible",
            left.protocol.lower() == "tcp",
            right.protocol.lower() == "tcp",
        )
        + _conflict("tls", tls(left), tls(right))
        + _conflict("allowed_ips", ips(left), ips(right))
    )


def _in_request_pipeline(ep: sandbox_pb2.NetworkEndpoint) -> bool:
    """Whether the endpoint's metadata takes part in choosing how a request is handled."""
    return (
        ep.protocol.lower() not in ("", "tcp")
        or len(ep.allowed_ips) > 0
        or ep.tls != sandbox_pb2.NETWORK_TLS_MODE_UNSPECIFIED
        or ep.HasField("credential_binding")
    )


def _request_conflicts(
    left: sandbox_pb2.NetworkEndpoint, right: sandbox_pb2.NetworkEndpoint
) -> list[str]:
    def protocol(ep: sandbox_pb2.NetworkEndpoint) -> str:
        return "" if ep.protocol.lower() == "tcp" else ep.protocol.lower()

    def enforcement(ep: sandbox_pb2.NetworkEndpoint) -> int:
        enforce = sandbox_pb2.NETWORK_ENFORCEMENT_MODE_ENFORCE
        return enforce if ep.enforcement == enforce else sandbox_pb2.NETWORK_ENFORCEMENT_MODE_AUDIT

    def limit(value: int) -> int:
        return value or _DEFAULT_BODY_LIMIT

    conflicts = (
        _conflict("protocol", protocol(left), protocol(right))
        + _conflict("enforcement", enforcement(left), enforcement(right))
        + _conflict("allow_encoded_slash", left.allow_encoded_slash, right.allow_encoded_slash)
    )
    both = {protocol(left), protocol(right)}
    if both == {"websocket"}:
        conflicts += _conflict(
            "websocket_graphql_policy",
            _graphql_over_websocket(left),
            _graphql_over_websocket(right),
        )
    if both == {"graphql"}:
        conflicts += _conflict(
            "graphql_max_body_bytes",
            limit(left.graphql_max_body_bytes),
            limit(right.graphql_max_body_bytes),
        )
    if len(both) == 1 and both <= _JSON_RPC_FAMILY:
        conflicts += _conflict(
            "json_rpc_max_body_bytes",
            limit(left.json_rpc_max_body_bytes),
            limit(right.json_rpc_max_body_bytes),
        )
    if both == {"mcp"}:
        conflicts += _conflict("mcp.strict_tool_names", _strict_tools(left), _strict_tools(right))
    return conflicts


def _graphql_over_websocket(ep: sandbox_pb2.NetworkEndpoint) -> bool:
    def names_graphql(match: sandbox_pb2.L7Allow | sandbox_pb2.L7DenyRule) -> bool:
        return bool(match.operation_type or match.operation_name or match.fields)

    return (
        len(ep.graphql_persisted_queries) > 0
        or ep.persisted_queries not in ("", "deny")
        or any(names_graphql(rule.allow) for rule in ep.rules)
        or any(names_graphql(deny) for deny in ep.deny_rules)
    )


def _strict_tools(ep: sandbox_pb2.NetworkEndpoint) -> bool:
    return (
        ep.mcp.strict_tool_names
        if ep.HasField("mcp") and ep.mcp.HasField("strict_tool_names")
        else True
    )


def _specificity(path: str) -> int:
    """How specific a path selector is: its characters other than `*` (0 for none)."""
    return sum(1 for c in path if c != "*")


def _hosts_overlap(left: str, right: str) -> bool:
    if not left or not right:
        return True
    return _globs_overlap(_tokens(left.lower(), "."), _tokens(right.lower(), "."), ".")


def _paths_overlap(left: str, right: str) -> bool:
    if not left or not right or left in ("**", "/**") or right in ("**", "/**"):
        return True
    return _globs_overlap(_tokens(left, None), _tokens(right, None), None)


# A glob token: a literal character, "?" (any one character), or a star; a star crosses the
# delimiter when it is "**" (hosts) or always (paths: the gateway matches paths with stars
# that may cross "/"). Character classes are read as "?", which can only find more overlaps.
_ANY = "?"
_STAR = "*"
_STARS = "**"


def _tokens(pattern: str, delimiter: str | None) -> list[str]:
    tokens: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "*":
            end = index
            while end < len(pattern) and pattern[end] == "*":
                end += 1
            tokens.append(_STARS if end - index >= 2 or delimiter is None else _STAR)
            index = end
        elif char == "[" and delimiter is None and "]" in pattern[index + 1 :]:
            tokens.append(_ANY)
            index = pattern.index("]", index + 1) + 1
        elif char == "?" and delimiter is None:
            tokens.append(_ANY)
            index += 1
        else:
            tokens.append("=" + char)
            index += 1
    return tokens


def _globs_overlap(left: list[str], right: list[str], delimiter: str | None) -> bool:
    """Whether some string matches both globs: a search over pairs of positions."""

    def accepts(token: str, char: str) -> bool:
        if token.startswith("="):
            return token[1:] == char
        return token != _STAR or char != delimiter

    start = (0, 0)
    seen, todo = {start}, [start]
    while todo:
        i, j = todo.pop()
        if i == len(left) and j == len(right):
            return True
        moves = []
        if i < len(left) and left[i] in (_STAR, _STARS):
            moves.append((i + 1, j))  # the star matches nothing more
        if j < len(right) and right[j] in (_STAR, _STARS):
            moves.append((i, j + 1))
        if i < len(left) and j < len(right):
            a, b = left[i], right[j]
            literal = a[1:] if a.startswith("=") else b[1:] if b.startswith("=") else "x"
            if accepts(a, literal) and accepts(b, literal):
                moves.append(
                    (i if a in (_STAR, _STARS) else i + 1, j if b in (_STAR, _STARS) else j + 1)
                )
        for move in moves:
            if move not in seen:
                seen.add(move)
                todo.append(move)
    return False


# -- CreateWorkspace ----------------------------------------------------------------------------


def check_workspace_name(name: str) -> None:
    """The name of a workspace to create (the gateway's workspace.rs and its DNS-1123 rule,
    first broken rule wins): required, routable (it is the first part of endpoint hosts),
    lowercase letters, digits and single hyphens inside."""
    if not name:
        raise _invalid("workspace name is required")
    if len(name) > MAX_ROUTABLE_NAME_LEN:
        raise _invalid(
            f"workspace name exceeds maximum length ({len(name)} > {MAX_ROUTABLE_NAME_LEN})"
        )
    problem = None
    if not _DNS_LABEL_CHARS.fullmatch(name):
        problem = "must contain only lowercase alphanumeric characters or hyphens"
    elif name[0] == "-" or name[-1] == "-":
        problem = "must not start or end with a hyphen"
    elif "--" in name:
        problem = "must not contain consecutive hyphens"
    if problem is not None:
        message = f"workspace name {problem}"
        raise GatewayError(Code.INVALID_ARGUMENT, message, (FieldViolation("name", message),))
