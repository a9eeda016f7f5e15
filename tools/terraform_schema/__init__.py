"""terraform/ checked against the hashicorp/google provider's schema, offline."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where rebuilt schemas are kept, outside the repository."""
    if os.environ.get("TERRAFORM_SCHEMA_CACHE"):
        return Path(os.environ["TERRAFORM_SCHEMA_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "forecast-terraform-schema"
