"""The CRD reference page, generated from `crds/*.yaml` so it cannot drift from the schemas.

`crds/` is the single source of truth for the APIs; hand-written field tables drift from it
the first time someone adds a field. So `render` turns the CRD documents into Markdown (per
kind: identity, printer columns, then one table per object level with every field's type,
requiredness, default, bounds and description, followed by its CEL rules and their
messages), `helmdeck-dev crd-reference` writes `docs/crd-reference.md`, and
`--check` (and a unit test) fail when the committed page is stale.

`render` is pure: dictionaries in, text out, deterministic for equal input.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_CRDS", "DEFAULT_OUTPUT", "load_crds", "register", "render"]

#: Where the CRDs and the generated page live, relative to the repository root.
DEFAULT_CRDS = Path("crds")
DEFAULT_OUTPUT = Path("docs/crd-reference.md")

_REGENERATE = "helmdeck-dev crd-reference"
_SPACES = re.compile(r"\s+")


def render(crds: Sequence[Mapping[str, Any]]) -> str:
    """Markdown for `crds` (CustomResourceDefinition documents), kinds in alphabetical order."""
    ordered = sorted(crds, key=lambda crd: str(crd["spec"]["names"]["kind"]))
    lines = [
        "# CRD reference",
        "",
        "<!-- Generated from crds/*.yaml by `helmdeck-dev crd-reference`; do not edit. -->",
        "",
        f"Generated from `crds/*.yaml` by `{_REGENERATE}`; edit the CRDs, not this page.",
        "Design notes (what is refused at admission and why) are in [crds.md](crds.md);",
        "`kubectl explain` shows the same descriptions on a cluster.",
        "",
    ]
    for crd in ordered:
        kind = str(crd["spec"]["names"]["kind"])
        lines.append(f"- [{kind}](#{kind.lower()})")
    lines.append("")
    for crd in ordered:
        lines.extend(_kind(crd))
    return "\n".join(lines).rstrip("\n") + "\n"


def load_crds(directory: Path) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition document in `directory/*.yaml`, by file name."""
    import yaml

    crds: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
                crds.append(document)
    return crds


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `crd-reference` to the top-level command line."""
    parser = subparsers.add_parser(
        "crd-reference",
        help="write docs/crd-reference.md from crds/*.yaml (--check: fail if it is stale)",
        description=(
            "Render the CRD reference page from the CustomResourceDefinitions. Run from the "
            "repository root, or give --crds and --output."
        ),
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the page differs from what the CRDs generate",
    )
    parser.add_argument("--crds", type=Path, default=DEFAULT_CRDS, help="directory of CRD YAML")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the page to write")
    parser.set_defaults(handler=_command)


def _command(args: argparse.Namespace) -> int:
    crds = load_crds(args.crds)
    if not crds:
        print(f"error: no CustomResourceDefinition in {args.crds}/*.yaml", file=sys.stderr)
        return 2
    text = render(crds)
    output: Path = args.output
    if args.check:
        current = output.read_text() if output.exists() else None
        if current != text:
            state = "is missing" if current is None else "is out of date"
            print(
                f"{output} {state} with {args.crds}/; regenerate it with: {_REGENERATE}",
                file=sys.stderr,
            )
            return 1
        print(f"{output} is up to date")
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(f"wrote {output}")
    return 0


# -- one kind ----------------------------------------------------------------------------


def _kind(crd: Mapping[str, Any]) -> list[str]:
    spec = crd["spec"]
    names = spec["names"]
    kind = str(names["kind"])
    versions = list(spec.get("versions", []))
    served = ", ".join(
        f"`{v['name']}`" + (" (storage)" if v.get("storage") else "")
        for v in versions
        if v.get("served", True)
    )
    lines = [
        f"## {kind}",
        "",
        "| | |",
        "|---|---|",
        f"| API group | `{spec['group']}` |",
        f"| versions | {served} |",
        f"| scope | {spec.get('scope', '')} |",
        f"| plural / singular | `{names.get('plural', '')}` / `{names.get('singular', '')}` |",
        f"| list kind | `{names.get('listKind', kind + 'List')}` |",
        f"| short names | {_codes(names.get('shortNames', []))} |",
        f"| categories | {_codes(names.get('categories', []))} |",
    ]
    for version in versions:
        subresources = ", ".join(f"`{s}`" for s in version.get("subresources") or {})
        if subresources:
            lines.append(f"| subresources ({version['name']}) | {subresources} |")
        scale = (version.get("subresources") or {}).get("scale")
        if isinstance(scale, Mapping):
            lines.append(f"| scale ({version['name']}) | {_scale(scale)} |")
    lines.append("")
    for version in versions:
        suffix = f" ({version['name']})" if len(versions) > 1 else ""
        lines.extend(_printer_columns(kind, version, suffix))
        schema = (version.get("schema") or {}).get("openAPIV3Schema") or {}
        description = _text(schema.get("description", ""))
        if description:
            lines.extend([description, ""])
        for path, node in _object_levels(schema, ""):
            lines.extend(_level(kind, path, node, suffix))
    return lines


def _scale(scale: Mapping[str, Any]) -> str:
    """The scale subresource's paths: what `kubectl scale` writes and an autoscaler reads."""
    parts = [f"replicas {_code(str(scale['specReplicasPath']))}"]
    parts.append(f"status {_code(str(scale['statusReplicasPath']))}")
    if scale.get("labelSelectorPath"):
        parts.append(f"selector {_code(str(scale['labelSelectorPath']))}")
    return ", ".join(parts)


