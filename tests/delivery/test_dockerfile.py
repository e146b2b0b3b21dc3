"""The Dockerfile and .dockerignore, checked statically (no Docker engine on these machines).

hadolint is not available here, so the properties that matter for the image are asserted on
a parse of the Dockerfile: pinned base, two stages, a final stage holding only the venv, a
numeric non-root user, the console script as entrypoint. The .dockerignore is evaluated
with Docker's rules (last matching pattern wins, `!` re-includes) on real paths.

The wheel test (WHEEL_INSTALL_TEST=1, about 20 s with a warm pip cache) does what the
builder stage does, outside Docker: build the wheel, install the runtime dependencies from
requirements.lock with --require-hashes and then the wheel with --no-deps into a fresh venv,
drop pip, run the console script; and it checks the wheel holds the product only.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

#: An exact CPython patch release on slim-bookworm, optionally pinned by an index digest.
PINNED_BASE = re.compile(
    r"^python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$",
)
#: Anything that installs or compiles: must not run in the final stage.
BUILD_TOOLS = re.compile(
    r"\b(apt|apt-get|dpkg|apk|pip|pip3|python -m pip|gcc|g\+\+|cc|make|build-essential|"
    r"curl|wget)\b"
)


@dataclass
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        parsed = json.loads(self.args)
        assert isinstance(parsed, list), f"{self.keyword} is not in exec (JSON) form"
        return [str(p) for p in parsed]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> tuple[list[Instruction], list[Stage]]:
    """(instructions before the first FROM, stages): continuation lines joined, comments and
    parser directives dropped."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "Dockerfile ends inside a continued line"

    preamble: list[Instruction] = []
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            assert len(words) in (1, 3), f"unexpected FROM: {line}"
            stages.append(Stage(base=words[0], name=name))
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, args))
        else:
            preamble.append(Instruction(keyword, args))
    return preamble, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    preamble, parsed = parse_dockerfile(DOCKERFILE.read_text())
    assert not preamble, "nothing (no ARG) before the first FROM: the base is written out"
    return parsed


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def test_two_stages_on_the_same_pinned_base(stages: list[Stage]) -> None:
    assert len(stages) == 2
    builder, final = stages
    assert builder.name == "builder"
    for stage in stages:
        assert PINNED_BASE.match(stage.base), f"base not pinned to an exact tag: {stage.base}"
    assert builder.base == final.base, "builder and final stage must use the same base"


def test_the_final_stage_is_the_venv_and_nothing_else(final: Stage) -> None:
    assert not final.all("RUN"), "the final stage runs nothing: no installer, no compiler"
    assert not final.all("ADD")
    copies = final.all("COPY")
    assert [c.args for c in copies] == ["--from=builder /opt/venv /opt/venv"]
    for instruction in final.instructions:
        if instruction.keyword in ("LABEL",):
            continue
        assert not BUILD_TOOLS.search(instruction.args), instruction


def test_the_final_stage_runs_as_a_numeric_non_root_user(final: Stage) -> None:
    users = final.all("USER")
    assert users, "the final stage sets USER"
    user, _, group = users[-1].args.partition(":")
    assert user.isdigit(), "numeric uid, so runAsNonRoot can verify it"
    assert int(user) == 65532
    assert not group or (group.isdigit() and int(group) != 0)
    # Nothing after USER switches back.
    last_user = max(i for i, ins in enumerate(final.instructions) if ins.keyword == "USER")
    assert all(ins.keyword != "USER" for ins in final.instructions[last_user + 1 :])


def test_entrypoint_is_the_console_script(final: Stage) -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    (entrypoint,) = final.all("ENTRYPOINT")
    assert entrypoint.exec_form() == ["helmdeck-operator"]
    assert "helmdeck-operator" in scripts
    (cmd,) = final.all("CMD")
    assert cmd.exec_form() == ["run"]
    env = " ".join(e.args for e in final.all("ENV"))
    assert "PATH=/opt/venv/bin:$PATH" in env


