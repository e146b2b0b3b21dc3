"""Properties over generated specs: translation is total (a policy or a PolicyValidationError,
never anything else), revisions ignore order where the CRD says order means nothing, and
the change classifier follows OpenShell's live-update rules."""

from __future__ import annotations

import copy
import ipaddress
import random
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from openshell._proto import sandbox_pb2

from helmdeck_operator.emulator import validation
from helmdeck_operator.emulator.errors import Code, GatewayError
from helmdeck_operator.policy import ambiguity, classify, errors, model, revision, translate
from tests.support import policies

# Generation is the slow part; the properties themselves take microseconds.
settings.register_profile(
    "policy", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PROFILE = settings.get_profile("policy")

# --- valid specs ------------------------------------------------------------------------------

# Built from small alphabets rather than st.from_regex, which is several times slower.
_alnum = st.text(alphabet="abz019", min_size=1, max_size=4)
names = st.builds(lambda a, sep, b: a + sep + b, _alnum, st.sampled_from(["", "-", "_"]), _alnum)
labels = st.builds(lambda a, sep, b: a + sep + b, _alnum, st.sampled_from(["", "-"]), _alnum)


def _named(host: str) -> str:
    """A host of digits and dots is an IPv4 address or nothing (the CRD's rule): one that is
    not an address becomes a name under `a.`."""
    digits_and_dots = host.replace(".", "").isdigit()
    return "a." + host if digits_and_dots and _parse_ipv4(host) is None else host


def _parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(host)
    except ValueError:
        return None


hosts = st.builds(
    lambda wildcard, parts: wildcard + ".".join(parts),
    st.sampled_from(["", "*.", "**."]),
    st.lists(labels, min_size=3, max_size=4),
).map(_named)
#: Canonical paths (the CRD's rule for every path): no `.`, `..` or empty segment, no
#: trailing `/`.
paths = (
    st.lists(st.text(alphabet="az0._-*", min_size=1, max_size=4), min_size=1, max_size=3)
    .filter(lambda parts: not {".", ".."} & set(parts))
    .map(lambda parts: "/" + "/".join(parts))
)
port_numbers = st.integers(min_value=1, max_value=65535)


def _not_ipv4_mapped(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Kubernetes' isIP refuses IPv4-mapped IPv6 addresses."""
    return not isinstance(address, ipaddress.IPv6Address) or address.ipv4_mapped is None


ips = st.one_of(
    st.ip_addresses(v=4).map(str),
    # A CIDR names its network (no host bits: the CRD's rule).
    st.builds(
        lambda ip, bits: str(ipaddress.ip_network(f"{ip}/{bits}", strict=False)),
        st.ip_addresses(v=4),
        st.integers(0, 32),
    ),
    st.ip_addresses(v=6).filter(_not_ipv4_mapped).map(str),
)
#: `sandbox` or a uid in plain decimal (the CRD refuses `007`, which the gateway reads as 7).
identities = st.one_of(st.just("sandbox"), st.integers(1, 4294967294).map(str))
methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "*"])


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value or the marker that the key is absent."""
    return st.one_of(st.just(...), strategy)


def build(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not ...}


matchers = st.one_of(
    st.builds(lambda glob: {"glob": glob}, st.text(max_size=5)),
    st.builds(lambda values: {"any": values}, st.lists(st.text(max_size=5), max_size=3)),
)
operation_types = st.sampled_from(["query", "mutation", "subscription"])


def l7_matches(graphql: bool) -> st.SearchStrategy[dict[str, Any]]:
    """An allow or deny match; on graphql it names an operation type (the gateway's rule)."""
    return st.builds(
        build,
        method=optional(methods),
        path=optional(paths),
        operationType=operation_types if graphql else st.just(...),
        operationName=optional(st.text("Gq*", min_size=1, max_size=4)) if graphql else st.just(...),
        query=optional(st.dictionaries(st.text(min_size=1, max_size=5), matchers, max_size=3)),
    )


def _says_something(match: dict[str, Any]) -> bool:
    return any(key in match for key in ("method", "path", "operationType", "operationName"))


#: What each L7 protocol may use to allow traffic (the gateway's rules).
_ALLOWS = {
    "rest": ["access", "rules"],
    "websocket": ["access", "rules"],
    "graphql": ["access", "rules"],
    "sql": ["access", "rules"],
    "json-rpc": ["rules"],
    "mcp": ["rules", "allow-all"],
}


def _under_any(path: str, directories: list[str]) -> bool:
    """A readOnly `path` equal to or under one of the readWrite `directories` would be
    writable; the CRD refuses it."""
    return any(path == d or path.startswith(d + "/") for d in directories)


def _ipv4_literal(host: str) -> bool:
    """Four dot-separated numbers: what the CRD reads as an IP address in a host."""
    parts = host.split(".")
    return len(parts) == 4 and all(part.isdigit() for part in parts)


@st.composite
def endpoints(draw: st.DrawFn) -> dict[str, Any]:
    """An endpoint the CRD and the gateway both accept."""
    endpoint: dict[str, Any] = {"host": draw(hosts)}
    if draw(st.booleans()):
        endpoint["port"] = draw(port_numbers)
    else:
        endpoint["ports"] = draw(st.lists(port_numbers, min_size=1, max_size=4, unique=True))
    protocol = draw(
        optional(st.sampled_from(["tcp", "rest", "websocket", "graphql", "sql", "json-rpc", "mcp"]))
    )
    if protocol is not ...:
        endpoint["protocol"] = protocol
    if protocol in (..., "tcp"):
        if _ipv4_literal(endpoint["host"]):
            endpoint["host"] = "a." + endpoint["host"]
    else:
        graphql = protocol == "graphql"
        inspection = draw(st.sampled_from(_ALLOWS[protocol]))
        if inspection == "access":
            endpoint["access"] = draw(st.sampled_from(["read-only", "read-write", "full"]))
        elif inspection == "rules":
            matches = draw(st.lists(l7_matches(graphql), min_size=1, max_size=2))
            if not any(map(_says_something, matches)):
                matches[0] = {**matches[0], "method": "*"}
            endpoint["rules"] = [{"allow": match} for match in matches]
        else:
            endpoint["mcp"] = {"allowAllKnownMethods": True}
        deny = draw(optional(st.lists(l7_matches(graphql), max_size=2)))
        if deny is not ...:
            endpoint["denyRules"] = deny
        endpoint["path"] = draw(optional(paths))
        enforcement = ["audit"] if protocol == "sql" else ["enforce", "audit"]
        endpoint["enforcement"] = draw(optional(st.sampled_from(enforcement)))
    return build(
        **endpoint,
        tls=draw(optional(st.sampled_from(["terminate", "passthrough", "skip"]))),
        allowedIps=draw(optional(st.lists(ips, max_size=4, unique=True))),
    )


def _separate_ports(endpoints: list[dict[str, Any]]) -> None:
    """Give every endpoint ports no other endpoint has: endpoints that can meet must agree
    (the gateway's ambiguity rule, exercised by its own property below)."""
    used: set[int] = set()
    for endpoint in endpoints:
        key = "port" if "port" in endpoint else "ports"
        ports = [endpoint[key]] if key == "port" else endpoint[key]
        fresh = []
        for port in ports:
            while port in used:
                port = port % 65535 + 1
            used.add(port)
            fresh.append(port)
        endpoint[key] = fresh[0] if key == "port" else fresh


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    rule_names = draw(st.lists(names, max_size=3, unique=True))
    rules = [
        build(
            name=name,
            endpoints=draw(st.lists(endpoints(), min_size=1, max_size=3)),
            binaries=draw(optional(st.lists(paths, max_size=3, unique=True))),
        )
        for name in rule_names
    ]
    _separate_ports([endpoint for rule in rules for endpoint in rule["endpoints"]])
    fs_paths = draw(st.lists(paths, max_size=6, unique=True))
    split = draw(st.integers(0, len(fs_paths)))
    read_only = [p for p in fs_paths[:split] if not _under_any(p, fs_paths[split:])]
    keep_empty_network = draw(st.booleans())
    return build(
        network=rules if rules or keep_empty_network else ...,
        filesystem=build(
            includeWorkdir=draw(optional(st.booleans())),
            readOnly=read_only or ...,
            readWrite=fs_paths[split:] if split < len(fs_paths) else ...,
        ),
        landlock=draw(
            optional(
                st.builds(
                    build,
                    compatibility=optional(st.sampled_from(["best_effort", "hard_requirement"])),
                )
            )
        ),
        process=draw(
            optional(
                st.builds(build, runAsUser=optional(identities), runAsGroup=optional(identities))
            )
        ),
        staticChanges=draw(optional(st.sampled_from(["Reject", "Recreate"]))),
        rollout=draw(optional(st.builds(build, maxUnavailable=optional(st.integers(1, 100))))),
    )


# --- invalid input: garbage, and valid specs with one thing broken ---------------------------

FIELD_NAMES = [
    "network", "name", "endpoints", "host", "port", "ports", "path", "protocol", "tls",
    "enforcement", "access", "rules", "allow", "method", "query", "glob", "any", "denyRules",
    "allowedIps", "binaries", "filesystem", "includeWorkdir", "readOnly", "readWrite",
    "landlock", "compatibility", "process", "runAsUser", "runAsGroup", "staticChanges",
    "rollout", "maxUnavailable",
]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["/a\ud800", "\udfff", "*.com", "tcp", "rest", "0", "root", "10.0.0.0/8"]),
    st.binary(max_size=4),
)
garbage = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=4)), inner, max_size=4
        ),
    ),
    max_leaves=24,
)


