"""The hashed lock files are current and used everywhere (issue 18, item 6): a dependency changed in
pyproject.toml without `make lock` fails here, `make venv` installed exactly the locked versions, and
the image installs the runtime lock with hashes."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata

from deploy_helpers import ROOT, load_script
from packaging.markers import Marker

REQUIREMENTS = ROOT / "requirements"
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;\\]+)\s*(;[^\\]*)?\\?$")


def locked(name: str) -> dict[str, tuple[str, str | None]]:
    """Normalised package name -> (version, environment marker) of a lock file."""
    pins: dict[str, tuple[str, str | None]] = {}
    for line in (REQUIREMENTS / name).read_text(encoding="utf-8").splitlines():
        match = PIN.match(line.strip())
        if match:
            marker = match.group(3)[1:].strip() if match.group(3) else None
            pins[normalise(match.group(1))] = (match.group(2), marker)
    return pins


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalise(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0])


PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_the_lock_files_were_compiled_from_the_current_dependency_lists() -> None:
    recorded = (REQUIREMENTS / "inputs.sha256").read_text(encoding="utf-8").strip()
    assert recorded == load_script("deploy/lock_inputs.py").inputs_digest(), (
        "a dependency changed without re-locking: run make lock"
    )


def test_every_direct_dependency_is_pinned_with_hashes() -> None:
    dev = locked("dev.lock")
    runtime = locked("runtime.lock")
    runtime_names = {requirement_name(r) for r in PROJECT["dependencies"]}
    dev_names = {requirement_name(r) for r in PROJECT["optional-dependencies"]["dev"]}

    assert runtime_names <= set(runtime)
    assert runtime_names | dev_names <= set(dev)
    assert not {"pytest", "mypy", "ruff", "hypothesis"} & set(runtime)  # the image gets no dev tools
    for name in ("dev.lock", "runtime.lock"):
        text = (REQUIREMENTS / name).read_text(encoding="utf-8")
        entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
        unhashed = [e.split()[0] for e in entries if "==" in e and "--hash=sha256:" not in e]
        assert unhashed == [], name


def test_the_virtualenv_holds_exactly_the_locked_versions() -> None:
    """`make venv` installs the dev lock with --require-hashes; a drifted package shows here."""
    wrong = {}
    for name, (version, marker) in locked("dev.lock").items():
        if marker and not Marker(marker).evaluate():  # another platform's entry (e.g. win32 only)
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong[name] = (version, None)
            continue
        if installed != version:
            wrong[name] = (version, installed)
    assert wrong == {}


def test_make_venv_and_the_image_install_the_locks_with_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")

    assert "--require-hashes --no-deps -r $(DEV_LOCK)" in makefile
    assert "pip install --require-hashes --no-deps -r requirements/runtime.lock" in dockerfile
    assert "\nlock:" in makefile
