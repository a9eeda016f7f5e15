"""Embedded blob store: one directory per bucket.

Every write lands in a temporary file beside its target and is renamed into
place, so a reader sees the old bytes or the new ones, never a torn file.
Create-only writes use ``os.link``, which fails if the name exists, across
threads and processes alike.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from shared.platform.ports import AlreadyExists, NotFound

_HIDDEN = "."


class LocalBlobStore:
    """BlobStore on a local directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        parts = name.split("/")
        if not name or name.startswith("/") or any(p in ("", ".", "..") or p.startswith(_HIDDEN)
                                                    for p in parts):
            raise ValueError(f"invalid object name {name!r}")
        return self.root.joinpath(*parts)

    @staticmethod
    def _staged(path: Path, data: bytes) -> Path:
        """Write ``data`` to a hidden temporary file beside ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return Path(tmp)

    def read(self, name: str) -> bytes:
        try:
            return self._path(name).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise NotFound(name) from exc

    def write(self, name: str, data: bytes, content_type: str | None = None) -> None:
        path = self._path(name)
        os.replace(self._staged(path, data), path)

    def create(self, name: str, data: bytes, content_type: str | None = None) -> None:
        path = self._path(name)
        tmp = self._staged(path, data)
        try:
            os.link(tmp, path)
        except FileExistsError as exc:
            raise AlreadyExists(name) from exc
        finally:
            tmp.unlink()

    def location(self, name: str) -> str:
        return str(self._path(name).resolve())

    def list(self, prefix: str = "") -> list[str]:
        # Walk only below the deepest directory the prefix names.
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*head.split("/")) if head else self.root
        names = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(_HIDDEN)]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for fname in filenames:
                if fname.startswith(_HIDDEN):
                    continue
                name = fname if rel == "." else f"{rel}/{fname}"
                if name.startswith(prefix):
                    names.append(name)
        return sorted(names)
