"""Two changes within one ConnectWise `_info.lastUpdated` second (the simulator's clock frozen, as
bulk edits and scripts do within a second): the second one is mapped and applied with auto-sync on,
and shown as `updated` in the catalog with auto-sync off, through the real poller, mapper and writer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from e2e_support import E2E


@contextmanager
def frozen_clock(e2e: E2E) -> Iterator[None]:
    """ConnectWise's clock stands still: every change gets the same `lastUpdated` second."""
    e2e.pipeline.control.clock(freeze=True)
    try:
        yield
    finally:
        e2e.pipeline.control.clock(reset=True)


def amount(row: dict[str, Any] | None) -> Decimal | None:
    return None if row is None else Decimal(row["billing_amount"])


def test_with_auto_sync_on_a_second_change_in_the_same_second_reaches_the_contract(e2e: E2E) -> None:
    control = e2e.pipeline.control
    company = control.add_company(name=f"Same second {e2e.tenant}")
    client = str(company["id"])
    agreement = control.create_agreement(
        company["id"], type="Managed Services", billAmount=100, billingCycle="Monthly"
    )
    addition = control.create_addition(
        agreement["id"], quantity=2, lessIncluded=0, unitPrice=10, billCustomer="Billable"
    )
    key, addition_key = e2e.agreement_key(agreement["id"]), e2e.addition_key(addition["id"])
    e2e.refresh(client)
    e2e.wait_for(f"{key} observed", lambda: key in e2e.catalog(client))
    command_id = e2e.set_auto_sync(client, True)
    e2e.wait_event("auto-sync on", "sync.auto_sync.changed", correlationid=command_id)
    e2e.wait_for(f"{key} applied", lambda: amount(e2e.contract(key)) == Decimal("100"))

    with frozen_clock(e2e):
        first = control.update_agreement(agreement["id"], billAmount=115.00)
        e2e.refresh(client)
        e2e.wait_for("the first change applied", lambda: amount(e2e.contract(key)) == Decimal("115"))
        second = control.update_agreement(agreement["id"], billAmount=115.50)
        assert second["_info"]["lastUpdated"] == first["_info"]["lastUpdated"], "one ConnectWise second"
        e2e.refresh(client)
        e2e.wait_for("the second change applied", lambda: amount(e2e.contract(key)) == Decimal("115.5"))

        # the same for an addition: two quantity changes within its one second
        control.update_addition(agreement["id"], addition["id"], quantity=3)
        e2e.refresh(client)
        e2e.wait_for("the addition's first change", lambda: amount(e2e.contract(addition_key)) == Decimal(30))
        control.update_addition(agreement["id"], addition["id"], quantity=4)
        e2e.refresh(client)
        e2e.wait_for(
            "the addition's second change", lambda: amount(e2e.contract(addition_key)) == Decimal(40)
        )

    catalog = e2e.catalog(client)
    assert catalog[key]["state"] == "synced" and Decimal(catalog[key]["summary"]["bill_amount"]) == Decimal(
        "115.5"
    )
    assert catalog[addition_key]["state"] == "synced"
    assert amount(e2e.contract(key)) == Decimal("115.5")


def test_with_auto_sync_off_a_second_change_in_the_same_second_shows_as_updated_until_selected(
    e2e: E2E,
) -> None:
    control = e2e.pipeline.control
    company = control.add_company(name=f"Same second manual {e2e.tenant}")
    client = str(company["id"])
    agreement = control.create_agreement(
        company["id"], type="Managed Services", billAmount=100, billingCycle="Monthly"
    )
    key = e2e.agreement_key(agreement["id"])
    e2e.refresh(client)
    e2e.wait_for(f"{key} observed", lambda: key in e2e.catalog(client))

    def state() -> str:
        return str(e2e.catalog(client)[key]["state"])

    def summary_amount() -> Decimal | None:
        value = e2e.catalog(client)[key]["summary"].get("bill_amount")
        return None if value is None else Decimal(value)

    with frozen_clock(e2e):
        control.update_agreement(agreement["id"], billAmount=115.00)
        e2e.refresh(client)
        e2e.wait_for("the first change observed", lambda: summary_amount() == Decimal("115"))
        e2e.wait_applied(e2e.select(client, [agreement["id"]], []), 1)
        assert amount(e2e.contract(key)) == Decimal("115")
        assert state() == "synced"

        control.update_agreement(agreement["id"], billAmount=115.50)
        e2e.refresh(client)
        e2e.wait_for("the second change observed", lambda: summary_amount() == Decimal("115.5"))
        assert state() == "updated", "the contract still holds the first change of that second"
        assert amount(e2e.contract(key)) == Decimal("115")

        command_id = e2e.select(client, [agreement["id"]], [])
        e2e.wait_for("the second change applied", lambda: amount(e2e.contract(key)) == Decimal("115.5"))
        e2e.wait_event("applied", "sync.contracts.applied", correlationid=command_id)
        assert state() == "synced"
