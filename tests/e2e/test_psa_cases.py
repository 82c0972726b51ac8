"""Agreements and additions of every shape, made in the simulator through its control API, then
refreshed and selected through the wire contract; expected values come from the simulator's
ConnectWise answers and docs/design.md#mapping-rules (e2e_support, independent of the mapper).

Two companies are created for this module: a USD one holding the special cases and an EUR one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from e2e_support import E2E, assert_maps, expected_addition, expected_agreement, today


def iso(days_from_today: int) -> str:
    return f"{today() + timedelta(days=days_from_today)}T00:00:00Z"


@dataclass
class Cases:
    client: str
    agreements: dict[str, dict[str, Any]] = field(default_factory=dict)
    additions: dict[str, dict[str, Any]] = field(default_factory=dict)
    psa: list[tuple[dict[str, Any], list[dict[str, Any]]]] = field(default_factory=list)

    def keys(self, e2e: E2E) -> set[str]:
        return {e2e.agreement_key(a["id"]) for a, _ in self.psa} | {
            e2e.addition_key(x["id"]) for _, xs in self.psa for x in xs
        }


def _make_cases(e2e: E2E) -> Cases:
    control = e2e.pipeline.control
    company = control.add_company(name=f"Cases {e2e.tenant}", currency="USD")
    cases = Cases(str(company["id"]))
    cid = company["id"]
    main = control.create_agreement(
        cid, name="Managed services", type="Managed Services", billAmount=1000.1, billingCycle="Monthly"
    )
    cases.agreements["main"] = main
    cases.additions["billable"] = control.create_addition(
        main["id"],
        quantity=12,
        lessIncluded=2,
        unitPrice=15.75,
        billCustomer="Billable",
        effectiveDate=iso(-30),
    )
    cases.additions["future"] = control.create_addition(
        main["id"], lessIncluded=0, billCustomer="Billable", quantity=3, unitPrice=20, effectiveDate=iso(45)
    )
    cancelled_addition = control.create_addition(
        main["id"],
        lessIncluded=0,
        billCustomer="Billable",
        quantity=2,
        unitPrice=9.99,
        effectiveDate=iso(-60),
    )
    cases.additions["cancelled"] = control.cancel_addition(main["id"], cancelled_addition["id"], date=iso(-1))
    cases.additions["do_not_bill"] = control.create_addition(
        main["id"], lessIncluded=0, quantity=4, unitPrice=50, billCustomer="DoNotBill", effectiveDate=iso(-30)
    )
    cases.additions["no_charge"] = control.create_addition(
        main["id"], lessIncluded=0, quantity=1, unitPrice=75, billCustomer="NoCharge", effectiveDate=iso(-30)
    )
    cases.additions["over_included"] = control.create_addition(
        main["id"], quantity=2, lessIncluded=5, unitPrice=10, billCustomer="Billable", effectiveDate=iso(-30)
    )
    cases.additions["to_delete"] = control.create_addition(
        main["id"], lessIncluded=0, billCustomer="Billable", quantity=1, unitPrice=5, effectiveDate=iso(-30)
    )
    cancelled = control.create_agreement(
        cid, name="Old backup plan", type="Managed Services", billAmount=500, billingCycle="Quarterly"
    )
    cases.agreements["cancelled"] = control.cancel_agreement(cancelled["id"], reason="Customer left")
    cases.agreements["child"] = control.create_agreement(
        cid,
        name="Add-on security",
        type="Managed Services",
        parentAgreement=main["id"],
        billAmount=99,
        billingCycle="Yearly",
    )
    cases.agreements["one_time"] = control.create_agreement(
        cid,
        name="Onboarding project",
        type="Project - Fixed Fee",
        billAmount=2500,
        billingCycle="NotRecurring",
    )
    cases.agreements["future"] = control.create_agreement(
        cid,
        name="Next year's plan",
        type="Managed Services",
        billAmount=300,
        billingCycle="SemiAnnual",
        startDate=iso(30),
    )
    doomed = control.create_agreement(
        cid, name="Trial (to be deleted)", type="Managed Services", billAmount=42, billingCycle="Monthly"
    )
    cases.agreements["doomed"] = doomed
    cases.additions["doomed_addition"] = control.create_addition(
        doomed["id"],
        lessIncluded=0,
        billCustomer="Billable",
        quantity=2,
        unitPrice=3.5,
        effectiveDate=iso(-1),
    )
    cases.psa = e2e.psa_client(cases.client)
    return cases


def _make_eur(e2e: E2E) -> Cases:
    control = e2e.pipeline.control
    company = control.add_company(name=f"Euro {e2e.tenant}", currency="EUR")
    cases = Cases(str(company["id"]))
    agreement = control.create_agreement(
        company["id"],
        name="Managed Workplace EU",
        type="Managed Services",
        billAmount=1234.56,
        billingCycle="Quarterly",
    )
    cases.agreements["main"] = agreement
    cases.additions["seats"] = control.create_addition(
        agreement["id"],
        quantity=7,
        lessIncluded=1,
        unitPrice=19.99,
        billCustomer="Billable",
        effectiveDate=iso(-10),
    )
    cases.psa = e2e.psa_client(cases.client)
    return cases


def _import_all(e2e: E2E, cases: Cases) -> str:
    """Wait until the refresh's catalog lists everything, then select everything."""
    expected = cases.keys(e2e)
    e2e.wait_for(
        f"client {cases.client} fully in the catalog", lambda: expected <= set(e2e.catalog(cases.client))
    )
    return e2e.select(
        cases.client,
        [a["id"] for a, _ in cases.psa],
        [x["id"] for _, xs in cases.psa for x in xs],
    )


