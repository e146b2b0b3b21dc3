"""Request-side helpers of the emulated gateway: label selectors, pages, log filters.

Pure functions shared by the state machine and the watch stream, kept apart so the state
machine reads as lifecycle rules only. Pagination is the gateway's AIP-158 rule shared by
every list call (its pagination.rs): the page size, and a token bound to the method and
the request's filters, with the gateway's error messages.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from typing import TypeVar

from openshell._proto import openshell_pb2

from helmdeck_operator.emulator.errors import Code, GatewayError, invalid_field

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "decode_token",
    "encode_token",
    "log_matches",
    "page_size",
    "parse_selector",
    "take_page",
]

T = TypeVar("T")

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


def page_size(requested: int) -> int:
    """The size of the page to answer: 0 means the default, more than the maximum is capped."""
    if requested < 0:
        raise GatewayError(Code.INVALID_ARGUMENT, "page_size must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def take_page(items: Iterable[T], size: int) -> tuple[list[T], bool]:
    """The first `size` of `items` (in list order, after the token's position), and
    whether any follow; `items` is consumed lazily, so a page costs what it holds."""
    page: list[T] = []
    for item in items:
        if len(page) == size:
            return page, True
        page.append(item)
    return page, False


def encode_token(after_seq: int, request: Sequence[str]) -> str:
    """A token to continue after `after_seq`, valid only for the same `request` (the
    method and its filters, as the gateway fingerprints them)."""
    raw = json.dumps({"after": after_seq, "request": list(request)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, request: Sequence[str]) -> int:
    """The sequence number a page starts after (0 for the first page)."""
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after = int(data["after"])
    except (ValueError, KeyError, TypeError) as exc:
        raise GatewayError(Code.INVALID_ARGUMENT, "page_token is malformed") from exc
    if data.get("request") != list(request):
        raise GatewayError(Code.INVALID_ARGUMENT, "page_token does not match this list request")
    return after
