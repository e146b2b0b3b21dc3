"""Endpoints the gateway would find ambiguous, as a pure function of the spec.

Two endpoints (in one rule or two) that can match the same connection must agree on how it
is made: TLS skipped or not, and the allowed IPs. When both also decide how its requests are
handled (an L7 protocol, allowed IPs or a TLS mode) and their paths can match the same
request with equal specificity, they must agree on the protocol and the enforcement as well.
OpenShell refuses a policy that breaks this with FAILED_PRECONDITION, whichever order the
endpoints come in; the policy model refuses it first, so it shows on the SidecarPolicy's
status instead of on every session that uses it.

Only the fields the CRD can express are compared: `tcp` is sent as "no protocol", so the
gateway's raw-TCP eligibility never differs, and the parser limits and MCP options it also
compares are never set by a SidecarPolicy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from helmdeck_operator.policy.model import Endpoint, NetworkRule

__all__ = ["conflicts", "hosts_overlap", "paths_overlap"]


def conflicts(rules: Sequence[NetworkRule]) -> Iterator[str]:
    """One message per pair of endpoints that can meet and disagree."""
    located = [
        (f"rule {rule.name} endpoint {index}", endpoint)
        for rule in rules
        for index, endpoint in enumerate(rule.endpoints)
    ]
    for position, (left_name, left) in enumerate(located):
        for right_name, right in located[position + 1 :]:
            shared = sorted(_ports(left) & _ports(right))
            if not shared or not hosts_overlap(left.host, right.host):
                continue
            differ = _connection(left, right)
            if (
                _handles_requests(left)
                and _handles_requests(right)
                and paths_overlap(left.path, right.path)
                and _specificity(left.path) == _specificity(right.path)
            ):
                differ += _requests(left, right)
            if differ:
                yield (
                    f"{left_name} ({left.host}) and {right_name} ({right.host}) can match the "
                    f"same traffic on port {','.join(map(str, shared))} but disagree on "
                    f"{', '.join(differ)}; OpenShell refuses such a policy: make them agree, "
                    "or give them different hosts, ports or paths"
                )


def _ports(endpoint: Endpoint) -> set[int]:
    return set(endpoint.ports or ((endpoint.port,) if endpoint.port else ()))


def _connection(left: Endpoint, right: Endpoint) -> list[str]:
    differ = []
    if (left.tls == "skip") != (right.tls == "skip"):
        differ.append("tls (skip on one only)")
    if _ips(left) != _ips(right):
        differ.append("allowedIps")
    return differ


def _ips(endpoint: Endpoint) -> frozenset[str]:
    return frozenset(ip.strip().lower() for ip in endpoint.allowed_ips or ())


def _handles_requests(endpoint: Endpoint) -> bool:
    return (
        endpoint.protocol not in (None, "tcp")
        or bool(endpoint.allowed_ips)
        or endpoint.tls is not None
    )


def _requests(left: Endpoint, right: Endpoint) -> list[str]:
    differ = []
    if _inspection(left) != _inspection(right):
        differ.append("protocol")
    if (left.enforcement == "enforce") != (right.enforcement == "enforce"):
        differ.append("enforcement")
    return differ


def _inspection(endpoint: Endpoint) -> str:
    return "" if endpoint.protocol in (None, "tcp") else endpoint.protocol


def _specificity(path: str | None) -> int:
    """The gateway ranks path selectors by their characters other than `*`."""
    return len((path or "").replace("*", ""))


def hosts_overlap(left: str, right: str) -> bool:
    """Whether two CRD hosts (a name, an IPv4 address, `*.suffix` for one label, `**.suffix`
    for any) can name the same host."""
    left_kind, left_suffix = _host_pattern(left)
    right_kind, right_suffix = _host_pattern(right)
    if left_kind == right_kind == "":
        return left == right
    if left_kind == "":
        return _host_matches(left, right_kind, right_suffix)
    if right_kind == "":
        return _host_matches(right, left_kind, left_suffix)
    if left_kind == right_kind == "*":
        return left_suffix == right_suffix
    if left_kind == right_kind == "**":
        return (
            left_suffix == right_suffix
            or _dot_suffix(left_suffix, right_suffix)
            or _dot_suffix(right_suffix, left_suffix)
        )
    one, many = (left_suffix, right_suffix) if left_kind == "*" else (right_suffix, left_suffix)
    return one == many or _dot_suffix(one, many)


def _host_pattern(host: str) -> tuple[str, str]:
    """("", host) for a name, or the wildcard ("*" or "**") and the suffix it sits on."""
    first, _, rest = host.partition(".")
    return (first, rest) if first in ("*", "**") else ("", host)


def _host_matches(name: str, kind: str, suffix: str) -> bool:
    if not _dot_suffix(name, suffix):
        return False
    return kind == "**" or "." not in name[: -len(suffix) - 1]


def _dot_suffix(name: str, suffix: str) -> bool:
    """`name` is `suffix` with at least one more label in front."""
    return name.endswith("." + suffix)


def paths_overlap(left: str | None, right: str | None) -> bool:
    """Whether two path globs can match one request path (a missing path matches all).

    `*` and `**` match any characters, `/` included, as the gateway matches request paths;
    `?` and a `[...]` class are read as any one character, which can only find more
    overlaps than there are."""
    if left is None or right is None or "/**" in (left, right):
        return True
    a, b = _path_tokens(left), _path_tokens(right)
    # Positions reached in both globs after reading the same text; iterative, as paths may
    # be a thousand characters long.
    reached, frontier = {(0, 0)}, [(0, 0)]
    while frontier:
        i, j = frontier.pop()
        if (i, j) == (len(a), len(b)):
            return True
        steps = []
        if i < len(a) and a[i] == "*":
            steps += [(i + 1, j)] + ([(i, j + 1)] if j < len(b) else [])
        if j < len(b) and b[j] == "*":
            steps += [(i, j + 1)] + ([(i + 1, j)] if i < len(a) else [])
        literals = i < len(a) and j < len(b) and "*" not in (a[i], b[j])
        if literals and (a[i] == b[j] or "?" in (a[i], b[j])):
            steps.append((i + 1, j + 1))
        for step in steps:
            if step not in reached:
                reached.add(step)
                frontier.append(step)
    return False


def _path_tokens(path: str) -> tuple[str, ...]:
    """Characters, with each run of stars as one "*" and each wildcard as "?"; a literal
    `*` or `?` cannot occur in a request path, so the marks cannot collide with one."""
    tokens: list[str] = []
    index = 0
    while index < len(path):
        char = path[index]
        if char == "*":
            if not tokens or tokens[-1] != "*":
                tokens.append("*")
        elif char == "[" and "]" in path[index + 1 :]:
            tokens.append("?")
            index = path.index("]", index + 1)
        else:
            tokens.append(char)
        index += 1
    return tuple(tokens)