@pytest.fixture(scope="module")
def imported(e2e: E2E) -> tuple[Cases, Cases]:
    cases, eur = _make_cases(e2e), _make_eur(e2e)
    for client in (cases, eur):
        e2e.refresh(client.client)
    for client in (cases, eur):
        _import_all(e2e, client)
    for client in (cases, eur):
        expected = client.keys(e2e)
        e2e.wait_for(
            f"all {len(expected)} contracts of client {client.client}",
            lambda c=client, x=expected: set(e2e.contracts(c.client)) >= x,  # type: ignore[misc]
        )
    return cases, eur


@pytest.fixture(scope="module")
def cases(imported: tuple[Cases, Cases]) -> Cases:
    return imported[0]


def _row(
    e2e: E2E, cases: Cases, *, agreement: str | None = None, addition: str | None = None
) -> dict[str, Any]:
    if agreement is not None:
        key = e2e.agreement_key(cases.agreements[agreement]["id"])
    else:
        assert addition is not None
        key = e2e.addition_key(cases.additions[addition]["id"])
    row = e2e.contract(key)
    assert row is not None, f"no contract {key}"
    return row


def test_every_imported_agreement_and_addition_follows_the_mapping_rules(e2e: E2E, cases: Cases) -> None:
    contracts = e2e.contracts(cases.client)
    assert set(contracts) == cases.keys(e2e)
    on = today()
    for agreement, additions in cases.psa:
        assert_maps(
            contracts[e2e.agreement_key(agreement["id"])], expected_agreement(e2e.tenant, agreement, on)
        )
        for addition in additions:
            assert_maps(
                contracts[e2e.addition_key(addition["id"])],
                expected_addition(e2e.tenant, agreement, addition, on),
            )


def test_a_cancelled_agreement_is_imported_with_status_cancelled(e2e: E2E, cases: Cases) -> None:
    row = _row(e2e, cases, agreement="cancelled")
    assert row["status"] == "cancelled"
    assert Decimal(row["billing_amount"]) == Decimal("500")
    assert row["billing_cycle"] == "quarterly"


def test_a_future_effective_addition_is_pending_and_a_cancelled_addition_is_cancelled(
    e2e: E2E, cases: Cases
) -> None:
    assert _row(e2e, cases, addition="future")["status"] == "pending"
    assert Decimal(_row(e2e, cases, addition="future")["billing_amount"]) == Decimal("60")
    assert _row(e2e, cases, addition="cancelled")["status"] == "cancelled"
    assert _row(e2e, cases, addition="billable")["status"] == "active"
    assert _row(e2e, cases, agreement="future")["status"] == "pending"


def test_billable_additions_cost_quantity_less_included_times_unit_price(e2e: E2E, cases: Cases) -> None:
    row = _row(e2e, cases, addition="billable")
    assert Decimal(row["billing_amount"]) == (Decimal(12) - Decimal(2)) * Decimal("15.75")
    assert (row["billing_currency"], row["billing_cycle"]) == ("USD", "monthly")


def test_an_over_included_addition_costs_nothing_rather_than_a_negative_amount(
    e2e: E2E, cases: Cases
) -> None:
    row = _row(e2e, cases, addition="over_included")
    assert Decimal(row["billing_amount"]) == Decimal(0)
    assert row["status"] == "active"


def test_do_not_bill_and_no_charge_additions_cost_nothing(e2e: E2E, cases: Cases) -> None:
    for name in ("do_not_bill", "no_charge"):
        row = _row(e2e, cases, addition=name)
        assert Decimal(row["billing_amount"]) == Decimal(0), name
        assert row["billing_currency"] == "USD"


