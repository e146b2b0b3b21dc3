"""The `helmdeck-operator` command line: what ships, one subcommand per concern.

`run` and `check` (the operator), `emulator` (the OpenShell stand-in the kind script runs
from the image), `policy` (render and check SidecarPolicies offline), `version`. Each module
exposes `register(subparsers)` beside the code it drives; this one only parses and
dispatches. The development commands (`cluster`, `demo`, `dev`, `crd-reference`) are
`helmdeck-dev`'s, in the dev kit, which never ships.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from helmdeck_operator import __version__

if TYPE_CHECKING:
    from helmdeck_operator.policy.guard import EgressGuard

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def _version(_: argparse.Namespace) -> int:
    print(f"helmdeck-operator {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="helmdeck-operator",
        description="Run HelmdeckSession and SidecarPolicy objects as OpenShell sandboxes.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    version = sub.add_parser("version", help="print the version")
    version.set_defaults(handler=_version)
    for register in _registrars():
        register(sub)
    return parser


def _registrars() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    """Each subcommand module exposes `register(subparsers)`; imported lazily so that
    `helmdeck-operator version` does not pay for gRPC or Kubernetes imports."""
    from helmdeck_operator import run
    from helmdeck_operator.emulator import cli as emulator_cli
    from helmdeck_operator.policy import cli as policy_cli

    return [
        run.register,
        emulator_cli.register,
        functools.partial(policy_cli.register, guard_of=_egress_guard),
    ]


def _egress_guard(path: Path) -> EgressGuard:
    """The egress guard an operator configuration file sets (`policy render --config`);
    ConfigError (a ValueError) when the file is invalid."""
    from helmdeck_operator.config import load_config

    return load_config(path).egress_guard.guard()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
