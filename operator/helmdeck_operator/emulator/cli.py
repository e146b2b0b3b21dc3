"""`helmdeck-operator emulator`: run the OpenShell gateway emulator as a process.

Used by `make demo` and by integration tests that need the gateway to outlive the operator.
Once listening it prints one JSON line to stdout, `{"address": ..., "admin_url": ...}`, so a
parent started with `--port 0 --admin-port 0` learns the ports it got; then it serves until
SIGINT/SIGTERM. Tokens are read from files so they never appear in `ps` output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main", "register"]


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument("--port", type=int, default=17670, help="gRPC port; 0 = pick a free one")
    parser.add_argument("--admin-port", type=int, default=None, help="admin HTTP port; 0 = free")
    parser.add_argument("--tls-cert", type=Path, help="server certificate (PEM)")
    parser.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    parser.add_argument("--client-ca", type=Path, help="CA for client certificates (mTLS)")
    parser.add_argument("--token-file", type=Path, help="bearer token with every right")
    parser.add_argument(
        "--readonly-token-file", type=Path, help="bearer token that may only read (tests 403s)"
    )
    parser.add_argument(
        "--workspace", action="append", default=None, help="workspace (repeat; first = default)"
    )
    parser.add_argument(
        "--provider", action="append", default=None, help="known provider name (repeat)"
    )
    parser.add_argument("--driver", default="kubernetes", help="compute driver name to report")
    parser.add_argument("--ready-delay", type=float, default=0.5, help="PROVISIONING -> READY")
    parser.add_argument("--load-delay", type=float, default=0.2, help="policy PENDING -> LOADED")
    parser.add_argument("--delete-delay", type=float, default=0.3, help="DELETING -> gone")
    parser.add_argument("--stop-delay", type=float, default=0.2, help="STOPPING -> STOPPED")
    parser.add_argument("--start-delay", type=float, default=0.2, help="STARTING -> READY")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        help="fault spec, e.g. latency=0.2, error:GetSandbox=UNAVAILABLE@0.5, outage=10, "
        "fail-loads=1, fail-boots=1 (repeat; see docs/emulator.md)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for random faults")
    parser.set_defaults(handler=run)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `emulator` subcommand to the main CLI."""
    parser = subparsers.add_parser(
        "emulator", help="run the OpenShell gateway emulator (tests and demo)"
    )
    _add_arguments(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m helmdeck_operator.emulator", description="OpenShell gateway emulator"
    )
    _add_arguments(parser)
    return parser


def _config(args: argparse.Namespace) -> Any:
    # Imported here so `helmdeck-operator --help` stays cheap.
    from helmdeck_operator.emulator.auth import READ_SCOPES, Principal
    from helmdeck_operator.emulator.faults import parse_fault_spec
    from helmdeck_operator.emulator.server import EmulatorConfig, TlsFiles
    from helmdeck_operator.emulator.settings import GatewaySettings

    defaults = GatewaySettings()
    settings = GatewaySettings(
        workspaces=tuple(args.workspace or defaults.workspaces),
        providers=frozenset(args.provider) if args.provider else defaults.providers,
        ready_delay=args.ready_delay,
        load_delay=args.load_delay,
        delete_delay=args.delete_delay,
        stop_delay=args.stop_delay,
        start_delay=args.start_delay,
        driver=args.driver,
    )
    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise SystemExit("--tls-cert and --tls-key go together")
        tls = TlsFiles(args.tls_cert, args.tls_key, args.client_ca)
    elif args.client_ca:
        raise SystemExit("--client-ca needs --tls-cert and --tls-key")
    tokens = {}
    if args.token_file:
        tokens[args.token_file.read_text().strip()] = Principal(subject="emulator-admin")
    if args.readonly_token_file:
        tokens[args.readonly_token_file.read_text().strip()] = Principal(
            subject="emulator-reader", scopes=READ_SCOPES, roles=("workspace-user",)
        )
    return EmulatorConfig(
        host=args.host,
        port=args.port,
        admin_port=args.admin_port,
        gateway=settings,
        tls=tls,
        tokens=tokens,
        faults=[parse_fault_spec(f) for f in args.fault],
        seed=args.seed,
    )


async def _serve(args: argparse.Namespace) -> None:
    from helmdeck_operator.emulator.server import start_emulator

    handle = await start_emulator(_config(args))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ready = {"address": handle.address, "admin_url": handle.admin_url, "tls": handle.tls}
    print(json.dumps(ready), flush=True)
    try:
        await stop.wait()
    finally:
        await handle.stop()


def run(args: argparse.Namespace) -> int:
    try:
        asyncio.run(_serve(args))
    except ValueError as exc:  # bad --fault spec
        print(f"emulator: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args)
