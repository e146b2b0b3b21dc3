"""Every third-party module the product imports is declared, and every declared runtime
dependency is imported (or named below with the reason it must stay).

The product is what ships: every .py file under operator/helmdeck_operator, every import in
it (function-level and TYPE_CHECKING ones included: the AST does not care where an import
sits). A module's distribution comes from the installed metadata
(`importlib.metadata.packages_distributions()`), so the venv must have the product's
dependencies installed (`make venv` does).

Some top-level names are shared by several distributions (`google`: protobuf and
googleapis-common-protos; `opentelemetry`: the API, the SDK, the exporters; `lightkube`:
the client and lightkube-models). For those the full dotted name decides: the distribution
whose files hold the longest prefix of it as a module or package.
"""

from __future__ import annotations

import ast
import importlib.machinery
import sys
import tomllib
from collections import defaultdict
from collections.abc import Iterator
from functools import cache
from importlib import metadata
from pathlib import Path, PurePosixPath

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PRODUCT = REPO / "operator" / "helmdeck_operator"
SELF = "helmdeck_operator"

#: Declared runtime dependencies that no product module imports but that must stay declared,
#: each with its reason. Empty today: every declared dependency is imported directly (the
#: floors openshell's generated stubs need, grpcio and protobuf, are imports of ours too).
DECLARED_NOT_IMPORTED: dict[str, str] = {}


def declared_runtime() -> dict[NormalizedName, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(line) for line in project["dependencies"]]
    return {canonicalize_name(r.name): r for r in requirements}


def imported_modules(root: Path = PRODUCT) -> dict[str, set[str]]:
    """{dotted name: {files importing it}} for every absolute import under `root`.

    `from a.b import c` yields `a.b.c`: c may be a submodule (`from opentelemetry import
    trace`), and when it is not, resolving `a.b.c` falls back to `a.b`."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in sorted(root.rglob("*.py")):
        where = path.relative_to(REPO).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found[alias.name].add(where)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    name = node.module if alias.name == "*" else f"{node.module}.{alias.name}"
                    found[name].add(where)
    return dict(found)


def _module_names(file: PurePosixPath) -> Iterator[str]:
    """The importable name a distribution's file provides (`a/b/__init__.py` -> `a.b`,
    `a/c.py` -> `a.c`, `a/_x.cpython-311-x86_64-linux-gnu.so` -> `a._x`)."""
    name = file.name
    for suffix in (".py", *importlib.machinery.EXTENSION_SUFFIXES):
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            parts = [*file.parent.parts, stem] if stem != "__init__" else list(file.parent.parts)
            if parts and all(p.isidentifier() for p in parts):
                yield ".".join(parts)
            return


@cache
def _modules_of(distribution: str) -> frozenset[str]:
    files = metadata.distribution(distribution).files or []
    return frozenset(m for f in files for m in _module_names(PurePosixPath(str(f))))


def distribution_of(dotted: str, top_level: dict[str, list[str]]) -> set[NormalizedName]:
    """The distribution(s) providing `dotted`; empty when nothing installed provides it."""
    candidates = sorted(set(top_level.get(dotted.partition(".")[0], [])))
    if len(candidates) <= 1:
        return {canonicalize_name(c) for c in candidates}
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        owners = {canonicalize_name(c) for c in candidates if prefix in _modules_of(c)}
        if owners:
            return owners
    return set()


def third_party_imports() -> dict[NormalizedName, set[str]]:
    """{distribution: {files importing it}}; an import nothing installed provides fails."""
    top_level = metadata.packages_distributions()
    by_distribution: dict[NormalizedName, set[str]] = defaultdict(set)
    unresolved: dict[str, set[str]] = {}
    for dotted, files in imported_modules().items():
        top = dotted.partition(".")[0]
        if top in sys.stdlib_module_names or top == SELF:
            continue
        owners = distribution_of(dotted, top_level)
        if not owners:
            unresolved[dotted] = files
        for owner in owners:
            by_distribution[owner] |= files
    assert not unresolved, f"imported but provided by no installed distribution: {unresolved}"
    return dict(by_distribution)


def test_the_product_has_imports_to_check() -> None:
    imports = third_party_imports()
    # The walk reaches function-level imports (tracing loads the OTLP exporter lazily).
    assert "opentelemetry-exporter-otlp-proto-grpc" in imports
    assert {"kopf", "lightkube", "grpcio", "openshell"} <= imports.keys()


def test_what_the_product_imports_is_exactly_what_it_declares() -> None:
    imports = third_party_imports()
    declared = declared_runtime()
    allowed = {canonicalize_name(n): why for n, why in DECLARED_NOT_IMPORTED.items()}

    undeclared = {d: sorted(f) for d, f in imports.items() if d not in declared}
    unused = sorted(set(declared) - imports.keys() - allowed.keys())
    stale_allowances = sorted(n for n in allowed if n in imports or n not in declared)
    assert all(why.strip() for why in allowed.values()), "every allowance says why"
    assert not undeclared, f"imported but not in [project] dependencies: {undeclared}"
    assert not unused, f"declared but imported nowhere in {PRODUCT.relative_to(REPO)}: {unused}"
    assert not stale_allowances, (
        f"DECLARED_NOT_IMPORTED entries that are imported or no longer declared: {stale_allowances}"
    )