def _printer_columns(kind: str, version: Mapping[str, Any], suffix: str) -> list[str]:
    columns = version.get("additionalPrinterColumns") or []
    if not columns:
        return []
    lines = [
        f"### {kind} printer columns{suffix}",
        "",
        "`kubectl get` shows these; `-o wide` adds the ones marked wide.",
        "",
        "| column | type | JSONPath | shown | description |",
        "|---|---|---|---|---|",
    ]
    for column in columns:
        shown = "wide" if column.get("priority", 0) else "always"
        lines.append(
            f"| {_cell(column['name'])} | {column['type']} | {_code(column['jsonPath'])} "
            f"| {shown} | {_cell(_text(column.get('description', '')))} |"
        )
    lines.append("")
    return lines


# -- object levels -----------------------------------------------------------------------


def _object_levels(schema: Mapping[str, Any], path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Each object that has properties, as (path, schema), parents before children."""
    if schema.get("properties"):
        yield path, schema
        for name, child in schema["properties"].items():
            yield from _object_levels(child, _join(path, name))
    items = schema.get("items")
    if isinstance(items, Mapping):
        yield from _object_levels(items, f"{path}[]")
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping):
        yield from _object_levels(extra, f"{path}{{}}")


def _level(kind: str, path: str, node: Mapping[str, Any], suffix: str) -> list[str]:
    title = f"{kind}.{path}" if path else kind
    lines = [f"### `{title}`{suffix}", ""]
    description = _text(node.get("description", ""))
    if path and description:
        lines.extend([description, ""])
    lines.extend(
        [
            "| field | type | required | default | constraints | description |",
            "|---|---|---|---|---|---|",
        ]
    )
    required = set(node.get("required", []))
    rules: list[tuple[str, Mapping[str, Any]]] = [
        (path or kind, rule) for rule in node.get("x-kubernetes-validations", [])
    ]
    for name, child in node["properties"].items():
        field = _join(path, name)
        lines.append(
            f"| {_code(field)} | {_type(child)} | {'yes' if name in required else ''} "
            f"| {_default(child)} | {_constraints(child)} "
            f"| {_cell(_text(child.get('description', '')))} |"
        )
        rules.extend(_rules_below(child, field))
    lines.append("")
    if rules:
        lines.extend(
            [
                "Validation rules (CEL, checked by the apiserver):",
                "",
                "| field | rule | message | reason |",
                "|---|---|---|---|",
            ]
        )
        for where, rule in rules:
            target = rule.get("fieldPath")
            shown = _code(where) + (f" (reported at {_code(where + target)})" if target else "")
            lines.append(
                f"| {shown} | {_code(_text(rule['rule']))} | {_message(rule)} "
                f"| {rule.get('reason', '')} |"
            )
        lines.append("")
    return lines


def _rules_below(node: Mapping[str, Any], path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Rules on a field and on the scalar items / values inside it (objects list their own)."""
    for rule in node.get("x-kubernetes-validations", []):
        if not node.get("properties"):
            yield path, rule
    items = node.get("items")
    if isinstance(items, Mapping) and not items.get("properties"):
        yield from _rules_below(items, f"{path}[]")
    extra = node.get("additionalProperties")
    if isinstance(extra, Mapping) and not extra.get("properties"):
        yield from _rules_below(extra, f"{path}{{}}")


# -- cells -------------------------------------------------------------------------------


def _type(node: Mapping[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "int or string"
    kind = str(node.get("type", "any"))
    if kind == "array":
        items = node.get("items")
        return "[]" + (_type(items) if isinstance(items, Mapping) else "any")
    if kind == "object" and isinstance(node.get("additionalProperties"), Mapping):
        return "map[string]" + _type(node["additionalProperties"])
    if node.get("format"):
        return f"{kind} ({node['format']})"
    return kind


def _default(node: Mapping[str, Any]) -> str:
    if "default" not in node:
        return ""
    return _code(
        json.dumps(node["default"]) if not isinstance(node["default"], str) else node["default"]
    )


def _constraints(node: Mapping[str, Any]) -> str:
    """Enum, bounds, pattern and list semantics as cell text (values in code spans)."""
    parts: list[str] = []
    if "enum" in node:
        parts.append("one of " + ", ".join(_code(str(v)) for v in node["enum"]))
    for key, label in (
        ("minimum", "min"),
        ("maximum", "max"),
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
        ("maxProperties", "max entries"),
    ):
        if key in node:
            parts.append(f"{label} {node[key]}")
    if "pattern" in node:
        parts.append("pattern " + _code(str(node["pattern"])))
    list_type = node.get("x-kubernetes-list-type")
    if list_type == "map":
        parts.append("list-map keyed by " + ", ".join(node.get("x-kubernetes-list-map-keys", [])))
    elif list_type == "set":
        parts.append("set (items unique)")
    items = node.get("items")
    if isinstance(items, Mapping) and not items.get("properties"):
        inner = _constraints(items)
        if inner:
            parts.append(f"items: {inner}")
    return "; ".join(parts)


def _message(rule: Mapping[str, Any]) -> str:
    """The rule's message as cell text; a computed message shows its CEL expression."""
    if "message" in rule:
        return _cell(_text(rule["message"]))
    if "messageExpression" in rule:
        return "computed: " + _code(_text(rule["messageExpression"]))
    return ""


def _text(value: object) -> str:
    return _SPACES.sub(" ", str(value)).strip()


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _codes(values: Sequence[str]) -> str:
    return ", ".join(_code(v) for v in values)


def _code(text: str) -> str:
    """An inline code span that survives backticks and table pipes in `text`."""
    fence = "`"
    while fence in text:
        fence += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text.replace('|', chr(92) + '|')}{pad}{fence}"


def _cell(text: str) -> str:
    """Prose for a table cell: pipes, emphasis markers and angle brackets taken literally."""
    for char in ("\\", "|", "*", "_"):
        text = text.replace(char, "\\" + char)
    return text.replace("<", "&lt;").replace(">", "&gt;")
