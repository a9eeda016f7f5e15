"""A marker the worker processes of one predict instance share: "the models changed, look now".

A model-updated push reaches one worker of one instance. That worker reloads, then
replaces a small file in the instance's temporary directory; every worker stats the
file once per request (about a microsecond) and checks the registry when it changed.
Workers of one instance share that directory (gunicorn forks them on one machine;
Cloud Run's in-memory filesystem is per instance), other instances do not: they keep
relying on ``MODEL_REFRESH_SECONDS`` (docs/predict.md).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

from shared.platform.log import get_logger

log = get_logger("predict")


def marker_path(*scope: str) -> Path:
    """The marker of one deployment (its store and dataset) in the temporary directory."""
    digest = hashlib.sha256("\0".join(scope).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"forecast-predict-{digest}" / "models-changed"


Stamp = tuple[int, int]  # the marker file's inode and modification time


class GenerationMarker:
    """``announce`` in the worker that reloaded; ``poll`` in every worker, per request."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen = self._stamp()  # a worker starts from the models it loaded at import

    def _stamp(self) -> Stamp | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    def announce(self) -> None:
        """Tell the other workers to check now (a new file: its inode and time both change)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".marker-")
            with os.fdopen(fd, "w") as f:
                f.write(str(time.time_ns()))
            os.replace(tmp, self.path)
        except OSError as exc:  # the periodic check still brings the others along
            log.warning("could not announce the reload to the other workers", fields={"error": str(exc)})
            return
        self._seen = self._stamp()

    def poll(self) -> Stamp | None:
        """The marker's stamp when another worker announced a reload this one has not handled."""
        stamp = self._stamp()
        return stamp if stamp is not None and stamp != self._seen else None

    def handled(self, stamp: Stamp) -> None:
        """Record an announcement as handled (by a check that started after ``poll`` saw it)."""
        self._seen = stamp