def test_a_child_agreement_is_its_own_contract_naming_its_parent(e2e: E2E, cases: Cases) -> None:
    child = _row(e2e, cases, agreement="child")
    main_key = e2e.agreement_key(cases.agreements["main"]["id"])
    assert child["parent_contract_key"] == main_key
    assert child["kind"] == "agreement"
    assert (child["billing_cycle"], Decimal(child["billing_amount"])) == ("annual", Decimal("99"))
    assert _row(e2e, cases, agreement="main")["parent_contract_key"] is None
    assert _row(e2e, cases, addition="billable")["parent_contract_key"] == main_key


def test_a_not_recurring_agreement_is_a_one_time_fixed_cost_contract(e2e: E2E, cases: Cases) -> None:
    row = _row(e2e, cases, agreement="one_time")
    assert (row["billing_cycle"], row["category"]) == ("one_time", "fixed_cost")
    assert _row(e2e, cases, agreement="main")["category"] == "recurring"


def test_a_client_with_a_non_default_currency_gets_its_amounts_in_that_currency(
    e2e: E2E, imported: tuple[Cases, Cases]
) -> None:
    eur = imported[1]
    contracts = e2e.contracts(eur.client)
    assert set(contracts) == eur.keys(e2e)
    agreement = contracts[e2e.agreement_key(eur.agreements["main"]["id"])]
    addition = contracts[e2e.addition_key(eur.additions["seats"]["id"])]
    assert (agreement["billing_currency"], Decimal(agreement["billing_amount"])) == (
        "EUR",
        Decimal("1234.56"),
    )
    assert (addition["billing_currency"], Decimal(addition["billing_amount"])) == (
        "EUR",
        (Decimal(7) - Decimal(1)) * Decimal("19.99"),
    )
    on = today()
    for psa_agreement, additions in eur.psa:
        assert_maps(
            contracts[e2e.agreement_key(psa_agreement["id"])],
            expected_agreement(e2e.tenant, psa_agreement, on),
        )
        for x in additions:
            assert_maps(
                contracts[e2e.addition_key(x["id"])], expected_addition(e2e.tenant, psa_agreement, x, on)
            )


# Removals last: they change the data the tests above read.


def test_an_agreement_deleted_in_the_psa_is_kept_and_marked_removed_after_the_reconcile(
    e2e: E2E, cases: Cases
) -> None:
    doomed = cases.agreements["doomed"]
    key = e2e.agreement_key(doomed["id"])
    addition_key = e2e.addition_key(cases.additions["doomed_addition"]["id"])
    before = e2e.contract(key)
    assert before is not None and before["removed_in_psa_at"] is None
    e2e.pipeline.control.delete_agreement(doomed["id"])
    # no refresh: the periodic reconcile (3 s here) finds it missing and confirms it by a 404
    after = e2e.wait_for(
        f"{key} marked removed",
        lambda: c if (c := e2e.contract(key)) and c["removed_in_psa_at"] is not None else None,
        timeout_s=30,
    )
    for column in ("status", "billing_amount", "billing_currency", "billing_cycle", "name", "notes"):
        assert after[column] == before[column], column
    addition = e2e.wait_for(
        "its addition marked removed too",
        lambda: c if (c := e2e.contract(addition_key)) and c["removed_in_psa_at"] is not None else None,
        timeout_s=10,
    )
    assert addition["contract_key"] == addition_key
    reconciles = e2e.events("sync.poll.completed", data_run_kind="reconcile")
    assert any(e["data"]["agreements_removed"] >= 1 for e in reconciles)
    catalog = e2e.wait_for(
        "the catalog lists it as removed",
        lambda: c if (c := e2e.catalog(cases.client))[key]["state"] == "removed" else None,
    )
    assert catalog[key]["removed_at"] is not None
    e2e.wait_for(
        "sync.contracts.applied counting both retirements",
        lambda: (
            sum(
                e["data"].get("retired", 0)
                for e in e2e.events("sync.contracts.applied", subject=f"{e2e.tenant}:{cases.client}")
            )
            >= 2
        ),
    )
    assert set(e2e.contracts(cases.client)) == cases.keys(e2e), "removed contracts are kept, never deleted"


def test_an_addition_deleted_in_the_psa_is_kept_and_marked_removed_after_a_refresh(
    e2e: E2E, cases: Cases
) -> None:
    main = cases.agreements["main"]
    target = cases.additions["to_delete"]
    key = e2e.addition_key(target["id"])
    e2e.pipeline.control.delete_addition(main["id"], target["id"])
    command_id = e2e.refresh(cases.client)
    e2e.wait_event("the refresh's poll", "sync.poll.completed", correlationid=command_id)
    row = e2e.wait_for(
        f"{key} marked removed",
        lambda: c if (c := e2e.contract(key)) and c["removed_in_psa_at"] is not None else None,
        timeout_s=20,
    )
    assert Decimal(row["billing_amount"]) == Decimal("5")
    agreement = e2e.contract(e2e.agreement_key(main["id"]))
    assert agreement is not None and agreement["removed_in_psa_at"] is None, "its agreement is still there"
