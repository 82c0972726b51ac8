"""`contract-sync catalog` and `contract-sync contracts` read what the writer stored."""

from __future__ import annotations

import json

import pytest
from writer_factories import as_incoming, at, make_edit, make_observed, make_record, unique_tenant

from schemas.topics import CONTRACT_RECORDS, PSA_AGREEMENTS, SYNC_COMMANDS
from services.cli import main
from services.writer.handlers import plan_batch
from services.writer.store import PostgresStore


@pytest.fixture
def seeded(store: PostgresStore) -> str:
    tenant = unique_tenant()
    store.apply(
        plan_batch(
            [
                as_incoming(
                    make_observed(tenant, agreement_id=1, additions={5: at(0), 6: at(2)}), PSA_AGREEMENTS
                ),
                as_incoming(make_record(tenant, agreement_id=1), CONTRACT_RECORDS),
                as_incoming(make_record(tenant, agreement_id=1, addition_id=5), CONTRACT_RECORDS),
            ]
        )
    )
    edit = make_edit(tenant, "100", f"cw:{tenant}:agreement:1", {"name": "Our MSA", "notes": "call Bob"})
    store.apply(plan_batch([as_incoming(edit, SYNC_COMMANDS)]))
    return tenant


def test_catalog_json_lists_each_agreement_with_its_additions_and_states(
    seeded: str, migrated_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["catalog", "--tenant", seeded, "--client", "100", "--json", "--database-url", migrated_url])
        == 0
    )
    document = json.loads(capsys.readouterr().out)
    [agreement] = document["agreements"]
    assert (agreement["agreement_id"], agreement["state"]) == (1, "synced")
    assert [(a["addition_id"], a["state"]) for a in agreement["additions"]] == [(5, "synced"), (6, "new")]
    assert document["last_synced_at"] is not None


def test_contracts_json_marks_locked_fields_and_overrides(
    seeded: str, migrated_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["contracts", "--tenant", seeded, "--client", "100", "--json", "--database-url", migrated_url])
        == 0
    )
    contracts = {c["contract_key"]: c for c in json.loads(capsys.readouterr().out)["contracts"]}
    mine = contracts[f"cw:{seeded}:agreement:1"]
    assert mine["psa_owned"]["locked"] is True
    assert mine["psa_owned"]["billing_cost"] == {"amount": "1500.00", "currency": "USD"}
    assert mine["psa_seeded"]["name"] == {"value": "Our MSA", "psa_value": "Agreement 1", "overridden": True}
    assert mine["local"]["notes"] == "call Bob"


def test_the_tables_render_for_a_terminal(
    seeded: str, migrated_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["catalog", "--tenant", seeded, "--client", "100", "--database-url", migrated_url]) == 0
    assert main(["contracts", "--tenant", seeded, "--client", "100", "--database-url", migrated_url]) == 0
    out = capsys.readouterr().out
    assert "addition 6" in out and "new" in out
    assert "Our MSA" in out and "PSA: Agreement 1" in out
