#!/usr/bin/env python3
"""Writes docs/api-reference.md from the generated CRD (crds/trainingjob.yaml): one table per
object of the schema, each field with its type, default, constraints and description.

    python3 scripts/api-reference.py            # (re)write docs/api-reference.md
    python3 scripts/api-reference.py --check    # exit 1 when docs/api-reference.md is stale

Needs PyYAML. The CRD comes from `crdgen`; regenerate this file whenever the CRD changes.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CRD = ROOT / "crds/trainingjob.yaml"
DEFAULT_OUT = ROOT / "docs/api-reference.md"


class CrdLoader(yaml.SafeLoader):
    """YAML 1.2 floats: PyYAML's YAML 1.1 rules read `9e-6` (no dot) as a string."""


CrdLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)


def number(value):
    """1.0 -> 1, 0.5 -> 0.5, 1.2e-06 -> 1.2e-06; other values unchanged."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def compact(value):
    """A default as it would be written in a manifest, on one line."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(", ", ": "), sort_keys=True)
    if isinstance(value, str):
        return json.dumps(value)
    return number(value)


def cell(text):
    """Text fit for one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def anchor(path):
    return path.replace(".", "-").replace("[]", "-items").lower()


def type_of(schema):
    kind = schema.get("type", "")
    if schema.get("x-kubernetes-int-or-string"):
        kind = "int-or-string"
    if kind == "array":
        items = schema.get("items", {})
        inner = type_of(items) if items else "any"
        return f"[]{inner}"
    if schema.get("format") and kind in ("integer", "number", "string"):
        return f"{kind} ({schema['format']})"
    if not kind and schema.get("x-kubernetes-preserve-unknown-fields"):
        return "object (free-form)"
    return kind or "any"


def bounds(schema):
    """minimum/maximum, length and item count limits, as text."""
    parts = []
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        parts.append(f"{number(low)} to {number(high)}")
    elif low is not None:
        parts.append(f"≥ {number(low)}")
    elif high is not None:
        parts.append(f"≤ {number(high)}")
    if schema.get("exclusiveMinimum") is True or schema.get("exclusiveMaximum") is True:
        parts.append("bounds exclusive")
    low, high = schema.get("minLength"), schema.get("maxLength")
    if low is not None or high is not None:
        parts.append(f"length {number(low or 0)} to {number(high)}" if high is not None
                     else f"length ≥ {number(low)}")
    low, high = schema.get("minItems"), schema.get("maxItems")
    if low is not None or high is not None:
        parts.append(f"{number(low or 0)} to {number(high)} items" if high is not None
                     else f"≥ {number(low)} items")
    return parts


def constraints(schema, required):
    parts = ["required"] if required else []
    parts += bounds(schema)
    if "enum" in schema:
        parts.append("one of " + ", ".join(f"`{value}`" for value in schema["enum"]))
    if "pattern" in schema:
        parts.append(f"pattern `{schema['pattern']}`")
    items = schema.get("items") or {}
    if schema.get("type") == "array" and items.get("type") not in ("object", None):
        inner = bounds(items)
        if "enum" in items:
            inner.append("one of " + ", ".join(f"`{value}`" for value in items["enum"]))
        if inner:
            parts.append("each item " + ", ".join(inner))
    return "; ".join(parts)


def is_object(schema):
    return schema.get("type") == "object" and bool(schema.get("properties"))


def object_tables(path, schema, out):
    """Appends the table of the object at `path`, then those of the objects below it."""
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    rows = []
    nested = []
    for name, field in properties.items():
        field_path = f"{path}.{name}" if path else name
        shown = f"`{name}`"
        if is_object(field):
            shown = f"[`{name}`](#{anchor(field_path)})"
            nested.append((field_path, field))
        elif field.get("type") == "array" and is_object(field.get("items", {})):
            shown = f"[`{name}`](#{anchor(field_path + '[]')})"
            nested.append((field_path + "[]", field["items"]))
        default = compact(field["default"]) if "default" in field else ""
        rows.append(
            f"| {shown} | {cell(type_of(field))} | {cell('`' + default + '`' if default else '')} "
            f"| {cell(constraints(field, name in required))} | {cell(field.get('description', ''))} |"
        )
    out.append(f'### <a id="{anchor(path)}"></a>`{path}`')
    out.append("")
    if schema.get("description"):
        out.append(" ".join(schema["description"].split()))
        out.append("")
    out.append("| field | type | default | constraints | description |")
    out.append("|---|---|---|---|---|")
    out.extend(rows)
    out.append("")
    for field_path, field in nested:
        object_tables(field_path, field, out)


def render(crd, source):
    spec = crd["spec"]
    names = spec["names"]
    out = [
        "# API reference",
        "",
        f"<!-- Generated by scripts/api-reference.py from {source}; do not edit by hand. -->",
        "",
        f"Group `{spec['group']}`, kind `{names['kind']}` (plural `{names['plural']}`"
        + (", short name " + ", ".join(f"`{n}`" for n in names.get("shortNames", [])) if names.get("shortNames") else "")
        + (", categories " + ", ".join(f"`{c}`" for c in names.get("categories", [])) if names.get("categories") else "")
        + f"), scope {spec['scope']}. The [user guide](user-guide.md) explains what the fields do; "
        "this page lists what the API server accepts.",
        "",
    ]
    for version in spec["versions"]:
        flags = [f for f, on in (("served", version.get("served")), ("storage", version.get("storage"))) if on]
        subresources = ", ".join(f"`{s}`" for s in (version.get("subresources") or {}))
        out.append(f"## {spec['group']}/{version['name']}")
        out.append("")
        out.append(f"Version `{version['name']}` ({', '.join(flags) or 'not served'})"
                   + (f"; subresources {subresources}" if subresources else "") + ".")
        out.append("")
        columns = version.get("additionalPrinterColumns") or []
        if columns:
            out.append("`kubectl get` columns: " + ", ".join(
                f"{c['name']} (`{c['jsonPath']}`)" for c in columns) + ".")
            out.append("")
        schema = version["schema"]["openAPIV3Schema"]
        top = {
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string", "enum": [f"{spec['group']}/{version['name']}"]},
                "kind": {"type": "string", "enum": [names["kind"]]},
                "metadata": {"type": "object", "description": "Standard object metadata; `name` must be a DNS-1123 name."},
                **schema.get("properties", {}),
            },
            "required": ["apiVersion", "kind", *schema.get("required", [])],
        }
        out.append(f'### <a id="{anchor(names["kind"])}"></a>`{names["kind"]}`')
        out.append("")
        # The top-level table lists apiVersion, kind, metadata, spec and status; spec and status
        # get tables of their own.
        rows, nested = [], []
        for name, field in top["properties"].items():
            if is_object(field):
                rows.append(f"| [`{name}`](#{anchor(name)}) | object | | "
                            f"{cell(constraints(field, name in top['required']))} | {cell(field.get('description', ''))} |")
                nested.append((name, field))
            else:
                rows.append(f"| `{name}` | {cell(type_of(field))} | | "
                            f"{cell(constraints(field, name in top['required']))} | {cell(field.get('description', ''))} |")
        out.append("| field | type | default | constraints | description |")
        out.append("|---|---|---|---|---|")
        out.extend(rows)
        out.append("")
        for name, field in nested:
            object_tables(name, field, out)
    return "\n".join(out).rstrip() + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crd", type=Path, default=DEFAULT_CRD)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 when the output file is stale")
    mode.add_argument("--write", action="store_true", help="write the output file (the default)")
    args = parser.parse_args()

    crd = yaml.load(args.crd.read_text(), Loader=CrdLoader)
    try:
        source = args.crd.resolve().relative_to(ROOT)
    except ValueError:
        source = args.crd
    text = render(crd, source)
    if args.check:
        current = args.out.read_text() if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is stale: run python3 scripts/api-reference.py", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
