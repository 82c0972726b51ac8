"""The digest of everything the lock files are compiled from: the dependency lists of pyproject.toml
(runtime, extras, build system) and requirements/build.in.

    python deploy/lock_inputs.py    # prints the hex digest `make lock` records in requirements/inputs.sha256

A test recomputes it: changing a dependency without `make lock` fails the build.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def inputs_digest(root: Path = ROOT) -> str:
    """SHA-256 of the canonical JSON of the lock's inputs (pure apart from reading the two files)."""
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    build_in = [
        line.strip()
        for line in (root / "requirements" / "build.in").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    inputs = {
        "dependencies": project["project"].get("dependencies", []),
        "optional-dependencies": project["project"].get("optional-dependencies", {}),
        "build-system": project.get("build-system", {}).get("requires", []),
        "build.in": build_in,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


if __name__ == "__main__":
    sys.stdout.write(inputs_digest() + "\n")
