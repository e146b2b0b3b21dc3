"""`helmdeck-operator policy render FILE`: a SidecarPolicy's OpenShell policy, offline.

Lets a user (or CI) see exactly what a SidecarPolicy becomes and its revision, and get the
apiserver's validation answers with field paths, without a cluster or a gateway. What it
prints is what a gateway would receive: the platform's egress guard (`guard`) merged in,
from the operator configuration named by `--config` (link-local ranges only without one);
each allowedIps entry the guard narrowed is reported on standard error. Heavy
imports (pydantic, protobuf, yaml) happen inside the handler so that registering the
subcommand costs nothing for the other subcommands.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openshell._proto import sandbox_pb2

    from helmdeck_operator.policy.guard import EgressGuard

GuardOf = Callable[[Path], "EgressGuard"]
"""Reads the egress guard of an operator configuration file (ValueError when it is
invalid): given by the top-level command line, as the configuration sits above this layer."""

__all__ = ["EXIT_INVALID", "register", "render"]

#: Exit status for input that is not a valid SidecarPolicy (argparse uses 2 for bad usage too).
EXIT_INVALID = 2

_KIND = "SidecarPolicy"
_API_VERSION = "helmdeck.dev/v1alpha1"


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], guard_of: GuardOf
) -> None:
    """Add `policy render` to the top-level command line."""
    policy = subparsers.add_parser("policy", help="work with SidecarPolicy specs offline")
    actions = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    render_cmd = actions.add_parser(
        "render",
        help="print the OpenShell policy a SidecarPolicy translates to, and its revision",
        description=(
            "Validate a SidecarPolicy manifest (or a bare spec) as the apiserver would and "
            "print the OpenShell policy it becomes, as YAML, followed by its revision. "
            "The platform's egress guard is merged in as the operator does it; each "
            "allowedIps entry it narrows is reported on stderr. "
            f"Invalid input, or a policy the guard refuses, prints one 'path: message' line "
            f"per problem to stderr and exits {EXIT_INVALID}."
        ),
    )
    render_cmd.add_argument("file", help="YAML or JSON file; '-' reads standard input")
    render_cmd.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("HELMDECK_CONFIG"),
        help="operator configuration whose egress_guard to apply (default: $HELMDECK_CONFIG; "
        "without one only the link-local ranges are guarded)",
    )
    render_cmd.set_defaults(handler=lambda args: _render_command(args, guard_of))


def render(policy: sandbox_pb2.SandboxPolicy) -> str:
    """The text `policy render` prints: the policy as sorted YAML, then `revision: ...`."""
    import yaml
    from google.protobuf import json_format

    from helmdeck_operator.policy import revision

    document = json_format.MessageToDict(policy, preserving_proto_field_name=True)
    body = yaml.safe_dump(document, sort_keys=True, default_flow_style=False)
    return f"{body}revision: {revision.revision(policy)}\n"


def _render_command(args: argparse.Namespace, guard_of: GuardOf) -> int:
    import yaml

    from helmdeck_operator.policy import errors, guard, translate

    egress_guard = guard.EgressGuard()
    if args.config is not None:
        try:
            egress_guard = guard_of(args.config)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return EXIT_INVALID
    source = "<stdin>" if args.file == "-" else args.file
    try:
        if args.file == "-":
            document = yaml.safe_load(sys.stdin)
        else:
            with open(args.file, encoding="utf-8") as stream:
                document = yaml.safe_load(stream)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        print(f"{source}: cannot read a YAML document: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        policy, report = translate.to_guarded_policy(_spec_of(document), egress_guard)
    except errors.PolicyValidationError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return EXIT_INVALID
    for narrowing in report.narrowings:
        print(f"egress guard: {narrowing}", file=sys.stderr)
    sys.stdout.write(render(policy))
    return 0


def _spec_of(document: object) -> object:
    """The spec in a manifest, or the document itself when it is a bare spec.

    A document with `kind` or `apiVersion` is a manifest and must be a SidecarPolicy of our
    API version; anything else is taken as a spec and validated as one.
    """
    from helmdeck_operator.policy import errors

    if not isinstance(document, dict) or not ({"kind", "apiVersion"} & document.keys()):
        return document
    issues = []
    if document.get("apiVersion") != _API_VERSION:
        issues.append(errors.Issue("apiVersion", f"must be {_API_VERSION}"))
    if document.get("kind") != _KIND:
        issues.append(errors.Issue("kind", f"must be {_KIND}"))
    if "spec" not in document:
        issues.append(errors.Issue(errors.SPEC_ROOT, "Field required"))
    if issues:
        raise errors.PolicyValidationError(issues)
    return document["spec"]
