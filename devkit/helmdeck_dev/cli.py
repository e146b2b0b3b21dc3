"""The `helmdeck-dev` command line: the development kit's commands, from a checkout.

`helmdeck-operator` holds what ships (run, check, emulator, policy); this holds what works
only beside the sources: `cluster`, `demo`, `dev`, `crd-reference`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from helmdeck_dev import controlplane, crdref, demo

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="helmdeck-dev",
        description="Development kit of helmdeck-operator: run from a source checkout.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in (controlplane.register, demo.register, crdref.register):
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
