"""What loading a module brings with it, checked on the modules Python actually loads.

import-linter (.importlinter) checks the import graph statically; these check what it cannot
see: a package `__init__` runs on any import of a submodule, and the OpenShell package loads
gRPC from its own `__init__`. Also: every module's `__all__` names what it defines for
others, exactly.
"""

from __future__ import annotations

import ast
import functools
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import helmdeck_operator

PACKAGE = Path(helmdeck_operator.__file__).parent
MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages([str(PACKAGE)], prefix="helmdeck_operator.")
    if not m.name.endswith(".__main__")  # running it is what importing it does
)
CORE = [m for m in MODULES if m.startswith("helmdeck_operator.core.")] + [
    "helmdeck_operator.vocabulary"
]


def test_the_functional_core_loads_no_grpc_and_no_openshell_stubs() -> None:
    probe = (
        "import importlib, sys\n"
        f"for name in {CORE!r}: importlib.import_module(name)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'grpc', 'openshell', 'kopf', "
        "'lightkube', 'aiohttp'}))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert len(CORE) >= 8
    assert loaded.stdout.strip() == "[]"


def test_the_gateway_value_types_load_without_grpc() -> None:
    probe = (
        "import sys\n"
        "from helmdeck_operator.gateway import models\n"
        "before = 'grpc' in sys.modules\n"
        "from helmdeck_operator.gateway import client\n"
        "print(before, 'grpc' in sys.modules)\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.split() == ["False", "True"]


@pytest.mark.parametrize("module", MODULES)
def test_every_module_says_what_it_is(module: str) -> None:
    assert importlib.import_module(module).__doc__, f"{module} has no docstring"


def _defined_publicly(path: Path) -> set[str]:
    """Top-level classes, functions and UPPER_CASE constants a module defines itself."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper())
    return {n for n in names if not n.startswith("_")}


def _path(module: str) -> Path:
    relative = Path(*module.split(".")[1:])
    package = PACKAGE / relative / "__init__.py"
    return package if package.exists() else PACKAGE / relative.with_suffix(".py")


@pytest.mark.parametrize("module", MODULES)
def test_all_names_exist(module: str) -> None:
    loaded = importlib.import_module(module)
    exported = getattr(loaded, "__all__", None)
    assert exported is not None, f"{module} has no __all__"
    missing = [name for name in exported if not hasattr(loaded, name)]
    assert not missing, f"{module}.__all__ names what it does not have: {missing}"
    assert len(set(exported)) == len(exported), f"{module}.__all__ repeats a name"


@pytest.mark.parametrize("module", MODULES)
def test_all_lists_every_public_definition_used_elsewhere(module: str) -> None:
    """A public class, function or constant another module (or test) imports is in
    `__all__`; one used only where it is defined should be private (`_name`)."""
    exported = set(getattr(importlib.import_module(module), "__all__", ()))
    defined = _defined_publicly(_path(module))
    used_elsewhere = {name for name in defined - exported if _imported_elsewhere(module, name)}
    assert not used_elsewhere, f"{module}: used elsewhere but not in __all__: {used_elsewhere}"


def _imported_elsewhere(module: str, name: str) -> bool:
    """Whether any other file of the product, the dev kit or the tests imports `name` from
    `module` (`from module import name`) or reads it through the module (`short.name`)."""
    short = module.rsplit(".", 1)[-1]
    own = _path(module)
    return any(
        path != own and (f"{short}.{name}" in text or name in imports.get(module, ()))
        for path, text, imports in _sources()
    )


@functools.cache
def _sources() -> tuple[tuple[Path, str, dict[str, set[str]]], ...]:
    """Every Python file of the product, the dev kit and the tests, read and parsed once:
    (path, text, the names each module is imported for with `from module import ...`)."""
    roots = (PACKAGE, PACKAGE.parents[1] / "devkit", PACKAGE.parents[1] / "tests")
    sources = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            text = path.read_text()
            imports: dict[str, set[str]] = {}
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.ImportFrom) and node.module:
                    imports.setdefault(node.module, set()).update(a.name for a in node.names)
            sources.append((path, text, imports))
    return tuple(sources)
