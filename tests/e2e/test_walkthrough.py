"""The six demo steps as behaviour, on the running pipeline (client A = first company, B = second).

The module's fixtures perform the steps once, in order (refresh -> select -> PSA change with
auto-sync off -> auto-sync on for B -> edits); each test asserts one behaviour on PostgreSQL rows
and `sync.events.v1`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from e2e_support import E2E, assert_maps, expected_addition, expected_agreement, today

from schemas.topics import SYNC_EVENTS, parse

PSA_OWNED_COLUMNS = ("status", "billing_amount", "billing_currency", "billing_cycle")


@dataclass
class Client:
    id: str
    psa: list[tuple[dict[str, Any], list[dict[str, Any]]]]

    def expected_keys(self, e2e: E2E) -> set[str]:
        keys = set()
        for agreement, additions in self.psa:
            keys.add(e2e.agreement_key(agreement["id"]))
            keys.update(e2e.addition_key(x["id"]) for x in additions)
        return keys


@pytest.fixture(scope="module")
def client_ids(e2e: E2E) -> tuple[str, str]:
    companies = e2e.pipeline.psa_companies()
    return str(companies[0]["id"]), str(companies[1]["id"])


# ---------------------------------------------------------------------------------------------
# Step 1: refresh


@dataclass
class Refreshed:
    client: Client
    command_id: str
    catalog: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def refreshed(e2e: E2E, client_ids: tuple[str, str]) -> Refreshed:
    client = Client(client_ids[0], e2e.psa_client(client_ids[0]))
    command_id = e2e.refresh(client.id)
    expected = client.expected_keys(e2e)
    e2e.wait_event("poll.completed of the refresh", "sync.poll.completed", correlationid=command_id)
    catalog = e2e.wait_for(
        f"the catalog of client {client.id} lists its {len(expected)} agreements and additions",
        lambda: c if expected <= set(c := e2e.catalog(client.id)) else None,
    )
    return Refreshed(client, command_id, catalog)


def test_refresh_lists_every_agreement_of_the_client_with_its_additions_as_new(
    e2e: E2E, refreshed: Refreshed
) -> None:
    client = refreshed.client
    assert set(refreshed.catalog) == client.expected_keys(e2e)
    assert {row["state"] for row in refreshed.catalog.values()} == {"new"}
    for agreement, additions in client.psa:
        row = refreshed.catalog[e2e.agreement_key(agreement["id"])]
        assert (row["kind"], row["agreement_id"], row["name"]) == (
            "agreement",
            agreement["id"],
            agreement["name"],
        )
        for addition in additions:
            item = refreshed.catalog[e2e.addition_key(addition["id"])]
            assert (item["kind"], item["agreement_id"], item["addition_id"]) == (
                "addition",
                agreement["id"],
                addition["id"],
            )
    assert e2e.contracts(client.id) == {}, "a refresh alone must not create contracts"


def test_refresh_reports_a_refresh_poll_carrying_the_command_id(e2e: E2E, refreshed: Refreshed) -> None:
    polls = e2e.events("sync.poll.completed", correlationid=refreshed.command_id)
    assert [p["data"]["run_kind"] for p in polls] == ["refresh"]
    assert polls[0]["data"]["agreements_seen"] == len(refreshed.client.psa)
    assert polls[0]["subject"] == f"{e2e.tenant}:*"


# ---------------------------------------------------------------------------------------------
# Step 2: select two agreements and three additions


@dataclass
class Selected:
    command_id: str
    agreement_ids: list[int]
    addition_ids: list[int]
    keys: set[str]
    contracts: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def selected(e2e: E2E, refreshed: Refreshed) -> Selected:
    with_additions = [(a, xs) for a, xs in refreshed.client.psa if len(xs) >= 2]
    assert len(with_additions) >= 3, "client A needs three agreements with additions (seed 7)"
    (first, first_additions), (second, _), (_, third_additions) = with_additions[:3]
    agreement_ids = [first["id"], second["id"]]
    # an addition whose agreement is not selected still names its parent contract key
    addition_ids = [first_additions[0]["id"], first_additions[1]["id"], third_additions[-1]["id"]]
    keys = {e2e.agreement_key(i) for i in agreement_ids} | {e2e.addition_key(i) for i in addition_ids}
    command_id = e2e.select(refreshed.client.id, agreement_ids, addition_ids)
    e2e.wait_applied(command_id, 5)
    contracts = e2e.wait_for(
        "five contracts", lambda: c if len(c := e2e.contracts(refreshed.client.id)) >= 5 else None
    )
    return Selected(command_id, agreement_ids, addition_ids, keys, contracts)


def test_selecting_two_agreements_and_three_additions_creates_exactly_those_five_contracts(
    e2e: E2E, refreshed: Refreshed, selected: Selected
) -> None:
    time.sleep(1.0)  # anything extra would have been applied in the same batch or the next
    contracts = e2e.contracts(refreshed.client.id)
    assert set(contracts) == selected.keys
    on = today()
    for agreement, additions in refreshed.client.psa:
        if agreement["id"] in selected.agreement_ids:
            assert_maps(
                contracts[e2e.agreement_key(agreement["id"])], expected_agreement(e2e.tenant, agreement, on)
            )
        for addition in additions:
            if addition["id"] in selected.addition_ids:
                assert_maps(
                    contracts[e2e.addition_key(addition["id"])],
                    expected_addition(e2e.tenant, agreement, addition, on),
                )


def test_selected_contracts_have_their_psa_owned_fields_locked(
    e2e: E2E, refreshed: Refreshed, selected: Selected
) -> None:
    contracts = e2e.contracts(refreshed.client.id)
    assert all(row["psa_synced"] for row in contracts.values())
    key = e2e.agreement_key(selected.agreement_ids[0])
    # the database itself refuses a change of a PSA-owned column outside the writer's sync path
    with pytest.raises(sa.exc.DBAPIError), e2e.pipeline.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE contracts SET billing_amount = billing_amount + 1 WHERE contract_key = :k"),
            {"k": key},
        )
    after = e2e.contract(key)
    assert after is not None and Decimal(after["billing_amount"]) == Decimal(contracts[key]["billing_amount"])
    # what a UI shows: the operator tool marks them locked
    import json

    shown = json.loads(
        e2e.pipeline.cli("contracts", "--tenant", e2e.tenant, "--client", refreshed.client.id, "--json")
    )
    views = shown if isinstance(shown, list) else shown.get("contracts", [])
    locked = {v["contract_key"]: v["psa_owned"]["locked"] for v in views}
    assert locked == dict.fromkeys(selected.keys, True)


def test_select_is_confirmed_by_contracts_applied_with_the_command_id_as_correlation_id(
    e2e: E2E, refreshed: Refreshed, selected: Selected
) -> None:
    applied = e2e.events("sync.contracts.applied", correlationid=selected.command_id)
    assert applied, "no sync.contracts.applied for the select command"
    assert {e["subject"] for e in applied} == {f"{e2e.tenant}:{refreshed.client.id}"}
    assert sum(e["data"]["created"] for e in applied) == 5
    assert all(e["data"]["last_synced_at"] for e in applied)


def test_selected_items_are_listed_as_synced_and_the_others_stay_new(
    e2e: E2E, refreshed: Refreshed, selected: Selected
) -> None:
    catalog = e2e.catalog(refreshed.client.id)
    states = {key: row["state"] for key, row in catalog.items()}
    assert {k for k, s in states.items() if s == "synced"} == selected.keys
    assert {s for k, s in states.items() if k not in selected.keys} == {"new"}


# ---------------------------------------------------------------------------------------------
# Step 3: a PSA change while auto-sync is off


@dataclass
class PsaChanged:
    key: str
    before: dict[str, Any]
    new_amount: Decimal


@pytest.fixture(scope="module")
def psa_changed(e2e: E2E, refreshed: Refreshed, selected: Selected) -> PsaChanged:
    agreement_id = selected.agreement_ids[0]
    key = e2e.agreement_key(agreement_id)
    before = e2e.contract(key)
    assert before is not None
    new_amount = Decimal(before["billing_amount"]) + Decimal("250.25")
    e2e.pipeline.control.update_agreement(agreement_id, billAmount=float(new_amount))
    e2e.wait_for(
        f"{key} listed as updated (next poll)",
        lambda: e2e.catalog(refreshed.client.id)[key]["state"] == "updated",
        timeout_s=30,
    )
    time.sleep(2.0)  # the mapper and writer have seen the observed snapshot by now
    return PsaChanged(key, before, new_amount)


def test_a_psa_change_while_auto_sync_is_off_is_listed_as_updated_and_not_applied(
    e2e: E2E, refreshed: Refreshed, psa_changed: PsaChanged
) -> None:
    after = e2e.contract(psa_changed.key)
    assert after is not None
    for column in (*PSA_OWNED_COLUMNS, "psa_last_updated", "name", "last_event_id"):
        assert after[column] == psa_changed.before[column], column
    row = e2e.catalog(refreshed.client.id)[psa_changed.key]
    assert Decimal(str(row["summary"]["bill_amount"])) == psa_changed.new_amount
    assert row["psa_last_updated"] > after["psa_last_updated"]
    changed = e2e.events("sync.catalog.changed", subject=f"{e2e.tenant}:{refreshed.client.id}")
    assert any(e["data"]["updated"] >= 1 for e in changed)


# ---------------------------------------------------------------------------------------------
# Step 4: auto-sync on for client B


@dataclass
class AutoSynced:
    client: Client
    command_id: str
    contracts: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def auto_synced(e2e: E2E, client_ids: tuple[str, str]) -> AutoSynced:
    client = Client(client_ids[1], e2e.psa_client(client_ids[1]))
    expected = client.expected_keys(e2e)
    # the mapper knows B's agreements from the poller's first full poll
    e2e.wait_for(f"client {client.id} observed", lambda: expected <= set(e2e.catalog(client.id)))
    command_id = e2e.set_auto_sync(client.id, True)
    contracts = e2e.wait_for(
        f"all {len(expected)} items of client {client.id} applied",
        lambda: c if set(c := e2e.contracts(client.id)) >= expected else None,
    )
    e2e.wait_applied(command_id, len(expected))
    return AutoSynced(client, command_id, contracts)


def test_turning_auto_sync_on_applies_every_pending_agreement_and_addition_of_the_client(
    e2e: E2E, auto_synced: AutoSynced
) -> None:
    client = auto_synced.client
    contracts = e2e.contracts(client.id)
    assert set(contracts) == client.expected_keys(e2e)
    on = today()
    for agreement, additions in client.psa:
        assert_maps(
            contracts[e2e.agreement_key(agreement["id"])], expected_agreement(e2e.tenant, agreement, on)
        )
        for addition in additions:
            assert_maps(
                contracts[e2e.addition_key(addition["id"])],
                expected_addition(e2e.tenant, agreement, addition, on),
            )
    changed = e2e.events("sync.auto_sync.changed", correlationid=auto_synced.command_id)
    assert changed, "no sync.auto_sync.changed for the command"
    assert {(e["data"]["enabled"], e["data"]["requested_by"]) for e in changed} == {(True, "e2e@msp.example")}
    applied = e2e.events("sync.contracts.applied", correlationid=auto_synced.command_id)
    assert sum(e["data"]["created"] for e in applied) == len(contracts)
    settings = e2e.settings(client.id)
    assert settings is not None and settings["auto_sync"] is True


def test_with_auto_sync_on_a_psa_change_is_applied_within_seconds(e2e: E2E, auto_synced: AutoSynced) -> None:
    agreement, _ = auto_synced.client.psa[0]
    key = e2e.agreement_key(agreement["id"])
    old = e2e.contract(key)
    assert old is not None
    new_amount = Decimal(old["billing_amount"]) + Decimal("99.95")
    changed_at = time.monotonic()
    e2e.pipeline.control.update_agreement(agreement["id"], billAmount=float(new_amount))
    e2e.wait_for(
        f"{key} bills {new_amount}",
        lambda: (c := e2e.contract(key)) is not None and Decimal(c["billing_amount"]) == new_amount,
        timeout_s=20,
    )
    latency = time.monotonic() - changed_at
    assert latency < 15, f"change applied after {latency:.1f} s"
    after = e2e.contract(key)
    assert after is not None and after["psa_last_updated"] > old["psa_last_updated"]
    assert e2e.catalog(auto_synced.client.id)[key]["state"] == "synced"


def test_a_local_name_override_survives_later_syncs_while_psa_owned_fields_keep_following(
    e2e: E2E, auto_synced: AutoSynced
) -> None:
    agreement, _ = auto_synced.client.psa[-1]
    key = e2e.agreement_key(agreement["id"])
    local_name = "Renamed by the MSP"
    command_id = e2e.edit(auto_synced.client.id, key, {"name": local_name})
    e2e.wait_for("the local name", lambda: (c := e2e.contract(key)) is not None and c["name"] == local_name)
    assert not e2e.events("sync.edit.rejected", correlationid=command_id)
    before = e2e.contract(key)
    assert before is not None
    new_amount = Decimal(before["billing_amount"]) + Decimal("10.01")
    e2e.pipeline.control.update_agreement(
        agreement["id"], name="Renamed in ConnectWise", billAmount=float(new_amount)
    )
    after = e2e.wait_for(
        f"{key} follows the PSA amount",
        lambda: c if (c := e2e.contract(key)) and Decimal(c["billing_amount"]) == new_amount else None,
        timeout_s=20,
    )
    assert after["name"] == local_name, "a later sync overwrote a local override"
    assert after["psa_name"] == "Renamed in ConnectWise", "the PSA's value stays visible"
    assert "name" in after["local_overrides"]


# ---------------------------------------------------------------------------------------------
# Step 5: local edits


def test_a_local_edit_of_billing_cost_is_rejected_naming_the_field_and_changes_nothing(
    e2e: E2E, refreshed: Refreshed, selected: Selected
) -> None:
    key = e2e.agreement_key(selected.agreement_ids[1])
    before = e2e.contract(key)
    command_id = e2e.edit(refreshed.client.id, key, {"billing_cost": "1.00", "notes": "should not land"})
    rejected = e2e.wait_event("sync.edit.rejected", "sync.edit.rejected", correlationid=command_id)
    assert rejected["data"]["contract_id"] == key
    assert rejected["data"]["fields"] == ["billing_cost"]
    assert rejected["data"]["reason"] == "psa_owned_field"
    assert rejected["data"]["message"]
    time.sleep(1.0)
    assert e2e.contract(key) == before, "a rejected edit must change nothing (not even its accepted fields)"


def test_a_local_edit_of_notes_is_applied_and_leaves_psa_owned_fields_alone(
    e2e: E2E, refreshed: Refreshed, selected: Selected
) -> None:
    key = e2e.agreement_key(selected.agreement_ids[1])
    before = e2e.contract(key)
    assert before is not None
    note = f"renewal call booked {datetime.now(UTC):%Y-%m-%d %H:%M:%S}"
    command_id = e2e.edit(refreshed.client.id, key, {"notes": note})
    after = e2e.wait_for(
        "the note on the contract", lambda: c if (c := e2e.contract(key)) and c["notes"] == note else None
    )
    for column in (*PSA_OWNED_COLUMNS, "name", "psa_last_updated"):
        assert after[column] == before[column], column
    assert not e2e.events("sync.edit.rejected", correlationid=command_id)


# ---------------------------------------------------------------------------------------------
# Step 6: what a dashboard sees


def test_last_synced_at_is_recorded_per_client_as_the_latest_contracts_applied_says(
    e2e: E2E, refreshed: Refreshed, selected: Selected, auto_synced: AutoSynced
) -> None:
    for client_id in (refreshed.client.id, auto_synced.client.id):
        settings = e2e.settings(client_id)
        assert settings is not None and settings["last_synced_at"] is not None
        applied = e2e.events("sync.contracts.applied", subject=f"{e2e.tenant}:{client_id}")
        latest = max(
            datetime.fromisoformat(e["data"]["last_synced_at"].replace("Z", "+00:00")) for e in applied
        )
        assert settings["last_synced_at"] == latest
        assert settings["last_synced_at"] <= datetime.now(UTC)


def test_a_dashboard_sees_every_kind_of_sync_event_of_the_walkthrough(
    e2e: E2E, selected: Selected, psa_changed: PsaChanged, auto_synced: AutoSynced
) -> None:
    e2e.wait_event("a poller heartbeat", "sync.heartbeat")
    seen = {e["type"] for e in e2e.events()}
    assert {
        "sync.poll.completed",
        "sync.catalog.changed",
        "sync.contracts.applied",
        "sync.auto_sync.changed",
        "sync.edit.rejected",
        "sync.heartbeat",
    } <= seen
    heartbeats = e2e.events("sync.heartbeat", data_service="poller")
    assert heartbeats and heartbeats[-1]["data"]["status"] == "ok"


def test_every_sync_event_is_a_valid_cloudevent_keyed_by_its_subject(e2e: E2E) -> None:
    records = e2e.events_tail.records()
    assert records
    for record in records:
        event = parse(SYNC_EVENTS, record.value)  # raises on a schema violation
        assert event.tenantid == e2e.tenant
        assert event.subject.startswith(f"{e2e.tenant}:")
        assert record.key == event.subject.encode()


def test_each_command_is_handled_once_so_dashboards_see_one_outcome_event_per_command(e2e: E2E) -> None:
    """Every command published in this session so far (all modules): at most one
    `sync.auto_sync.changed` per set_auto_sync command, and no rejection repeated for one command.
    (At-least-once allows a replay after a crash or rebalance; none happens in this session, and
    duplicates carry fresh event ids, so a dashboard cannot de-duplicate them.)"""
    assert e2e.published
    duplicated: dict[str, int] = {}
    for command_type, command_id in e2e.published:
        if command_type == "sync.command.set_auto_sync":
            n = len(e2e.events("sync.auto_sync.changed", correlationid=command_id))
            if n != 1:
                duplicated[f"{command_type} {command_id}: auto_sync.changed"] = n
        rejections = [
            (r["data"]["reason"], tuple(r["data"]["agreement_ids"]), tuple(r["data"]["addition_ids"]))
            for r in e2e.events("sync.command.rejected", correlationid=command_id)
        ]
        if len(rejections) != len(set(rejections)):
            duplicated[f"{command_type} {command_id}: command.rejected"] = len(rejections)
    assert not duplicated, f"commands handled more than once (event counts): {duplicated}"
