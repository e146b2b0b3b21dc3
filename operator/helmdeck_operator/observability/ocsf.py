"""Recognise policy denials among a sandbox's OCSF events, and aggregate them for Events.

OpenShell's in-sandbox supervisor reports security events in OCSF 1.8 as gateway log lines
(level OCSF, target ocsf), with the event fields as structured fields, or the whole event as
JSON in the message when the gateway's `ocsf_json_enabled` setting is on. A denial is a
Network (4001), HTTP (4002), SSH (4007) or Process (1007) activity whose action is Denied
or whose disposition is Blocked, or a Detection Finding (2004). Everything here is pure.

Assumptions (the 0.1.x field names are not fixed by a schema we can read): structured
fields may be flat (`dst_host`, `dst_port`, `action`, `disposition`, `rule`) or dotted OCSF
paths (`dst_endpoint.hostname`, `dst_endpoint.port`, `firewall_rule.name`); the JSON form
follows OCSF (`class_uid`, `action`, `disposition`, `dst_endpoint`, `metadata.uid` = the
sandbox id). docs/observability.md lists them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from helmdeck_operator.gateway.models import LogLine

__all__ = ["Aggregator", "Denial", "parse_denial"]

_DENIABLE = {"4001": "network", "4002": "http", "4007": "ssh", "1007": "process"}
_FINDING = "2004"


@dataclass(frozen=True)
class Denial:
    """One denied action, reduced to what identifies it for aggregation."""

    sandbox_id: str
    activity: str
    target: str
    """host:port, URL or executable that was refused."""
    rule: str

    def describe(self) -> str:
        rule = f" (rule {self.rule})" if self.rule else ""
        return f"{self.activity} to {self.target} denied by the sandbox policy{rule}"


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, path + "."))
        else:
            out[path] = str(value)
    return out


def _first(fields: Mapping[str, str], *names: str) -> str:
    return next((fields[n] for n in names if fields.get(n)), "")


def parse_denial(line: LogLine) -> Denial | None:
    """The denial a log line reports, or None for anything else."""
    if line.level.upper() != "OCSF":
        return None
    fields = dict(line.fields)
    if line.message.lstrip().startswith("{"):
        with contextlib.suppress(ValueError, TypeError):  # not JSON after all: fields only
            fields.update(_flatten(json.loads(line.message)))
    class_uid = fields.get("class_uid", "")
    action = _first(fields, "action", "activity_name").lower()
    disposition = _first(fields, "disposition").lower()
    denied = action in {"denied", "deny", "blocked"} or disposition in {"blocked", "denied"}
    if not (class_uid in _DENIABLE and denied) and class_uid != _FINDING:
        return None
    host = _first(fields, "dst_host", "dst_endpoint.hostname", "dst_endpoint.ip", "url.hostname")
    port = _first(fields, "dst_port", "dst_endpoint.port", "url.port")
    target = (
        f"{host}:{port}"
        if host and port
        else host
        or _first(fields, "url", "url.url_string", "process.file.path", "process.name")
        or "unknown destination"
    )
    return Denial(
        sandbox_id=line.sandbox_id or fields.get("metadata.uid", ""),
        activity=_DENIABLE.get(class_uid, "detection finding"),
        target=target,
        rule=_first(fields, "rule", "firewall_rule.name", "policy", "policy.name"),
    )


@dataclass
class Aggregator:
    """Turns a stream of denials into few Events: the first of a kind at once, then one
    summary per `window` seconds with how many more there were. Bounded: at most
    `max_kinds` distinct kinds are tracked per window; the rest are only counted."""

    window: float = 60.0
    max_kinds: int = 50
    started: float = 0.0
    seen: dict[Denial, int] = field(default_factory=dict)
    overflow: int = 0

    def add(self, denial: Denial, now: float) -> str | None:
        """Record one denial; the message of an Event to post now, if any."""
        if denial in self.seen:
            self.seen[denial] += 1
            return None
        if len(self.seen) >= self.max_kinds:
            self.overflow += 1
            return None
        if not self.seen:
            self.started = now
        self.seen[denial] = 1
        return denial.describe()

    def flush(self, now: float) -> list[str]:
        """Summaries of the repeats once the window is over; starts a new window."""
        if not self.seen or now - self.started < self.window:
            return []
        summaries = [
            f"{d.describe()}: {count - 1} more times in the last {self.window:.0f}s"
            for d, count in self.seen.items()
            if count > 1
        ]
        if self.overflow:
            summaries.append(
                f"{self.overflow} more denials of other kinds in the last {self.window:.0f}s"
            )
        self.seen.clear()
        self.overflow = 0
        return summaries
