"""requirements.lock, what the image installs (`pip install --require-hashes`), matches
pyproject.toml: every declared runtime dependency pinned within its specifier, every pin
hashed, nothing in it that pyproject does not lead to, and no development tool.

The lock's `# via` annotations are its dependency graph: an entry names the packages that
require it, and `helmdeck-operator (pyproject.toml)` when pyproject declares it. `make lock`
regenerates the file; each check here fails when pyproject and the lock drift apart, and
the tests at the end prove it by breaking a copy of the real lock.
"""

from __future__ import annotations

import re
import tomllib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements.lock"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = str(PYPROJECT["project"]["name"])
#: How the lock tool names the project as a `# via` source (pip-compile and uv alike).
ROOT = f"{PROJECT} (pyproject.toml)"
#: Never shipped, beyond what the `test` extra lists: lock tools, installers, the dev kit.
NEVER_SHIPPED = {"uv", "pip-tools", "pip", "setuptools", "wheel", "helmdeck-dev", PROJECT}

PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)\s*(;(?P<marker>[^\\]+))?"
)
HASH = re.compile(r"^--hash=sha256:(?P<digest>[0-9a-f]{64})$")


@dataclass
class Pin:
    name: NormalizedName
    version: Version
    marker: Marker | None
    hashes: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)


def parse_lock(text: str) -> dict[NormalizedName, Pin]:
    """The pins of a pip-compile/uv lock file with hashes and split or line `# via`."""
    pins: dict[NormalizedName, Pin] = {}
    current: Pin | None = None
    in_via = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if not raw[0].isspace() and not line.startswith("#"):
            match = PIN.match(line)
            assert match, f"not an exact pin: {line!r}"
            marker = match["marker"]
            current = Pin(
                name=canonicalize_name(match["name"]),
                version=Version(match["version"]),
                marker=Marker(marker.strip()) if marker else None,
            )
            assert current.name not in pins, f"pinned twice: {current.name}"
            pins[current.name] = current
            in_via = False
        elif current is None:
            continue  # the header
        elif line.startswith("--hash="):
            hashed = HASH.match(line.rstrip("\\").strip())
            assert hashed, f"not a sha256 hash: {line!r}"
            current.hashes.append(hashed["digest"])
        elif line.startswith("# via"):
            rest = line.removeprefix("# via").strip()
            current.via += [v.strip() for v in rest.split(",") if v.strip()]
            in_via = not rest
        elif in_via and line.startswith("#   "):
            current.via.append(line.removeprefix("#").strip())
        elif line.startswith("#"):
            in_via = False
    return pins


def declared() -> list[Requirement]:
    return [Requirement(line) for line in PYPROJECT["project"]["dependencies"]]


def dev_tools() -> set[NormalizedName]:
    extras = PYPROJECT["project"].get("optional-dependencies", {})
    names = {Requirement(line).name for lines in extras.values() for line in lines}
    return {canonicalize_name(n) for n in names | NEVER_SHIPPED}


# -- the checks: each returns its findings, empty when the lock is right -------------------


def unpinned_declarations(pins: dict[NormalizedName, Pin], reqs: list[Requirement]) -> list[str]:
    """Every declared runtime dependency pinned, at a version its specifier allows, with the
    pyproject as one of its sources."""
    found = []
    for req in reqs:
        pin = pins.get(canonicalize_name(req.name))
        if pin is None:
            found.append(f"{req.name}: declared, not in the lock")
        elif not req.specifier.contains(pin.version, prereleases=True):
            found.append(f"{req.name}: locked {pin.version} outside {req.specifier}")
        elif ROOT not in pin.via:
            found.append(f"{req.name}: declared, but the lock does not say via {ROOT}")
    return found


def undeclared_roots(pins: dict[NormalizedName, Pin], reqs: list[Requirement]) -> list[str]:
    """An entry the lock says pyproject declares, which pyproject no longer does."""
    names = {canonicalize_name(r.name) for r in reqs}
    return [
        f"{p.name}: via {ROOT}, not declared"
        for p in pins.values()
        if ROOT in p.via and p.name not in names
    ]


def unhashed(pins: dict[NormalizedName, Pin]) -> list[str]:
    return [f"{p.name}=={p.version}: no hash" for p in pins.values() if not p.hashes]


def unreachable(pins: dict[NormalizedName, Pin]) -> list[str]:
    """Entries no pyproject root leads to through `# via`, and sources that are not pins."""
    children: dict[str, set[NormalizedName]] = {}
    found = []
    for pin in pins.values():
        if not pin.via:
            found.append(f"{pin.name}: no `# via`")
        for source in pin.via:
            parent = source if source == ROOT else canonicalize_name(source.split(" ")[0])
            if parent != ROOT and parent not in pins:
                found.append(f"{pin.name}: via {source}, which is not in the lock")
            children.setdefault(parent, set()).add(pin.name)
    seen: set[str] = {ROOT}
    queue = deque([ROOT])
    while queue:
        for child in children.get(queue.popleft(), set()) - seen:
            seen.add(child)
            queue.append(child)
    found += [
        f"{name}: stale, nothing from pyproject requires it" for name in pins if name not in seen
    ]
    return found