def locations(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a nested document that a mutation can target."""
    found = [here]
    if isinstance(value, dict):
        for key, item in value.items():
            found += locations(item, (*here, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += locations(item, (*here, index))
    return found


@st.composite
def broken_specs(draw: st.DrawFn) -> Any:
    """A valid spec with one value replaced, one key dropped, or one unknown key added."""
    spec = draw(specs())
    where = draw(st.sampled_from(locations(spec)))
    if not where:
        return draw(garbage)
    parent = spec
    for step in where[:-1]:
        parent = parent[step]
    action = draw(st.sampled_from(["replace", "drop", "add"]))
    if action == "replace":
        parent[where[-1]] = draw(garbage)
    elif action == "drop" and isinstance(parent, dict):
        del parent[where[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.sampled_from([*FIELD_NAMES, "unknown"]))] = draw(garbage)
    else:
        parent.append(draw(garbage))
    return spec


@PROFILE
@given(st.one_of(garbage, broken_specs()))
def test_translation_returns_a_policy_or_raises_only_policy_validation_error(spec: Any) -> None:
    issues: tuple[errors.Issue, ...] = ()
    try:
        policy = translate.to_sandbox_policy(spec)
    except errors.PolicyValidationError as exc:
        issues = exc.issues
        assert issues, "a PolicyValidationError always names an issue"
    else:
        assert revision.revision(policy).startswith("sha256:")
    for issue in issues:
        assert issue.path.startswith("spec")
        assert issue.message


@PROFILE
@given(specs())
def test_every_generated_valid_spec_translates(spec: dict[str, Any]) -> None:
    translate.to_sandbox_policy(spec)


@PROFILE
@given(specs())
def test_the_gateway_accepts_every_policy_the_model_accepts(spec: dict[str, Any]) -> None:
    """The emulator's validation (written from the gateway's rules, independently of the
    model) takes every policy the model lets through: nothing the gateway would refuse
    passes admission and the operator's own check."""
    validation.check_policy(translate.to_sandbox_policy(spec))


