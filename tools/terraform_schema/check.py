"""Check a Terraform folder against the provider schema, block by block.

What ``terraform validate`` would say about the google resources, without the provider
binary, plus what it cannot see: references behind ``for_each`` keys
(``google_x.y[each.key].attr``) are walked through the schema too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2

OPTIONS = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=True, with_comments=False)
META_ARGUMENTS = {"count", "for_each", "depends_on", "lifecycle", "provider", "provisioner", "connection"}
PROVIDER_META = {"alias", "version"}
BLOCK_MARK = "__is_block__"
INDEX = r"\[[^\[\]]*\]"
REFERENCE = re.compile(rf"(?<![\w.])(data\.)?(google_\w+)\.([A-Za-z_][\w-]*)((?:{INDEX}|\.[A-Za-z_]\w*)*)")
STEP = re.compile(rf"{INDEX}|\.([A-Za-z_]\w*)")


@dataclass(frozen=True)
class Finding:
    """One error: where it is and what is wrong."""

    file: str
    line: int
    address: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.address}: {self.message}"


def pinned_version(tf_dir: Path) -> str:
    """The exact hashicorp/google version the folder pins in ``required_providers``."""
    for path in sorted(tf_dir.glob("*.tf")):
        doc = _parse(path)
        for block in doc.get("terraform", []):
            for providers in block.get("required_providers", []):
                google = providers.get("google")
                if google and re.fullmatch(r"=?\s*\d+\.\d+\.\d+", str(google.get("version", ""))):
                    return str(google["version"]).lstrip("= ")
    raise ValueError(f"{tf_dir} pins no exact hashicorp/google version in required_providers")


def _parse(path: Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        return hcl2.load(fh, serialization_options=OPTIONS)


def _is_block(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and v.get(BLOCK_MARK) for v in value)


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


class _FileChecker:
    def __init__(self, name: str, text: str, schema: dict, declared: dict[tuple[str, str, str], dict]):
        self.name, self.lines = name, text.splitlines()
        self.schema, self.declared = schema, declared
        self.findings: list[Finding] = []

    def line_of(self, *words: str) -> int:
        pattern = re.compile(r"^\s*" + r"\s+".join(re.escape(f'"{w}"') if i else re.escape(w)
                                                   for i, w in enumerate(words)))
        return next((n for n, line in enumerate(self.lines, 1) if pattern.match(line)), 1)

    def error(self, line: int, address: str, message: str) -> None:
        self.findings.append(Finding(self.name, line, address, message))

    def body(self, body: dict, block: dict, address: str, line: int, meta: set[str]) -> None:
        attributes, blocks = block["attributes"], block["blocks"]
        present = set()
        for key, value in body.items():
            if key == BLOCK_MARK or key in meta:
                continue
            if key == "dynamic":
                for dynamic in value:
                    for name, spec in dynamic.items():
                        if name == BLOCK_MARK:
                            continue
                        if name not in blocks:
                            self.error(line, address, f'dynamic "{name}": no block "{name}" here')
                            continue
                        present.add(name)
                        for content in spec.get("content", []):
                            self.body(content, blocks[name]["block"], f"{address}.{name}", line, set())
                continue
            present.add(key)
            if key in attributes:
                self.argument(key, value, attributes[key], address, line)
            elif key in blocks:
                self.nested(key, value, blocks[key], address, line)
            else:
                self.error(line, address, f'unknown argument or block "{key}"')
        for name, flags in attributes.items():
            if flags["required"] and name not in present:
                self.error(line, address, f'missing required argument "{name}"')
        for name, nested in blocks.items():
            if nested["required"] and name not in present:
                self.error(line, address, f'missing required block "{name}"')

    def argument(self, key: str, value: Any, flags: dict, address: str, line: int) -> None:
        if _is_block(value):
            self.error(line, address, f'"{key}" is an argument, not a block: write {key} = ...')
        elif flags["computed"] and not (flags["optional"] or flags["required"]):
            self.error(line, address, f'"{key}" is computed by the provider and cannot be set')
        elif "enum" in flags and isinstance(value, str) and "${" not in value and value not in flags["enum"]:
            self.error(line, address, f'"{key}" = "{value}" is not one of {flags["enum"]}')

    def nested(self, key: str, value: Any, nested: dict, address: str, line: int) -> None:
        if not _is_block(value):
            self.error(line, address, f'"{key}" is a block, not an argument: write {key} {{ ... }}')
            return
        if nested["nesting"] == "single" and len(value) > 1:
            self.error(line, address, f'at most one "{key}" block is allowed, found {len(value)}')
        for item in value:
            self.body(item, nested["block"], f"{address}.{key}", line, set())

    def references(self, doc: dict) -> None:
        for kind in ("resource", "data", "locals", "output", "module", "provider", "variable"):
            for block in doc.get(kind, []):
                for text in _strings(block):
                    if "${" in text:
                        for match in REFERENCE.finditer(text):
                            self.reference(match)

    def reference(self, match: re.Match) -> None:
        data, tf_type, name, path = match.groups()
        kind = "data" if data else "resource"
        address = f"{'data.' if data else ''}{tf_type}.{name}"
        line = next((n for n, text in enumerate(self.lines, 1) if match.group(0) in text), 1)
        declared = self.declared.get((kind, tf_type, name))
        if declared is None:
            self.error(line, address, "referenced but not declared")
            return
        steps = [(m.group(1), m.group(0)) for m in STEP.finditer(path)]
        if steps and steps[0][0] is not None and ("for_each" in declared or "count" in declared):
            self.error(line, address, f'has count or for_each: "{address}.{steps[0][0]}" needs an instance key')
            return
        node: dict | None = self.schema[kind].get(tf_type)
        for attr, text in steps:
            if node is None or attr is None:
                continue
            if attr in node["attributes"]:
                node = node["attributes"][attr].get("object")
            elif attr in node["blocks"]:
                node = node["blocks"][attr]["block"]
            else:
                self.error(line, address, f'"{text.lstrip(".")}" is not an attribute of {tf_type} here '
                                          f"(in {match.group(0)})")
                return


def declared(docs: dict[str, dict]) -> dict[tuple[str, str, str], dict]:
    """Every resource and data source of parsed .tf files: (kind, type, name) -> its body."""
    found = {}
    for doc in docs.values():
        for kind in ("resource", "data"):
            for block in doc.get(kind, []):
                for tf_type, items in block.items():
                    for name, body in items.items():
                        found[(kind, tf_type, name)] = body
    return found


def check(tf_dir: Path, schema: dict) -> list[Finding]:
    """Every schema error of the google resources, data sources and provider in ``tf_dir``."""
    docs = {path.name: _parse(path) for path in sorted(tf_dir.glob("*.tf"))}
    blocks = declared(docs)
    findings: list[Finding] = []
    for name, doc in docs.items():
        checker = _FileChecker(name, (tf_dir / name).read_text(encoding="utf-8"), schema, blocks)
        for kind in ("resource", "data"):
            for block in doc.get(kind, []):
                for tf_type, items in block.items():
                    if not tf_type.startswith("google_"):
                        continue
                    for res_name, body in items.items():
                        words = (kind, tf_type, res_name)
                        address = f"{'data.' if kind == 'data' else ''}{tf_type}.{res_name}"
                        line = checker.line_of(*words)
                        if tf_type not in schema[kind]:
                            checker.error(line, address, f"unknown {'data source' if kind == 'data' else 'resource'} "
                                                         f"type {tf_type}")
                            continue
                        checker.body(body, schema[kind][tf_type], address, line, META_ARGUMENTS)
        for block in doc.get("provider", []):
            if "google" in block:
                line = checker.line_of("provider", "google")
                checker.body(block["google"], schema["provider"], "provider.google", line, PROVIDER_META)
        checker.references(doc)
        findings += checker.findings
    return findings
