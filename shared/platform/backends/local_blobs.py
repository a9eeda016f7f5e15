"""Embedded blob store: one directory per bucket.

An object's generation is its file's modification time in microseconds, set on
the temporary file before the atomic rename, so bytes and generation change
together. Create-only writes use ``os.link`` (fails if the name exists);
compare-and-swap holds an exclusive ``flock`` on the bucket's lock file, which
serialises it against other threads and processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from pathlib import Path
from typing import Iterator

from shared.platform.ports import AlreadyExists, NotFound, PreconditionFailed

_HIDDEN = "."


class LocalBlobStore:
    """BlobStore on a local directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.root / ".lock"
        self._lock_path.touch(exist_ok=True)

    def _path(self, name: str) -> Path:
        parts = name.split("/")
        if not name or name.startswith("/") or any(p in ("", ".", "..") or p.startswith(_HIDDEN)
                                                    for p in parts):
            raise ValueError(f"invalid object name {name!r}")
        return self.root.joinpath(*parts)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self._lock_path, "rb") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @staticmethod
    def _generation_of(stat: os.stat_result) -> int:
        return stat.st_mtime_ns // 1000

    def _current_generation(self, path: Path) -> int:
        try:
            return self._generation_of(path.stat())
        except FileNotFoundError:
            return 0

    def _staged(self, path: Path, data: bytes) -> tuple[Path, int]:
        """Write ``data`` to a temporary file beside ``path`` stamped with a new generation."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        generation = max(time.time_ns() // 1000, self._current_generation(path) + 1)
        os.utime(tmp, ns=(generation * 1000, generation * 1000))
        return Path(tmp), generation

    def read(self, name: str) -> bytes:
        return self.read_with_generation(name)[0]

    def read_with_generation(self, name: str) -> tuple[bytes, int]:
        path = self._path(name)
        try:
            with open(path, "rb") as fh:
                # The renamed-in file never changes, so its stat and bytes agree.
                generation = self._generation_of(os.fstat(fh.fileno()))
                return fh.read(), generation
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise NotFound(name) from exc

    def write(self, name: str, data: bytes, content_type: str | None = None) -> int:
        path = self._path(name)
        with self._locked():
            tmp, generation = self._staged(path, data)
            os.replace(tmp, path)
        return generation

    def create(self, name: str, data: bytes, content_type: str | None = None) -> int:
        path = self._path(name)
        tmp, generation = self._staged(path, data)
        try:
            os.link(tmp, path)
        except FileExistsError as exc:
            raise AlreadyExists(name) from exc
        finally:
            tmp.unlink()
        return generation

    def write_if_generation(self, name: str, data: bytes, generation: int,
                            content_type: str | None = None) -> int:
        if generation == 0:
            return self.create(name, data, content_type)
        path = self._path(name)
        with self._locked():
            current = self._current_generation(path)
            if current != generation:
                raise PreconditionFailed(f"{name}: generation is {current}, not {generation}")
            tmp, new_generation = self._staged(path, data)
            os.replace(tmp, path)
        return new_generation

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

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

    def delete(self, name: str) -> bool:
        try:
            self._path(name).unlink()
            return True
        except FileNotFoundError:
            return False