# --- order independence -----------------------------------------------------------------------


def shuffled(spec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The same spec with its rules and every list the CRD declares a set reordered."""
    out = copy.deepcopy(spec)
    rng.shuffle(out.get("network", []))
    for rule in out.get("network", []):
        rng.shuffle(rule.get("binaries", []))
        for endpoint in rule["endpoints"]:
            rng.shuffle(endpoint.get("ports", []))
            rng.shuffle(endpoint.get("allowedIps", []))
    for key in ("readOnly", "readWrite"):
        rng.shuffle(out.get("filesystem", {}).get(key, []))
    return out


@PROFILE
@given(specs(), st.randoms(use_true_random=False))
def test_revision_ignores_rule_order_and_set_order(
    spec: dict[str, Any], rng: random.Random
) -> None:
    original = translate.to_sandbox_policy(spec)
    reordered = translate.to_sandbox_policy(shuffled(spec, rng))

    assert reordered == original
    assert revision.revision(reordered) == revision.revision(original)


# --- the change classifier ---------------------------------------------------------------------

# Named longer than any generated name, so it never collides.
ADDED_RULE = policies.rule("added-by-the-property-test", policies.rest("api.example.com"))


@PROFILE
@given(specs())
def test_an_unchanged_policy_is_live(spec: dict[str, Any]) -> None:
    policy = translate.to_sandbox_policy(spec)

    verdict = classify.classify_change(policy, translate.to_sandbox_policy(copy.deepcopy(spec)))

    assert verdict.live
    assert verdict.blockers == ()


@PROFILE
@given(specs())
def test_adding_an_inspected_network_rule_is_live(spec: dict[str, Any]) -> None:
    grown = {**spec, "network": [*spec.get("network", []), ADDED_RULE]}

    assert classify.classify_change(
        translate.to_sandbox_policy(spec), translate.to_sandbox_policy(grown)
    ).live


@PROFILE
@given(specs(), st.data())
def test_removing_a_filesystem_path_is_blocked_with_that_path(
    spec: dict[str, Any], data: st.DataObject
) -> None:
    filesystem = spec.get("filesystem", {})
    choices = [(key, p) for key in ("readOnly", "readWrite") for p in filesystem.get(key, [])]
    if not choices:
        filesystem = {**filesystem, "readOnly": ["/opt/extra"]}
        spec = {**spec, "filesystem": filesystem}
        choices = [("readOnly", "/opt/extra")]
    key, removed = data.draw(st.sampled_from(choices))
    shrunk = {
        **spec,
        "filesystem": {**filesystem, key: [p for p in filesystem[key] if p != removed]},
    }

    verdict = classify.classify_change(
        translate.to_sandbox_policy(spec), translate.to_sandbox_policy(shrunk)
    )

    assert not verdict.live
    field = {"readOnly": "filesystem.read_only", "readWrite": "filesystem.read_write"}[key]
    assert [b.field for b in verdict.blockers] == [field]
    assert repr(removed) in verdict.blockers[0].reason


@PROFILE
@given(specs())
def test_changing_landlock_is_blocked(spec: dict[str, Any]) -> None:
    current = spec.get("landlock", {}).get("compatibility", "best_effort")
    other = {"best_effort": "hard_requirement", "hard_requirement": "best_effort"}[current]

    verdict = classify.classify_change(
        translate.to_sandbox_policy(spec),
        translate.to_sandbox_policy({**spec, "landlock": {"compatibility": other}}),
    )

    assert [b.field for b in verdict.blockers] == ["landlock.compatibility"]


@PROFILE
@given(specs(), identities)
def test_changing_the_process_user_is_blocked(spec: dict[str, Any], user: str) -> None:
    process = spec.get("process", {})
    changed = {**spec, "process": {**process, "runAsUser": user}}

    verdict = classify.classify_change(
        translate.to_sandbox_policy(spec), translate.to_sandbox_policy(changed)
    )

    assert verdict.live == (process.get("runAsUser") == user)
    if not verdict.live:
        assert [b.field for b in verdict.blockers] == ["process.run_as_user"]


# --- the classifier and the emulator's gateway rules agree -----------------------------------


@st.composite
def evolved(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A spec and a successor that differs from it in a few randomly chosen ways.

    Independent random specs would almost never be hot-reloadable (their landlock or process
    sections differ), so the successor is the original with edits of the kinds users make.
    """
    old = draw(specs())
    new = copy.deepcopy(old)
    fs = new.setdefault("filesystem", {})
    for edit in draw(st.lists(st.sampled_from(EDITS), max_size=4)):
        if edit == "add-rule":
            rule = draw(st.sampled_from(EXTRA_RULES))
            if rule["name"] not in {r["name"] for r in new.get("network", [])}:
                new["network"] = [*new.get("network", []), rule]
        elif edit == "drop-rule" and new.get("network"):
            new["network"] = new["network"][1:]
        elif edit in ("add-ro", "add-rw"):
            key = "readOnly" if edit == "add-ro" else "readWrite"
            extra = draw(paths)
            read_only, read_write = fs.get("readOnly", []), fs.get("readWrite", [])
            writable = (
                _under_any(extra, read_write)
                if key == "readOnly"
                else any(_under_any(p, [extra]) for p in read_only)
            )
            if extra not in read_only + read_write and not writable:
                fs[key] = [*fs.get(key, []), extra]
        elif edit in ("drop-ro", "drop-rw"):
            key = "readOnly" if edit == "drop-ro" else "readWrite"
            if fs.get(key):
                fs[key] = fs[key][1:]
                if not fs[key]:
                    del fs[key]
        elif edit == "flip-workdir":
            fs["includeWorkdir"] = not fs.get("includeWorkdir", True)
        elif edit == "landlock":
            new["landlock"] = {
                "compatibility": draw(st.sampled_from(["best_effort", "hard_requirement"]))
            }
        elif edit == "process":
            new["process"] = build(
                runAsUser=draw(optional(identities)), runAsGroup=draw(optional(identities))
            )
    return old, new


EDITS = [
    "add-rule", "drop-rule", "add-ro", "add-rw", "drop-ro", "drop-rw", "flip-workdir",
    "landlock", "process",
]  # fmt: skip
EXTRA_RULES = [
    ADDED_RULE,
    {"name": "raw-db", "endpoints": [{"host": "db.example.com", "port": 5432}]},
    {"name": "raw-ssh", "endpoints": [{"host": "git.example.com", "port": 22, "protocol": "tcp"}]},
]


@PROFILE
@given(evolved())
def test_the_classifier_agrees_with_the_gateway_rules(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    from helmdeck_operator.emulator import errors as gateway_errors
    from helmdeck_operator.emulator import policy_rules

    baseline = translate.to_sandbox_policy(pair[0])
    desired = translate.to_sandbox_policy(pair[1])
    try:
        policy_rules.check_live_change(baseline, desired)
        gateway_accepts = True
    except gateway_errors.GatewayError:
        gateway_accepts = False

    verdict = classify.classify_change(baseline, desired)

    event(
        f"gateway accepts: {gateway_accepts}"
    )  # both outcomes occur; see --hypothesis-show-statistics
    assert verdict.live == gateway_accepts, verdict.blockers


# --- endpoint ambiguity: the model and the emulator agree -------------------------------------

meeting_hosts = st.sampled_from(
    ["api.example.com", "*.example.com", "**.example.com", "a.api.example.com", "other.org"]
)
meeting_paths = optional(st.sampled_from(["/v1/*", "/v1/admin", "/**", "/w*s", "/ws", "/a?c"]))


@st.composite
def meeting_endpoints(draw: st.DrawFn) -> dict[str, Any]:
    """A valid endpoint on port 443, with a host and path from small sets, so that pairs
    often meet."""
    endpoint = draw(endpoints())
    endpoint.pop("ports", None)
    endpoint["port"] = 443
    endpoint["host"] = draw(meeting_hosts)
    if endpoint.get("protocol") not in (None, "tcp"):
        endpoint["path"] = draw(meeting_paths)
        if endpoint["path"] is ...:
            del endpoint["path"]
    return endpoint


@PROFILE
@given(st.lists(meeting_endpoints(), min_size=2, max_size=3))
def test_the_model_and_the_gateway_agree_on_ambiguity(found: list[dict[str, Any]]) -> None:
    """Each endpoint alone is valid; together, the model calls them ambiguous exactly when the
    emulator's gateway rules answer FAILED_PRECONDITION."""
    rules = [
        model.parse_spec({"network": [{"name": f"r{i}", "endpoints": [ep]}]}).network[0]  # type: ignore[index]
        for i, ep in enumerate(found)
    ]
    model_says = bool(list(ambiguity.conflicts(rules)))
    policy = sandbox_pb2.SandboxPolicy()
    for i, ep in enumerate(found):
        single = translate.to_sandbox_policy({"network": [{"name": f"r{i}", "endpoints": [ep]}]})
        policy.network_policies[f"r{i}"].CopyFrom(single.network_policies[f"r{i}"])
    code = None
    try:
        validation.check_policy(policy)
    except GatewayError as err:
        code = err.code
    gateway_says = code is not None
    assert code in (None, Code.FAILED_PRECONDITION)
    event(f"ambiguous: {gateway_says}")
    assert model_says == gateway_says


# --- accept / refuse: the model and the emulator agree on generated invalid policies too ------


def _endpoint_edit(**fields: Any) -> tuple[Any, Any]:
    """An edit of the first endpoint, as (spec edit, policy edit): L7 fields are reset and
    `fields` set, in the spec's spelling and in the gateway's."""
    spec_fields = {k: v for k, v in fields.items() if v is not None}

    def on_spec(spec: dict[str, Any]) -> None:
        endpoint = spec["network"][0]["endpoints"][0]
        for key in ("access", "rules", "denyRules", "mcp", "enforcement", "path", "protocol"):
            endpoint.pop(key, None)
        endpoint.update(copy.deepcopy(spec_fields))

    def on_policy(policy: sandbox_pb2.SandboxPolicy, spec: dict[str, Any]) -> None:
        single = translate.to_sandbox_policy(
            {"network": [{"name": "x", "endpoints": [_valid_shape(spec)]}]}
        )
        rule = policy.network_policies[spec["network"][0]["name"]]
        endpoint = rule.endpoints[0]
        endpoint.CopyFrom(single.network_policies["x"].endpoints[0])
        for key, value in _gateway_fields(fields).items():
            field = getattr(endpoint, key)
            if isinstance(value, list):
                del field[:]
                field.extend(value)
            elif isinstance(value, sandbox_pb2.McpOptions):
                field.CopyFrom(value)
            else:
                setattr(endpoint, key, value)

    return on_spec, on_policy


def _valid_shape(spec: dict[str, Any]) -> dict[str, Any]:
    """The first endpoint's connection fields (host, ports, tls, allowedIps) alone."""
    endpoint = spec["network"][0]["endpoints"][0]
    keep = ("host", "port", "ports", "tls", "allowedIps")
    shape = {k: v for k, v in endpoint.items() if k in keep}
    if _ipv4_literal(shape["host"]):
        shape.update(protocol="rest", access="read-only")
    return shape


def _gateway_fields(fields: dict[str, Any]) -> dict[str, Any]:
    presets = {"read-only": sandbox_pb2.NETWORK_ACCESS_PRESET_READ_ONLY}
    modes = {"enforce": sandbox_pb2.NETWORK_ENFORCEMENT_MODE_ENFORCE}
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "protocol":
            out["protocol"] = "" if value in (None, "tcp") else value
        elif key == "access":
            out["access"] = presets[value]
        elif key == "enforcement":
            out["enforcement"] = modes[value]
        elif key == "rules":
            gateway_names = {"method": "method", "path": "path", "operationType": "operation_type"}
            out["rules"] = [
                sandbox_pb2.L7Rule(
                    allow=sandbox_pb2.L7Allow(
                        **{gateway_names[k]: v for k, v in r["allow"].items()}
                    )
                )
                for r in value
            ]
        elif key == "path":
            out["path"] = value
    return out


def _spec_edit(path: str, value: Any) -> tuple[Any, Any]:
    section, field = path.split(".")
    gateway = {
        "readOnly": ("filesystem", "read_only"),
        "readWrite": ("filesystem", "read_write"),
        "runAsUser": ("process", "run_as_user"),
    }[field]

    def on_spec(spec: dict[str, Any]) -> None:
        spec.setdefault(section, {})[field] = copy.deepcopy(value)

    def on_policy(policy: sandbox_pb2.SandboxPolicy, spec: dict[str, Any]) -> None:
        target = getattr(policy, gateway[0])
        if isinstance(value, list):
            del getattr(target, gateway[1])[:]
            getattr(target, gateway[1]).extend(value)
        else:
            setattr(target, gateway[1], value)

    return on_spec, on_policy


#: (name, (spec edit, policy edit), the model is stricter on purpose): each edit makes the
#: same change to a valid spec and to the policy it translates to.
EDITS: list[tuple[str, tuple[Any, Any], bool]] = [
    ("none", (lambda spec: None, lambda policy, spec: None), False),
    ("rest-allows-nothing", _endpoint_edit(protocol="rest"), False),
    ("rest-read-only", _endpoint_edit(protocol="rest", access="read-only"), False),
    ("mcp-with-access", _endpoint_edit(protocol="mcp", access="read-only"), False),
    ("json-rpc-no-rules", _endpoint_edit(protocol="json-rpc"), False),
    (
        "json-rpc-rules",
        _endpoint_edit(protocol="json-rpc", rules=[{"allow": {"method": "*"}}]),
        False,
    ),
    (
        "sql-enforce",
        _endpoint_edit(protocol="sql", access="read-only", enforcement="enforce"),
        False,
    ),
    (
        "graphql-no-op",
        _endpoint_edit(protocol="graphql", rules=[{"allow": {"method": "GET"}}]),
        False,
    ),
    (
        "graphql-op",
        _endpoint_edit(protocol="graphql", rules=[{"allow": {"operationType": "query"}}]),
        False,
    ),
    ("allows-nothing", _endpoint_edit(protocol="rest", rules=[{"allow": {}}]), False),
    ("user-name", _spec_edit("process.runAsUser", "nobody"), False),
    ("user-zeros", _spec_edit("process.runAsUser", "000"), False),
    ("user-leading-zero", _spec_edit("process.runAsUser", "007"), True),
    ("user-plus-sign", _spec_edit("process.runAsUser", "+7"), True),
    ("user-sandbox", _spec_edit("process.runAsUser", "sandbox"), False),
    ("dotdot", _spec_edit("filesystem.readOnly", ["/usr/../etc"]), False),
    ("read-write-root", _spec_edit("filesystem.readWrite", ["/"]), False),
    ("read-write-root-twice", _spec_edit("filesystem.readWrite", ["//"]), False),
    ("dot-segment", _spec_edit("filesystem.readOnly", ["/usr/./lib"]), True),
    ("trailing-slash", _spec_edit("filesystem.readOnly", ["/usr/"]), True),
    ("tcp-path", _endpoint_edit(path="/v1"), True),
]


@PROFILE
@given(specs().filter(lambda spec: bool(spec.get("network"))), st.sampled_from(EDITS))
def test_the_model_and_the_gateway_agree_on_accept_and_refuse(
    spec: dict[str, Any], edit: tuple[str, tuple[Any, Any], bool]
) -> None:
    """A valid spec, one edit made to it and to its policy alike: the model refuses the edited
    spec exactly when the emulator's gateway rules refuse the edited policy, except where the
    model is stricter on purpose (docs/policies.md), where only the model refuses."""
    name, (on_spec, on_policy), stricter = edit
    policy = translate.to_sandbox_policy(spec)
    edited = copy.deepcopy(spec)
    on_spec(edited)
    on_policy(policy, edited)
    try:
        model.parse_spec(edited)
        model_refuses = False
    except errors.PolicyValidationError:
        model_refuses = True
    try:
        validation.check_policy(policy)
        gateway_refuses = False
    except GatewayError:
        gateway_refuses = True
    event(f"{name}: model refuses {model_refuses}, gateway refuses {gateway_refuses}")
    if stricter:
        assert (model_refuses, gateway_refuses) == (True, False)
    else:
        assert model_refuses == gateway_refuses
