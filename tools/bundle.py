"""Build the Cloud Functions source bundles: one reproducible zip per function.

Each bundle holds the function's ``main.py`` and ``requirements.txt`` at its root,
the layers of the project's ``shared/`` package it may import (``shared/platform``,
``shared/core`` and its own subpackage, nothing else), and (for collect_data) the
data file the dataset spec names for its replay source. Entries are sorted and stamped with a fixed time, so the
same sources give the same bytes and the same sha256 — which names the object
Terraform uploads, so a code change, and only a code change, redeploys.

    python3 -m tools.bundle [--out build]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ("collect_data", "retrain", "predict", "monitor")
# The subpackage of shared/ that holds each function's own code.
PACKAGES = {"collect_data": "collect", "retrain": "retrain", "predict": "predict", "monitor": "monitor"}
LAYERS = ("platform", "core")
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def bundle_files(name: str) -> list[tuple[str, Path]]:
    """(name in the zip, file on disk) for one function, sorted."""
    folder = ROOT / "functions" / name
    files = [("main.py", folder / "main.py"), ("requirements.txt", folder / "requirements.txt")]
    shared = ROOT / "shared"
    files.append(("shared/__init__.py", shared / "__init__.py"))
    for package in (*LAYERS, PACKAGES[name]):
        for path in sorted((shared / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".json"):
                files.append((path.relative_to(ROOT).as_posix(), path))
    if name == "collect_data":
        files += [(rel, ROOT / rel) for rel in replay_files()]
    return sorted(files)


def replay_files() -> list[str]:
    """The data files every dataset spec names for its replay source (file and attribution)."""
    found: set[str] = set()
    for spec_path in (ROOT / "shared" / "core" / "specs").glob("*.json"):
        replay = json.loads(spec_path.read_text(encoding="utf-8")).get("replay", {})
        found.update(str(replay[key]) for key in ("file", "attribution") if replay.get(key))
    return sorted(found)


def build_bytes(name: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for arcname, path in bundle_files(name):
            info = zipfile.ZipInfo(arcname, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def build(out: Path) -> dict[str, str]:
    """Write every bundle to ``out``; returns name -> sha256."""
    out.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for name in FUNCTIONS:
        data = build_bytes(name)
        (out / f"{name}.zip").write_bytes(data)
        hashes[name] = hashlib.sha256(data).hexdigest()
    return hashes


def code_version(hashes: dict[str, str]) -> str:
    """One short hash of all bundles: the CODE_VERSION recorded in model metadata."""
    return hashlib.sha256("".join(hashes[n] for n in FUNCTIONS).encode()).hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the function bundles.")
    parser.add_argument("--out", default=str(ROOT / "build"))
    args = parser.parse_args()
    hashes = build(Path(args.out))
    for name, digest in hashes.items():
        print(f"{name}: {Path(args.out) / (name + '.zip')} sha256 {digest}")
    print(f"code_version {code_version(hashes)}")


if __name__ == "__main__":
    main()
