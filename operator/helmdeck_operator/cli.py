"""The `helmdeck-operator` command line: one entry point, a subcommand per concern.

Subcommands register themselves through `_SUBCOMMANDS` so each lives beside the code it
drives; this module only parses arguments and dispatches.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from helmdeck_operator import __version__

__all__ = ["main"]

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
    from helmdeck_operator import crdref, run
    from helmdeck_operator.emulator import cli as emulator_cli
    from helmdeck_operator.policy import cli as policy_cli
    from helmdeck_operator.testing import controlplane, demo

    return [
        run.register,
        controlplane.register,
        demo.register,
        emulator_cli.register,
        policy_cli.register,
        crdref.register,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
