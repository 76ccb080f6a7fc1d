#!/usr/bin/env python3
"""Checks that docs/user-guide.md covers the whole TrainingJob API.

    python3 scripts/check-user-guide.py [--crd crds/trainingjob.yaml] [--guide docs/user-guide.md]
                                        [--operator operator/src driver/src ...]

Exits 0 when everything is covered, 1 with the list of what is missing. Needs PyYAML.

What counts as covered:

- **Fields.** Every property under `spec` and `status` in the CRD's openAPIV3Schema (nested
  objects and array items included) must be named in the guide, in backticks, either by its full
  path (`spec.backend.openfaas.maxReplicas`) or by its path relative to a section whose heading
  names a parent (`openfaas.maxReplicas` or `maxReplicas` under `## spec.backend`; `history[].epoch`
  or `history.epoch` under `## status`). A heading that names the field itself also covers it.
  Subsections without a path in their heading inherit their parent's. A bare leaf name elsewhere
  does not count: `image` or `seed` appear in too many places to prove anything.
  Fields that are Kubernetes' own types (`BY_REFERENCE`: a pod's affinity, tolerations, env, ...)
  are covered by their own name; their sub-fields are Kubernetes' to document, and the guide
  links there.
- **Enum values.** Every value an enum field accepts (`knative`, `lambda-arm`, `Suspended`, ...)
  must appear in backticks somewhere in the guide.
- **Condition reasons.** Every reason the operator can give a phase (string literals after
  `JobPhase::X,` in the operator's and the driver's sources and the scheduler's epoch gate and the store's errors, and
  the match arms of `fn reason` / `fn condition_reason`) must appear in backticks in the guide.
  Test modules are ignored. `--operator` with no path skips this.
"""

import argparse
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
# A path in a heading: spec, spec.x.y, status, status.history[] (with or without backticks).
HEADING_PATH = re.compile(r"\b((?:spec|status)(?:\.[A-Za-z][A-Za-z0-9]*(?:\[\])?)*)")
CODE = re.compile(r"`([^`\n]+)`")


# Fields whose schema is a Kubernetes core type, taken whole from the Kubernetes API.
BY_REFERENCE = {
    f"spec.backend.podTemplate.{name}"
    for name in ("affinity", "tolerations", "env", "envFrom", "imagePullSecrets", "resources")
}


def walk(schema, parts):
    """Yields (path parts, schema) for every property below `schema`; array items are `name[]`."""
    for name, child in sorted((schema.get("properties") or {}).items()):
        here = parts + [name]
        yield here, child
        if ".".join(here) in BY_REFERENCE:
            continue
        node, field = child, here
        while node.get("type") == "array" and isinstance(node.get("items"), dict):
            field = field[:-1] + [field[-1] + "[]"]
            node = node["items"]
        if node.get("properties"):
            yield from walk(node, field)


def plain(path):
    """`status.history[].epoch` -> `status.history.epoch`."""
    return path.replace("[]", "")


def guide_sections(text):
    """Yields (scopes, set of backticked tokens) per section; scopes are the paths its heading
    (or the nearest ancestor heading with paths) names."""
    stack = []  # (level, scopes)
    scopes, tokens = [], set()
    in_fence = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        heading = None if in_fence else HEADING.match(line)
        if heading:
            yield scopes, tokens
            level = len(heading.group(1))
            named = [plain(p) for p in HEADING_PATH.findall(heading.group(2).replace("`", ""))]
            while stack and stack[-1][0] >= level:
                stack.pop()
            if not named and stack:
                named = stack[-1][1]
            stack.append((level, named))
            scopes, tokens = named, set(named)
            continue
        for token in CODE.findall(line):
            tokens.add(plain(token.strip()))
    yield scopes, tokens


def field_covered(path, sections, everywhere):
    full = plain(".".join(path))
    if full in everywhere:
        return True
    for scopes, tokens in sections:
        for scope in scopes:
            if full == scope:
                return True
            if full.startswith(scope + "."):
                relative = full[len(scope) + 1 :]
                # The relative path, or a tail of it that still names the leaf's parent
                # (`openfaas.maxReplicas` for spec.backend.openfaas.maxReplicas under `spec`).
                parts = relative.split(".")
                for start in range(len(parts)):
                    if (start == 0 or len(parts) - start >= 2) and ".".join(parts[start:]) in tokens:
                        return True
    return False


def operator_reasons(sources):
    """Condition reasons the operator sets, from its sources (test modules left out)."""
    reasons = set()
    files = []
    for source in map(Path, sources):
        files += [source] if source.is_file() else sorted(source.rglob("*.rs"))
    for file in files:
        if file.name == "tests.rs":
            continue
        text = file.read_text(encoding="utf-8")
        text = text.split("#[cfg(test)]")[0]
        reasons.update(re.findall(r'JobPhase::\w+\s*,\s*"([A-Z][A-Za-z]+)"', text))
        for body in re.findall(r"fn (?:condition_)?reason\(&?self\)[^{]*\{(.*?)\n    \}", text, re.S):
            reasons.update(re.findall(r'=>\s*"([A-Z][A-Za-z]+)"', body))
    return reasons


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crd", default=ROOT / "crds/trainingjob.yaml", type=Path)
    parser.add_argument("--guide", default=ROOT / "docs/user-guide.md", type=Path)
    parser.add_argument("--operator", nargs="*",
                        default=[str(ROOT / d) for d in ("operator/src", "driver/src", "scheduler/src/gate.rs", "store/src/lib.rs")])
    args = parser.parse_args()

    crd = yaml.safe_load(args.crd.read_text(encoding="utf-8"))
    text = args.guide.read_text(encoding="utf-8")
    sections = list(guide_sections(text))
    everywhere = set().union(*(tokens for _, tokens in sections))

    missing_fields, missing_values, fields, values = [], [], 0, 0
    for version in crd["spec"]["versions"]:
        root = version["schema"]["openAPIV3Schema"]
        top = {name: root["properties"][name] for name in ("spec", "status")}
        for path, schema in walk({"properties": top}, []):
            if len(path) > 1:
                fields += 1
                if not field_covered(path, sections, everywhere):
                    missing_fields.append(".".join(path))
            node = schema
            while node.get("type") == "array" and isinstance(node.get("items"), dict):
                node = node["items"]
            for value in node.get("enum") or []:
                values += 1
                if str(value) not in everywhere:
                    missing_values.append(f"{'.'.join(path)}: {value}")

    missing_reasons, reasons = [], set()
    if args.operator:
        reasons = operator_reasons(args.operator)
        missing_reasons = sorted(r for r in reasons if r not in everywhere)

    guide = args.guide.relative_to(ROOT) if args.guide.is_relative_to(ROOT) else args.guide
    if missing_fields or missing_values or missing_reasons:
        print(f"{guide} does not cover:", file=sys.stderr)
        for label, items in (
            ("field", missing_fields),
            ("enum value", missing_values),
            ("condition reason", missing_reasons),
        ):
            for item in items:
                print(f"  {label}: {item}", file=sys.stderr)
        print(
            f"{len(missing_fields)} of {fields} fields, {len(missing_values)} of {values} enum values, "
            f"{len(missing_reasons)} of {len(reasons)} condition reasons missing",
            file=sys.stderr,
        )
        return 1
    print(f"{guide}: all {fields} fields, {values} enum values and {len(reasons)} condition reasons covered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
