"""python -m tools.terraform_schema [terraform-dir]: check it against the pinned provider's schema.

The schema is rebuilt once from PyPI's cdktn-provider-google and cached under
``$TERRAFORM_SCHEMA_CACHE`` (default ``~/.cache/forecast-terraform-schema``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tools.terraform_schema import cache_dir
from tools.terraform_schema.check import check, pinned_version
from tools.terraform_schema.extract import load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.terraform_schema", description=__doc__)
    parser.add_argument("folder", nargs="?", default="terraform", type=Path)
    args = parser.parse_args(argv)
    version = pinned_version(args.folder)
    findings = check(args.folder, load(version, cache_dir()))
    for finding in findings:
        print(finding)
    print(f"{len(findings)} schema errors in {args.folder} (hashicorp/google {version})")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
