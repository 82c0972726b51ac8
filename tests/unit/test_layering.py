"""The import-linter contracts in pyproject.toml name every package under services/.

`lint-imports` (run by `make test` and `make lint`) enforces the contracts; this test makes sure a new
service (say `services/gateway`) cannot slip past them by not being listed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Packages that are deliberately not in the independence contract, and why.
NOT_INDEPENDENT = {
    "services.common": "the shared adapters every service imports",
    "services.demo": "the demo composes the simulator, the local stack and the launcher",
}


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts: list[dict[str, object]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def _service_packages() -> set[str]:
    return {f"services.{p.parent.name}" for p in (ROOT / "services").glob("*/__init__.py")}


def test_every_package_under_services_is_independent_of_the_others_or_listed_as_an_exception() -> None:
    independent: set[str] = set()
    for contract in _contracts():
        if contract["type"] == "independence":
            independent |= set(contract["modules"])  # type: ignore[call-overload]
    unlisted = _service_packages() - independent - set(NOT_INDEPENDENT)
    assert not unlisted, (
        f"add {sorted(unlisted)} to the independence contract in pyproject.toml [tool.importlinter]"
    )


def test_production_packages_are_forbidden_to_import_the_development_tools() -> None:
    dev_tools = {"services.cwsim", "services.stack", "services.demo"}
    production = _service_packages() - dev_tools
    guarded: set[str] = set()
    for contract in _contracts():
        if contract["type"] == "forbidden" and dev_tools <= set(contract["forbidden_modules"]):  # type: ignore[call-overload]
            guarded |= set(contract["source_modules"])  # type: ignore[call-overload]
    assert production <= guarded, (
        f"add {sorted(production - guarded)} to the source_modules of the contract that forbids "
        "importing the simulator, the local stack and the demo"
    )
    assert "schemas" in guarded