def test_ports_and_labels(final: Stage) -> None:
    exposed = {p for e in final.all("EXPOSE") for p in e.args.split()}
    assert exposed == {"8080", "9090"}
    labels = " ".join(label.args for label in final.all("LABEL"))
    for key in ("title", "description", "version", "revision", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key


def test_the_builder_keeps_no_pip_cache_and_drops_pip_from_the_venv(stages: list[Stage]) -> None:
    builder = stages[0]
    env = " ".join(e.args for e in builder.all("ENV"))
    assert "PIP_NO_CACHE_DIR=1" in env
    run = " ".join(r.args for r in builder.all("RUN"))
    assert "pip wheel --no-deps" in run
    assert "--only-binary=:all:" in run, "a dependency without a wheel must fail, not compile"
    assert "pip uninstall --yes pip setuptools" in run
    assert not re.search(r"\bapt(-get)?\b", run), "the builder needs no system packages"


def test_the_builder_installs_the_hashed_lock_then_the_wheel_alone(stages: list[Stage]) -> None:
    """What ships is pinned: the dependencies come only from requirements.lock, each file
    checked against its hash, and the wheel brings nothing of its own (--no-deps)."""
    builder = stages[0]
    copied = [shlex.split(c.args)[:-1] for c in builder.all("COPY")]
    assert any("requirements.lock" in sources for sources in copied), "COPY requirements.lock"
    commands = [
        shlex.split(command) for run in builder.all("RUN") for command in run.args.split("&&")
    ]
    installs = [c for c in commands if c[0].endswith("pip") and c[1:2] == ["install"]]
    assert len(installs) == 2, f"two pip installs, the lock then the wheel: {installs}"
    lock, wheel = installs
    assert lock[lock.index("-r") + 1] == "requirements.lock"
    assert "--require-hashes" in lock
    assert "--only-binary=:all:" in lock, "a dependency without a wheel must fail, not compile"
    assert "/wheels/*.whl" in wheel
    assert "--no-deps" in wheel, "the wheel must not pull in anything the lock does not pin"
    assert "-r" not in wheel
    checks = [c for c in commands if c[0].endswith("pip") and c[1:2] == ["check"]]
    assert checks, "pip check: the wheel's declared requirements are all satisfied by the lock"
    assert commands.index(checks[0]) > commands.index(wheel)


# -- .dockerignore --------------------------------------------------------------------------


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip().rstrip("/").lstrip("/")
        if any(_match(pattern, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def _match(pattern: str, path: str) -> bool:
    if pattern.startswith("**/"):
        tail = pattern[3:]
        segments = path.split("/")
        return any(_match(tail, "/".join(segments[i:])) for i in range(len(segments)))
    # fnmatch's `*` crosses `/`; Docker's does not: compare segment by segment.
    pat_parts, path_parts = pattern.split("/"), path.split("/")
    return len(pat_parts) == len(path_parts) and all(
        fnmatchcase(seg, pat) for seg, pat in zip(path_parts, pat_parts, strict=True)
    )


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        ".local/cluster/kubeconfig",
        "tests/conftest.py",
        "e2e/conftest.py",
        "hack/controlplane/kubernetes/go.mod",
        "charts/helmdeck-operator/Chart.yaml",
        ".mypy_cache/3.11/x.json",
        "operator/helmdeck_operator/__pycache__/cli.cpython-311.pyc",
        "operator/helmdeck_operator.egg-info/PKG-INFO",
        "build/lib/helmdeck_operator/cli.py",
        "Dockerfile",
    ],
)
def test_dockerignore_keeps_out(ignore_patterns: list[str], path: str) -> None:
    assert dockerignore_excludes(ignore_patterns, path)


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "requirements.lock",
        "operator/helmdeck_operator/cli.py",
        "operator/helmdeck_operator/py.typed",
        "operator/helmdeck_operator/emulator/server.py",
    ],
)
def test_dockerignore_lets_the_wheel_sources_in(ignore_patterns: list[str], path: str) -> None:
    assert not dockerignore_excludes(ignore_patterns, path)


def test_every_file_the_builder_copies_is_in_the_context(stages: list[Stage]) -> None:
    patterns = DOCKERIGNORE.read_text().splitlines()
    patterns = [p.strip() for p in patterns if p.strip() and not p.startswith("#")]
    for copy in stages[0].all("COPY"):
        *sources, _dest = shlex.split(copy.args)
        for source in sources:
            assert (REPO / source).exists(), source
            assert not dockerignore_excludes(patterns, source.rstrip("/")), source