def shipped_dev_tools(pins: dict[NormalizedName, Pin], tools: set[NormalizedName]) -> list[str]:
    """A dev/test tool in the lock: only acceptable when a runtime package (not pyproject
    itself, not another tool) really requires it."""
    found = []
    for name in sorted(tools & pins.keys()):
        runtime_parents = [
            v
            for v in pins[name].via
            if v != ROOT and canonicalize_name(v.split(" ")[0]) not in tools
        ]
        if not runtime_parents:
            found.append(f"{name}: a development tool in the runtime lock (via {pins[name].via})")
    return found


def problems(text: str) -> list[str]:
    pins = parse_lock(text)
    reqs = declared()
    return (
        unpinned_declarations(pins, reqs)
        + undeclared_roots(pins, reqs)
        + unhashed(pins)
        + unreachable(pins)
        + shipped_dev_tools(pins, dev_tools())
    )


# -- the real lock ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lock_text() -> str:
    return LOCK.read_text()


@pytest.fixture(scope="module")
def pins(lock_text: str) -> dict[NormalizedName, Pin]:
    parsed = parse_lock(lock_text)
    assert len(parsed) >= len(declared()), "the lock holds at least the declared dependencies"
    return parsed


def test_the_header_says_how_to_regenerate(lock_text: str) -> None:
    assert "make lock" in "\n".join(lock_text.splitlines()[:5])


def test_every_declared_dependency_is_pinned_within_its_specifier(
    pins: dict[NormalizedName, Pin],
) -> None:
    assert unpinned_declarations(pins, declared()) == []
    assert undeclared_roots(pins, declared()) == []


def test_every_pin_is_hashed(pins: dict[NormalizedName, Pin]) -> None:
    assert unhashed(pins) == []


def test_every_pin_is_reachable_from_pyproject(pins: dict[NormalizedName, Pin]) -> None:
    assert unreachable(pins) == []


def test_no_development_tool_ships(pins: dict[NormalizedName, Pin]) -> None:
    tools = dev_tools()
    assert {"pytest", "ruff", "mypy", "hypothesis", "import-linter", "cryptography"} <= tools
    assert shipped_dev_tools(pins, tools) == []


# -- each check fails on a broken copy of the lock ------------------------------------------


def _entry(text: str, name: str) -> str:
    """One pin's block (its line, hashes and annotations) in the lock text."""
    match = re.search(rf"(?ms)^{re.escape(name)}==.*?(?=^\S|\Z)", text)
    assert match, name
    return match.group(0)


def _with_pin(text: str, name: str, version: str) -> str:
    block = _entry(text, name)
    return text.replace(block, re.sub(r"==[^\s;]+", f"=={version}", block, count=1))


def _drop_hashes(text: str, name: str) -> str:
    block = _entry(text, name)
    bare = re.sub(r"(?m)^\s+--hash=\S+( \\)?\n", "", block).replace(" \\\n", "\n", 1)
    return text.replace(block, bare)


def _add(text: str, block: str) -> str:
    return text.rstrip("\n") + "\n" + block


FAKE_HASH = "    --hash=sha256:" + "0" * 64 + "\n"


def _first_declared() -> str:
    return canonicalize_name(declared()[0].name)


BREAKAGES = {
    "a declared dependency missing": (
        lambda t: t.replace(_entry(t, _first_declared()), ""),
        "declared, not in the lock",
    ),
    "a pin below the declared floor": (
        lambda t: _with_pin(t, "kopf", "0.1"),
        "outside",
    ),
    "a pin without hashes": (lambda t: _drop_hashes(t, "kopf"), "no hash"),
    "stale entries that only require each other": (
        lambda t: _add(
            t,
            f"leftover==1.0 \\\n{FAKE_HASH}    # via orphan\n"
            f"orphan==1.0 \\\n{FAKE_HASH}    # via leftover\n",
        ),
        "stale",
    ),
    "an entry required by a package not in the lock": (
        lambda t: _add(t, f"leftover==1.0 \\\n{FAKE_HASH}    # via no-longer-here\n"),
        "which is not in the lock",
    ),
    "a root pyproject no longer declares": (
        lambda t: _add(t, f"leftover==1.0 \\\n{FAKE_HASH}    # via {ROOT}\n"),
        "not declared",
    ),
    "a test tool declared at runtime": (
        lambda t: _add(t, f"pytest==8.3.0 \\\n{FAKE_HASH}    # via {ROOT}\n"),
        "a development tool",
    ),
    "a test tool brought by another tool": (
        lambda t: _add(
            t,
            f"hypothesis==6.100.0 \\\n{FAKE_HASH}    # via {ROOT}\n"
            f"cryptography==42.0.0 \\\n{FAKE_HASH}    # via hypothesis\n",
        ),
        "cryptography: a development tool",
    ),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_each_check_catches_its_breakage(lock_text: str, breakage: str) -> None:
    assert problems(lock_text) == []
    break_it, expected = BREAKAGES[breakage]
    broken = break_it(lock_text)
    assert broken != lock_text
    found = problems(broken)
    assert any(expected in p for p in found), found


def test_a_tool_a_runtime_package_really_needs_may_ship(lock_text: str) -> None:
    """cryptography, say, brought in by a runtime dependency is a runtime dependency."""
    pins = parse_lock(lock_text)
    some_runtime = next(iter(pins))
    text = _add(lock_text, f"cryptography==42.0.0 \\\n{FAKE_HASH}    # via {some_runtime}\n")
    assert shipped_dev_tools(parse_lock(text), dev_tools()) == []
