"""`contract-sync callbacks register | list` against the ConnectWise simulator (which implements callbacks)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.cwsim.testing import SimHandle, run_simulator
from services.cli import main

POLLER_BASE = "https://poller.example.com/hooks"


@pytest.fixture
def sim() -> Iterator[SimHandle]:
    with run_simulator(seed=3, companies=1, agreements_per_company=1, additions_per_agreement=0) as handle:
        yield handle


@pytest.fixture
def tenants_file(sim: SimHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CB_PUBLIC_KEY", sim.public_key)
    monkeypatch.setenv("CB_PRIVATE_KEY", sim.private_key)
    monkeypatch.setenv("CB_CLIENT_ID", sim.client_id)
    path = tmp_path / "tenants.toml"
    path.write_text(
        "[[tenants]]\n"
        'id = "acme"\n'
        f'site = "{sim.site_url}"\n'
        f'company_id = "{sim.company_id}"\n'
        'clients = "all"\n'
        "[tenants.credentials]\n"
        'public_key = { env = "CB_PUBLIC_KEY" }\n'
        'private_key = { env = "CB_PRIVATE_KEY" }\n'
        'client_id = { env = "CB_CLIENT_ID" }\n'
    )
    return path


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    assert main(list(argv)) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_register_creates_the_agreement_owner_callback_once_and_list_shows_it(
    sim: SimHandle, tenants_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("callbacks", "register", "--config", str(tenants_file), "--tenant", "acme", "--json")

    first = run_json(capsys, *args, "--url", POLLER_BASE)
    second = run_json(capsys, *args, "--url", POLLER_BASE + "/")  # same endpoint, trailing slash
    listed = run_json(
        capsys, "callbacks", "list", "--config", str(tenants_file), "--tenant", "acme", "--json"
    )

    expected = {
        "url": f"{POLLER_BASE}/callbacks/acme",
        "type": "agreement",
        "level": "owner",
        "objectId": 1,
        "active": True,
        "this_tenant": True,
    }
    assert isinstance(first, dict) and isinstance(second, dict) and isinstance(listed, list)
    assert first["result"] == "registered" and second["result"] == "already registered"
    assert first["id"] == second["id"]
    assert [{k: v for k, v in row.items() if k != "id"} for row in listed] == [expected]


def test_list_marks_only_this_tenants_entries(
    sim: SimHandle, tenants_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with sim.client() as cw:
        other = {
            "url": "https://elsewhere.example.com/x",
            "objectId": 1,
            "type": "agreement",
            "level": "owner",
        }
        assert cw.post("/system/callbacks", json=other).status_code == 201
    base = ("--config", str(tenants_file), "--tenant", "acme")
    assert main(["callbacks", "register", *base, "--url", POLLER_BASE]) == 0
    capsys.readouterr()

    assert main(["callbacks", "list", *base]) == 0
    lines = capsys.readouterr().out.splitlines()

    assert len(lines) == 2
    ours = [line for line in lines if line.startswith("*")]
    assert len(ours) == 1 and f"url={POLLER_BASE}/callbacks/acme" in ours[0]
    assert "type=agreement level=owner objectId=1 active" in ours[0]


def test_an_unknown_tenant_is_a_configuration_error(
    tenants_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["callbacks", "list", "--config", str(tenants_file), "--tenant", "nobody"])

    assert code == 2
    assert "nobody" in capsys.readouterr().err
