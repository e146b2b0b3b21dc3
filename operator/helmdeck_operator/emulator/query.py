"""Request-side helpers of the emulated gateway: label selectors, page tokens, log filters.

Pure functions shared by the state machine and the watch stream, kept apart so the state
machine reads as lifecycle rules only.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable

from openshell._proto import openshell_pb2

from helmdeck_operator.emulator.errors import invalid_field

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "decode_token",
    "encode_token",
    "log_matches",
    "parse_selector",
]

#: Page size when the client sends 0, and the most one page may hold.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
#: The gateway's level order; levels it does not know (OCSF) are never filtered out.
_LEVELS = {"ERROR": 0, "WARN": 1, "INFO": 2, "DEBUG": 3, "TRACE": 4}


def log_matches(
    line: openshell_pb2.SandboxLogLine, since: float | None, sources: Iterable[str], min_level: str
) -> bool:
    """The gateway's log filters: source (empty = gateway), minimum level, since time."""
    wanted = list(sources)
    if wanted and (line.source or "gateway") not in wanted:
        return False
    if since is not None and line.event_time.ToNanoseconds() < since * 1e9:
        return False
    if min_level:
        rank = _LEVELS.get(line.level.upper())
        if rank is not None and rank > _LEVELS.get(min_level.upper(), len(_LEVELS)):
            return False  # unknown levels (OCSF) always pass
    return True


def parse_selector(text: str) -> dict[str, str]:
    selector: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        value = value.removeprefix("=")  # `k==v` is accepted as `k=v`
        if not sep or not key.strip() or key.endswith("!"):
            raise invalid_field("label_selector", f"unsupported requirement {part!r}: use k=v")
        selector[key.strip()] = value.strip()
    return selector


def encode_token(after_seq: int, selector: str) -> str:
    raw = json.dumps({"after": after_seq, "selector": selector}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, selector: str) -> int:
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after = int(data["after"])
    except (ValueError, KeyError, TypeError) as exc:
        raise invalid_field("page_token", "malformed page token") from exc
    if data.get("selector") != selector:
        raise invalid_field("page_token", "page token was issued for another label selector")
    return after
