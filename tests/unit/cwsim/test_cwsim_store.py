"""The store: index-narrowed queries agree with a full scan, changes invalidate cached results and stamp
`_info.lastUpdated` from the simulator clock, and the control API validates its input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.cwsim.app import SimConfig, Simulator
from devtools.cwsim.clock import SimClock
from devtools.cwsim.conditions import build_predicate
from devtools.cwsim.generator import GeneratorSettings
from devtools.cwsim.schema import TABLES
from devtools.cwsim.store import Change, Store, StoreError

SETTINGS = GeneratorSettings(seed=3, companies=8, agreements_per_company=30, additions_per_agreement=3,
                             anchor=date(2026, 3, 1))  # fmt: skip


@pytest.fixture
def store() -> Store:
    clock = SimClock()
    clock.set(datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC))
    clock.freeze()
    return Store(SETTINGS, clock)


def brute_force(store: Store, condition: str) -> list[int]:
    _, predicate = build_predicate(condition, TABLES["agreement"])
    return [r.id for r in store.agreements.in_id_order() if predicate(r.data)]


@pytest.mark.parametrize(
    "template",
    [
        "company/id = {company}",
        "company/id = {company} and lastUpdated >= [2025-09-01T00:00:00Z]",
        "company/id = {company} and lastUpdated >= [2025-09-01T00:00:00Z] and id > {mid}",
        "lastUpdated = [{stamp}]",
        "lastUpdated <= [{stamp}] and lastUpdated > [2025-01-01T00:00:00.25Z]",
        "company/id in ({company}, {other})",
        "lastUpdated > [2025-12-01T10:00:00.5Z]",
        "_info/lastUpdated >= [2025-12-01T10:00:00Z] and agreementStatus = 'Active'",
        "id > {mid}",
        "id >= {mid} and id <= {mid2}",
        "id = {mid}",
        "id < {mid} or company/id = {company}",
        "not (company/id = {company})",
        "company/id not in ({company})",
    ],
)
def test_narrowed_queries_match_a_full_scan(store: Store, template: str) -> None:
    ids = store.agreements.ids
    companies = store.companies.ids
    stamp = store.agreements.by_id[ids[100]].data["_info"]["lastUpdated"]
    condition = template.format(
        company=companies[2], other=companies[5], mid=ids[100], mid2=ids[150], stamp=stamp
    )
    result = store.query(store.agreements, "agreement", condition, None)
    assert result.ids == brute_force(store, condition)
    assert result.ids, f"{condition} should match something in this data set"


def test_changes_invalidate_cached_results(store: Store) -> None:
    condition = "lastUpdated >= [2026-03-02T12:00:00Z]"
    assert len(store.query(store.agreements, "agreement", condition, None)) == 0
    target = store.agreements.ids[7]
    updated = store.update_agreement(target, {"billAmount": 10.5})
    assert updated["_info"]["lastUpdated"] == "2026-03-02T12:00:00Z"
    assert store.query(store.agreements, "agreement", condition, None).ids == [target]
    store.delete_agreement(target)
    assert len(store.query(store.agreements, "agreement", condition, None)) == 0
    assert store.additions_of(target) is None


def test_listeners_see_every_change_and_a_failing_listener_does_not_fail_it(store: Store) -> None:
    seen: list[Change] = []

    def broken(change: Change) -> None:
        raise RuntimeError("listener bug")

    store.listeners += [broken, seen.append]
    company = store.add_company({"name": "Newco Ltd", "currency": "EUR"})
    agreement = store.create_agreement(company["id"], {"billingCycle": "Quarterly", "type": "Microsoft 365"})
    addition = store.create_addition(agreement["id"], {"product": "M365-E3", "quantity": 4})
    store.cancel_agreement(agreement["id"], "moved away")
    store.delete_addition(agreement["id"], addition["id"])
    assert [(c.type, c.action) for c in seen] == [
        ("company", "added"),
        ("agreement", "added"),
        ("addition", "added"),
        ("agreement", "updated"),
        ("addition", "deleted"),
    ]
    assert agreement["currency"]["currencyCode"] == "EUR"
    assert agreement["billingCycle"]["name"] == "Quarterly"
    cancelled = store.agreements.by_id[agreement["id"]].data
    assert (cancelled["cancelledFlag"], cancelled["agreementStatus"]) == (True, "Cancelled")


def test_rejects_unknown_fields_and_ids(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown field"):
        store.update_agreement(store.agreements.ids[0], {"bogus": 1})
    with pytest.raises(StoreError) as info:
        store.update_agreement(1, {"name": "x"})
    assert info.value.status == 404
    agreement_id = next(a for a, coll in store.additions.items() if len(coll))
    addition_id = store.additions[agreement_id].ids[0]
    with pytest.raises(StoreError, match="read-only"):
        store.update_addition(agreement_id, addition_id, {"id": 5})
    with pytest.raises(StoreError) as missing:
        store.update_addition(agreement_id, 1, {"quantity": 5})
    assert missing.value.status == 404


def test_additions_follow_their_agreements_status_without_a_new_last_updated(store: Store) -> None:
    agreement_id = next(a for a, coll in store.additions.items() if len(coll))
    before = {r.id: r.data["_info"]["lastUpdated"] for r in store.additions[agreement_id].in_id_order()}
    store.cancel_agreement(agreement_id)
    after = store.additions[agreement_id].in_id_order()
    assert {r.data["agreementStatus"] for r in after} == {"Cancelled"}
    assert {r.id: r.data["_info"]["lastUpdated"] for r in after} == before


def test_order_by_results_are_cached_per_version(store: Store) -> None:
    first = store.query(store.agreements, "agreement", None, "billAmount desc")
    again = store.query(store.agreements, "agreement", None, "billAmount desc")
    assert first is again
    amounts = [r.data["billAmount"] for r in first.recs]
    assert amounts == sorted(amounts, reverse=True)


class TestControlApi:
    @pytest.fixture
    async def control(self) -> AsyncIterator[tuple[Simulator, httpx.AsyncClient]]:
        sim = Simulator(SimConfig(companies=2, agreements_per_company=3, anchor=date(2026, 1, 1)))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim), base_url="http://sim") as client:
            yield sim, client

    async def test_bad_input_answers_400_and_unknown_ids_404(
        self, control: tuple[Simulator, httpx.AsyncClient]
    ) -> None:
        _, client = control
        assert (await client.post("/_sim/agreements", json={})).status_code == 400
        assert (await client.patch("/_sim/agreements/1", json={"name": "x"})).status_code == 404
        assert (await client.post("/_sim/faults", json={"error_rate": 2})).status_code == 400
        assert (await client.post("/_sim/faults", json={"nope": 1})).status_code == 400
        assert (await client.post("/_sim/permissions", json={"finance_agreements": "no"})).status_code == 400
        assert (await client.post("/_sim/reset", json={"colour": "red"})).status_code == 400

    async def test_clock_moves_and_freezes(self, control: tuple[Simulator, httpx.AsyncClient]) -> None:
        sim, client = control
        state = (
            await client.post("/_sim/clock", json={"set": "2030-01-01T00:00:00Z", "freeze": True})
        ).json()
        assert state == {"now": "2030-01-01T00:00:00Z", "frozen": True, "offset_s": state["offset_s"]}
        state = (await client.post("/_sim/clock", json={"advance_s": 90})).json()
        assert state["now"] == "2030-01-01T00:01:30Z"
        assert sim.clock.now_cw() == "2030-01-01T00:01:30Z"

    async def test_reset_regenerates_from_a_new_seed(
        self, control: tuple[Simulator, httpx.AsyncClient]
    ) -> None:
        sim, client = control
        before = [r.raw for r in sim.store.agreements.in_id_order()]
        info = (await client.post("/_sim/reset", json={"seed": 99, "companies": 1})).json()
        assert info["counts"]["agreements"] == 3
        assert [r.raw for r in sim.store.agreements.in_id_order()] != before
        again = (await client.post("/_sim/reset", json={"seed": 99, "companies": 1})).json()
        assert again["counts"] == info["counts"]

    async def test_info_never_shows_the_private_key(
        self, control: tuple[Simulator, httpx.AsyncClient]
    ) -> None:
        sim, client = control
        text = (await client.get("/_sim/info")).text
        assert sim.config.private_key not in text and sim.config.public_key not in text


_TERMS = [
    "company/id = {company}",
    "company/id in ({company}, {other})",
    "lastUpdated >= [{stamp}]",
    "_info/lastUpdated > [{stamp}]",
    "lastUpdated < [{frac}]",
    "lastUpdated <= [{frac}]",
    "lastUpdated >= [{frac}]",
    "lastUpdated = [{exact}]",
    "id > {mid}",
    "id <= {mid}",
    "agreementStatus = 'Active'",
    "billAmount > 100",
    'name contains "services"',
    "parentAgreement/id != null",
    "cancelledFlag = True",
    'billingCycle/name in ("Monthly", "Yearly")',
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    terms=st.lists(st.sampled_from(_TERMS), min_size=1, max_size=4),
    joiners=st.lists(st.sampled_from([" and ", " or ", " AND "]), min_size=3, max_size=3),
    negate=st.booleans(),
)
def test_any_combination_of_terms_matches_a_full_scan(
    store: Store, terms: list[str], joiners: list[str], negate: bool
) -> None:
    ids = store.agreements.ids
    companies = store.companies.ids
    exact = store.agreements.by_id[ids[50]].data["_info"]["lastUpdated"]
    values = {
        "company": companies[1],
        "other": companies[4],
        "stamp": "2025-10-01T00:00:00Z",
        "frac": exact.replace("Z", ".5Z"),
        "exact": exact,
        "mid": ids[120],
    }
    text = terms[0].format(**values)
    for joiner, term in zip(joiners, terms[1:], strict=False):
        text += joiner + term.format(**values)
    if negate:
        text = f"not ({text})"
    assert store.query(store.agreements, "agreement", text, None).ids == brute_force(store, text)
