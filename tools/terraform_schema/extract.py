"""The hashicorp/google provider's schema, rebuilt from PyPI's ``cdktn-provider-google``.

The provider binary cannot always be downloaded, but ``cdktn-provider-google`` (one
release per provider version) is generated from the provider's schema, and its
generated JavaScript keeps what a schema check needs:

- every class has one comment per member, ``// name - computed: a, optional: b,
  required: c``, followed for nested objects by ``_x = new SomeClass(this, "name")``:
  an ``OutputReference`` class is a single object, a ``List`` class a list (a set
  when its third argument is true) of the ``OutputReference`` of the same stem;
- the function that renders a block as HCL (``synthesizeHclAttributes`` on the
  resource, ``<struct>ToHclTerraform`` for nested ones) marks each input
  ``isBlock: true|false``: the difference between ``x { }`` and ``x = { }``;
- the TypeScript declarations carry the provider's documentation, whose
  ``Possible values: [...]`` are the enum literals.

The schema is written as JSON: ``{"provider_version", "provider", "resource", "data"}``
where each block is ``{"attributes": {name: flags}, "blocks": {name: {"nesting",
"required", "block"}}}``.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

# cdktn-provider-google release -> the hashicorp/google version it is generated from
# (its README; every generated class also names it, which extraction checks).
PACKAGE_FOR_PROVIDER = {
    "7.43.0": "20.0.0",
    "7.44.0": "20.1.0",
    "7.45.0": "20.2.0",
    "7.46.0": "20.3.0",
}

CLASS = re.compile(r"^class (\w+) extends ([\w.]+) \{\n(.*?)^\}", re.S | re.M)
MEMBER = re.compile(
    r"^    // (\w+) - computed: (true|false), optional: (true|false), required: (true|false)\n"
    r"(?:    _\w+ = new ([\w.]+)\(this, \"\w+\"(?:, (true|false))?\);)?", re.M)
HCL_INPUT = re.compile(
    r"(\w+): \{\s*value: [^\n]*\n\s*isBlock: (true|false),\s*type: \"(\w+)\",\s*storageClassType: \"(\w+)\"")
STRUCT_HCL = re.compile(r"^function (\w+)ToHclTerraform\(struct\) \{\n(.*?)^\}", re.S | re.M)
RESOURCE_HCL = re.compile(r"    synthesizeHclAttributes\(\) \{\n(.*?)^    \}", re.S | re.M)
TF_TYPE = re.compile(r'static tfResourceType = "(\w+)";')
PROVIDER_VERSION = re.compile(r"providerVersion: '([\d.]+)'")
INTERFACE = re.compile(r"^export interface (\w+)(?: extends [\w.]+)? \{\n(.*?)^\}", re.S | re.M)
DOC_MEMBER = re.compile(r"/\*\*(.*?)\*/\s*readonly \w+\??:", re.S)
DOC_ANCHOR = re.compile(r"#(\w+) \w+#\w+\}")
POSSIBLE = re.compile(r"Possible values: (\[[^\]]*\])")


@dataclass
class _Member:
    computed: bool
    optional: bool
    required: bool
    child: str | None  # class of a nested object, if any
    is_set: bool = False


@dataclass
class _Module:
    """One generated folder: its classes, HCL inputs per class and enum docs per class."""

    members: dict[str, dict[str, _Member]] = field(default_factory=dict)
    inputs: dict[str, dict[str, bool]] = field(default_factory=dict)  # class -> name -> is block
    enums: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    roots: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, tf type, class)
    versions: set[str] = field(default_factory=set)


def _lcfirst(name: str) -> str:
    return name[:1].lower() + name[1:]


def _parse_module(js: str, dts: str) -> _Module:
    module = _Module(versions=set(PROVIDER_VERSION.findall(js)))
    struct_inputs = {m.group(1): m.group(2) for m in STRUCT_HCL.finditer(js)}
    for match in CLASS.finditer(js):
        name, base, body = match.groups()
        module.members[name] = {
            m.group(1): _Member(m.group(2) == "true", m.group(3) == "true", m.group(4) == "true",
                                m.group(5), m.group(6) == "true")
            for m in MEMBER.finditer(body)}
        if base.endswith(("TerraformResource", "TerraformDataSource", "TerraformProvider")):
            kind = {"TerraformResource": "resource", "TerraformDataSource": "data",
                    "TerraformProvider": "provider"}[base.rsplit(".", 1)[-1]]
            tf_type = TF_TYPE.search(body)
            hcl = RESOURCE_HCL.search(body)
            if tf_type and hcl:
                module.roots.append((kind, tf_type.group(1), name))
                module.inputs[name] = {i.group(1): i.group(2) == "true" for i in HCL_INPUT.finditer(hcl.group(1))}
        elif name.endswith("OutputReference"):
            struct = _lcfirst(name[: -len("OutputReference")])
            if struct in struct_inputs:
                module.inputs[name] = {i.group(1): i.group(2) == "true"
                                       for i in HCL_INPUT.finditer(struct_inputs[struct])}
    for match in INTERFACE.finditer(dts):
        name, body = match.groups()
        enums = {}
        for doc in DOC_MEMBER.finditer(body):
            text = " ".join(line.strip(" *") for line in doc.group(1).splitlines())
            anchor, possible = DOC_ANCHOR.search(text), POSSIBLE.search(text)
            if anchor and possible:
                try:
                    enums[anchor.group(1)] = [str(v) for v in json.loads(possible.group(1))]
                except ValueError:
                    continue
        # The resource's config interface is <Class>Config; a nested struct's is the stem
        # of its OutputReference class.
        owner = name[: -len("Config")] if name.endswith("Config") and name[: -len("Config")] in module.members \
            else f"{name}OutputReference"
        if enums:
            module.enums[owner] = enums
    return module


def _block(module: _Module, cls: str, seen: tuple[str, ...] = ()) -> dict:
    """The schema of one class: attributes with their flags, nested blocks with their nesting."""
    inputs = module.inputs.get(cls, {})
    enums = module.enums.get(cls, {})
    attributes: dict[str, dict] = {}
    blocks: dict[str, dict] = {}
    for name, member in module.members.get(cls, {}).items():
        child = _element_class(member.child)
        nested = _block(module, child, (*seen, cls)) if child and child in module.members and child not in seen \
            else None
        if inputs.get(name):
            nesting = "single" if member.child and member.child.endswith("OutputReference") else \
                "set" if member.is_set else "list"
            blocks[name] = {"nesting": nesting, "required": member.required,
                            "block": nested or {"attributes": {}, "blocks": {}}}
            continue
        flags: dict = {"computed": member.computed, "optional": member.optional, "required": member.required}
        if name in enums:
            flags["enum"] = enums[name]
        if nested:
            flags["object"] = nested
        attributes[name] = flags
    return {"attributes": attributes, "blocks": blocks}


def _element_class(child: str | None) -> str | None:
    if child is None or child.startswith("cdktn."):
        return None
    for suffix in ("List", "Map"):
        if child.endswith(suffix):
            return child[: -len(suffix)] + "OutputReference"
    return child


def extract(lib: Path) -> dict:
    """Read the generated ``lib/`` folder into the schema document."""
    schema: dict = {"provider_version": None, "provider": {}, "resource": {}, "data": {}}
    versions: set[str] = set()
    for folder in sorted(p for p in lib.iterdir() if p.is_dir()):
        js, dts = folder / "index.js", folder / "index.d.ts"
        if not js.exists():
            continue
        module = _parse_module(js.read_text(encoding="utf-8"), dts.read_text(encoding="utf-8"))
        versions |= module.versions
        for kind, tf_type, cls in module.roots:
            block = _block(module, cls)
            if kind == "provider":
                schema["provider"] = block
            else:
                schema[kind][tf_type] = block
    if len(versions) != 1:
        raise ValueError(f"generated classes name provider versions {sorted(versions)}, expected one")
    schema["provider_version"] = versions.pop()
    return schema


def download(package_version: str, into: Path) -> Path:
    """Fetch ``cdktn-provider-google`` and unpack its generated ``lib/``; return that folder."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check",
                    f"cdktn-provider-google=={package_version}", "-d", str(into)], check=True)
    wheel = zipfile.ZipFile(next(into.glob("*.whl")))
    tarball = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(wheel.read(tarball))) as archive:
        members = [m for m in archive.getmembers()
                   if m.isfile() and m.name.startswith("package/lib/") and m.name.endswith(("index.js", "index.d.ts"))]
        archive.extractall(into, members=members, filter="data")
    return into / "package" / "lib"


def load(provider_version: str, cache: Path) -> dict:
    """The schema of ``hashicorp/google`` at ``provider_version``, from the cache or rebuilt into it."""
    path = cache / f"google-{provider_version}.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    if provider_version not in PACKAGE_FOR_PROVIDER:
        raise ValueError(f"no known cdktn-provider-google release for hashicorp/google {provider_version}; "
                         "add it to PACKAGE_FOR_PROVIDER")
    with tempfile.TemporaryDirectory() as work:
        schema = extract(download(PACKAGE_FOR_PROVIDER[provider_version], Path(work)))
    if schema["provider_version"] != provider_version:
        raise ValueError(f"cdktn-provider-google {PACKAGE_FOR_PROVIDER[provider_version]} is generated from "
                         f"{schema['provider_version']}, not {provider_version}")
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(schema), encoding="utf-8")
    partial.replace(path)
    return schema