# -- the wheel, as the builder stage makes it -----------------------------------------------

#: The product's command line; the dev kit's commands are helmdeck-dev's and never ship.
PRODUCT_COMMANDS = {"version", "run", "check", "emulator", "policy"}
DEV_COMMANDS = {"cluster", "demo", "dev", "crd-reference"}


def help_commands(help_text: str) -> list[str]:
    """The subcommands argparse lists under the COMMAND metavar of `--help`."""
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "COMMAND")
    commands = []
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            break
        commands.append(line.split()[0])
    return commands


@pytest.mark.skipif(
    os.environ.get("WHEEL_INSTALL_TEST") != "1",
    reason="set WHEEL_INSTALL_TEST=1: builds the wheel and installs it with its pinned "
    "dependencies (requirements.lock) from the package index into a fresh venv "
    "(about 20 s with a warm pip cache)",
)
def test_the_wheel_installs_into_a_fresh_venv_and_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(*argv: str | Path, cwd: Path = REPO) -> str:
        result = subprocess.run(
            [str(a) for a in argv],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
            timeout=240,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
        assert result.returncode == 0, f"{argv}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    # The build context as Docker sends it: only what .dockerignore lets through, so a file
    # the wheel needs but the context lacks fails here too (and the repo gets no build/).
    context, wheels, venv = tmp_path / "context", tmp_path / "wheels", tmp_path / "venv"
    for name in ("pyproject.toml", "README.md", "requirements.lock"):
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, context / name)
    shutil.copytree(
        REPO / "operator",
        context / "operator",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
    )
    # Build isolation stays on: the wheel must build from pyproject.toml alone.
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", wheels, ".", cwd=context)
    (wheel,) = wheels.glob("helmdeck_operator-*.whl")

    # What the wheel holds: the product package and its metadata, nothing of the dev kit.
    version = str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])
    dist_info = f"helmdeck_operator-{version}.dist-info/"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(dist_info + "entry_points.txt").decode()
    with capsys.disabled():  # shown in CI's output even when the test passes
        print(f"\n{wheel.name}: {len(names)} files")
        for name in names:
            print(f"  {name}")
    assert any(n.startswith("helmdeck_operator/") for n in names)
    outside = [n for n in names if not n.startswith(("helmdeck_operator/", dist_info))]
    assert not outside, f"the wheel ships only the product package: {outside}"
    for banned in ("helmdeck_dev", "testing/", "crdref"):
        assert not [n for n in names if banned in n], f"{banned} in the wheel"
    assert re.findall(r"(?m)^(\S+) = ", entry_points) == ["helmdeck-operator"]

    # As the builder stage: the hashed pins, then the wheel alone, then nothing missing.
    run(sys.executable, "-m", "venv", venv)
    pip = venv / "bin/pip"
    lock = context / "requirements.lock"
    run(pip, "install", "--quiet", "--require-hashes", "--only-binary=:all:", "-r", lock)
    run(pip, "install", "--quiet", "--no-deps", "--no-index", wheel, cwd=tmp_path)
    run(pip, "check", cwd=tmp_path)
    run(pip, "uninstall", "--quiet", "--yes", "pip", "setuptools", cwd=tmp_path)
    assert run(venv / "bin/helmdeck-operator", "version", cwd=tmp_path).strip() == (
        f"helmdeck-operator {version}"
    )
    help_text = run(venv / "bin/helmdeck-operator", "--help", cwd=tmp_path)
    with capsys.disabled():
        print(help_text)
    commands = help_commands(help_text)
    assert not DEV_COMMANDS & set(commands), "the dev kit's commands never ship"
    assert sorted(commands) == sorted(PRODUCT_COMMANDS)
    # What the image runs: the operator and the emulator (kind.sh runs it from the image),
    # importable without the source tree.
    run(venv / "bin/helmdeck-operator", "emulator", "--help", cwd=tmp_path)
    run(
        venv / "bin/python",
        "-c",
        "import helmdeck_operator.handlers, helmdeck_operator.emulator.server",
        cwd=tmp_path,
    )
    assert not (venv / "bin/pip").exists()
