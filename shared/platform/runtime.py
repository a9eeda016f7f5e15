"""Start-up shared by the four entry points: settings, JSON logging, backends."""

from __future__ import annotations

from shared.platform import log
from shared.platform.backends import Backends, connect
from shared.platform.settings import Settings


def start(environ: dict[str, str] | None = None) -> tuple[Settings, Backends]:
    """Read the settings, route logging to JSON lines, and wire the backends (lazily)."""
    settings = Settings.from_env(environ)
    log.configure(settings.project, settings.log_level)
    return settings, connect(settings)
