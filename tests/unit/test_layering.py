"""The import-linter contracts in pyproject.toml name every package under services/ and devtools/.

`lint-imports` (run by `make test` and `make lint`) enforces the contracts; this test makes sure a new
service (say `services/gateway`) or development tool cannot slip past them by not being listed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Packages that are deliberately not in the independence contract, and why.
NOT_INDEPENDENT = {
    "services.common": "the shared adapters every service imports",
    "devtools.demo": "the demo composes the simulator, the local stack and the launcher",
}


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts: list[dict[str, object]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def _packages(top: str) -> set[str]:
    return {f"{top}.{p.parent.name}" for p in (ROOT / top).glob("*/__init__.py")}


def test_every_service_and_development_tool_is_independent_of_the_others_or_a_listed_exception() -> None:
    independent: set[str] = set()
    for contract in _contracts():
        if contract["type"] == "independence":
            independent |= set(contract["modules"])  # type: ignore[call-overload]
    unlisted = (_packages("services") | _packages("devtools")) - independent - set(NOT_INDEPENDENT)
    assert not unlisted, (
        f"add {sorted(unlisted)} to the independence contract in pyproject.toml [tool.importlinter]"
    )


def test_all_production_code_is_forbidden_to_import_the_development_tools() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    guarded: set[str] = set()
    for contract in _contracts():
        if contract["type"] == "forbidden" and "devtools" in contract["forbidden_modules"]:  # type: ignore[operator]
            guarded |= set(contract["source_modules"])  # type: ignore[call-overload]

    assert {"services", "schemas"} <= guarded  # whole packages: a new service is covered without listing
    assert "devtools" in config["tool"]["importlinter"]["root_packages"]
    assert not (ROOT / "services" / "cwsim").exists() and not (ROOT / "services" / "stack").exists()
