"""Only ConnectWise's own NotFound retires a contract, and a retired item answered again is restored,
on the running pipeline (simulator, poller, mapper, writer, Kafka, PostgreSQL).

The simulator's `proxy_404_rate` fault answers every GET by id with a proxy's HTML 404 while lists
still work; `missing_agreements` answers ConnectWise's NotFound for agreements that still exist (as a
narrowed API-member scope does) and brings them back unchanged when cleared.
"""

from __future__ import annotations

import time
from typing import Any

from e2e_support import E2E


def _retired(e2e: E2E, keys: list[str]) -> list[str]:
    return [k for k in keys if (c := e2e.contract(k)) is not None and c["removed_in_psa_at"] is not None]


def test_a_proxy_404_retires_nothing_a_genuine_not_found_retires_one_and_a_later_200_restores_it(
    e2e: E2E,
) -> None:
    control = e2e.pipeline.control
    company = control.add_company(name=f"Guarded {e2e.tenant}", currency="USD")
    client = str(company["id"])
    agreements = [
        control.create_agreement(
            company["id"],
            name=f"Guarded {n}",
            type="Managed Services",
            billAmount=100 + n,
            billingCycle="Monthly",
        )
        for n in range(2)
    ]
    additions = [
        control.create_addition(a["id"], quantity=1, lessIncluded=0, unitPrice=10, billCustomer="Billable")
        for a in agreements
    ]
    e2e.refresh(client)
    e2e.wait_for("the catalog lists the new items", lambda: len(e2e.catalog(client)) >= 4)
    selected = e2e.select(client, [a["id"] for a in agreements], [x["id"] for x in additions])
    e2e.wait_applied(selected, created=4)
    keys = [e2e.agreement_key(a["id"]) for a in agreements] + [e2e.addition_key(x["id"]) for x in additions]
    target, other = agreements

    try:
        # 1. a proxy answers 404 pages for every GET by id: refreshes, polls and reconciles fail loudly
        control.set_faults(proxy_404_rate=1.0)
        refresh = e2e.refresh(client)
        failed = e2e.wait_event("the refresh fails on the proxy's 404", "sync.failed", correlationid=refresh)
        assert failed["data"]["error_code"] == "ConnectWiseForeignNotFoundError"
        time.sleep(4)  # a periodic poll and reconcile (3 s here) run under the fault as well
        assert _retired(e2e, keys) == []
        control.set_faults(proxy_404_rate=0.0)

        # 2. ConnectWise's own NotFound for one agreement retires exactly it (and its addition)
        control.set_faults(missing_agreements=[target["id"]])
        e2e.refresh(client)
        gone = [e2e.agreement_key(target["id"]), e2e.addition_key(additions[0]["id"])]
        e2e.wait_for(
            "the agreement answering NotFound is retired", lambda: _retired(e2e, keys) == gone or None
        )
        time.sleep(2)
        assert _retired(e2e, keys) == gone

        # 3. it answers 200 again (same version): restored, active again
        control.set_faults(missing_agreements=[])
        e2e.refresh(client)
        restored: dict[str, Any] = e2e.wait_for(
            "the agreement answering again is restored",
            lambda: {k: e2e.contract(k) for k in gone} if not _retired(e2e, keys) else None,
        )
        assert all(row is not None and row["removed_in_psa_at"] is None for row in restored.values())
        assert e2e.contract(e2e.agreement_key(other["id"]))["removed_in_psa_at"] is None  # type: ignore[index]
    finally:
        control.set_faults(proxy_404_rate=0.0, missing_agreements=[])
