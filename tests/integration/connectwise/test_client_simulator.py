"""The production ConnectWise client against the ConnectWise simulator over real HTTP (no HTTP mocks).

One simulator (1,200 agreements) serves the module; tests that change its faults, budget or
permissions restore them before they finish.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools.cwsim.testing import SimHandle, run_simulator
from services.poller.connectwise import (
    ConnectWiseAuthenticationError,
    ConnectWiseBadRequestError,
    ConnectWiseClient,
    ConnectWiseConnection,
    ConnectWiseNotFoundError,
    ConnectWisePermissionError,
    ConnectWiseServerError,
    ConnectWiseThrottledError,
    ConnectWiseTransportError,
    Paging,
)
from services.poller.connectwise import conditions as cond

COMPANIES, PER_COMPANY = 30, 40
TOTAL = COMPANIES * PER_COMPANY


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with run_simulator(
        seed=11, companies=COMPANIES, agreements_per_company=PER_COMPANY, additions_per_agreement=2
    ) as handle:
        yield handle


def connect(sim: SimHandle, **overrides: Any) -> ConnectWiseClient:
    values: dict[str, Any] = {
        "site": sim.site_url,
        "company_id": sim.company_id,
        "public_key": sim.public_key,
        "private_key": sim.private_key,
        "client_id": sim.client_id,
        "requests_per_minute": 60_000,
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
    }
    policy = overrides.pop("retry_policy", None)
    values.update(overrides)
    return ConnectWiseClient(ConnectWiseConnection(**values), retry_policy=policy)


async def test_discovers_the_codebase_from_companyinfo(sim: SimHandle) -> None:
    async with connect(sim) as client:
        info = await client.system_info()
        assert client.codebase == "v4_6_release/"
    assert info.version


async def test_navigable_paging_reads_more_than_1000_agreements_exactly_once(sim: SimHandle) -> None:
    async with connect(sim) as client:
        total = await client.count_agreements()
        ids = [a.id async for a in client.list_agreements(order_by="id asc", page_size=1000)]
        small_pages = [a.id async for a in client.list_agreements(order_by="id", page_size=250)]
    assert total >= TOTAL
    assert len(ids) == total and len(set(ids)) == total
    assert ids == sorted(ids)
    assert small_pages == ids


async def test_forward_only_paging_reads_the_same_agreements_in_id_order(sim: SimHandle) -> None:
    async with connect(sim) as client:
        navigable = {a.id async for a in client.list_agreements(page_size=1000)}
        before = client.stats.snapshot()
        forward = [a.id async for a in client.list_agreements(page_size=1000, paging=Paging.FORWARD_ONLY)]
        used = client.stats.snapshot() - before
    assert len(forward) == len(navigable) > 1000
    assert set(forward) == navigable
    assert forward == sorted(forward)
    # 1,2xx rows in 1,000-row pages: two pages, stopped by the short page
    assert used.requests == -(-len(forward) // 1000)


async def test_last_updated_conditions_select_exactly_the_touched_agreements(sim: SimHandle) -> None:
    async with connect(sim) as client:
        some = [
            a.id
            async for a in client.list_agreements(
                cond.eq("company/id", await _a_company(client)), fields=["id"]
            )
        ]
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(days=400)
    sim.control.clock(set=later.strftime("%Y-%m-%dT%H:%M:%SZ"), freeze=True)
    try:
        touched = sim.control.touch_agreements(ids=some[:3])
        async with connect(sim) as client:
            by_virtual = {a.id async for a in client.list_agreements(cond.ge("lastUpdated", later))}
            by_path = {a.id async for a in client.list_agreements(cond.ge("_info/lastUpdated", later))}
            before = {
                a.id async for a in client.list_agreements(cond.lt("lastUpdated", later), fields=["id"])
            }
            count = await client.count_agreements(cond.ge("lastUpdated", later))
            fetched = await client.get_agreement(touched[0])
    finally:
        sim.control.clock(reset=True)
    assert by_virtual == by_path == set(touched) == set(some[:3])
    assert count == 3
    assert not before & set(touched)
    assert fetched.last_updated == later


async def test_fields_trims_the_answer(sim: SimHandle) -> None:
    async with connect(sim) as client:
        rows = [
            a
            async for a in client.list_agreements(
                fields=["id", "company/id", "_info/lastUpdated"], page_size=100
            )
        ]
    assert len(rows) > 1000
    assert all(set(a.raw) <= {"id", "company", "_info"} for a in rows)
    assert all(a.company is not None and a.company.id is not None for a in rows)
    assert all(a.name is None and a.billAmount is None for a in rows)


async def test_additions_are_listed_per_agreement_and_match_their_count(sim: SimHandle) -> None:
    async with connect(sim) as client:
        agreement = await anext(aiter(client.list_agreements(page_size=5)))
        assert agreement.id is not None
        additions = [x async for x in client.list_additions(agreement.id)]
        count = await client.count_additions(agreement.id)
        if additions:
            one = await client.get_addition(agreement.id, additions[0].id or 0)
            assert one.raw == additions[0].raw
    assert len(additions) == count
    assert all(x.agreementId == agreement.id for x in additions)


async def test_companies_are_listed_and_fetched(sim: SimHandle) -> None:
    async with connect(sim) as client:
        companies = [c async for c in client.list_companies(order_by="id")]
        first = await client.get_company(companies[0].id or 0)
        assert await client.count_companies() == len(companies)
    assert len(companies) >= COMPANIES
    assert first.raw == companies[0].raw


async def test_429_retry_after_is_honoured_and_the_calls_succeed(sim: SimHandle) -> None:
    sim.control.reset_stats()
    sim.control.set_budget(5, window_s=2)
    try:
        async with connect(sim) as client:
            await client.system_info()  # discovery + first call outside the measured part
            started = time.monotonic()
            counts = [await client.count_agreements() for _ in range(8)]
            elapsed = time.monotonic() - started
            stats = client.stats.snapshot()
    finally:
        sim.control.set_budget(0)
    server = sim.control.stats()
    assert len(set(counts)) == 1
    assert stats.throttled >= 1
    assert stats.throttled == server["throttled"]
    # the simulator's Retry-After is >= 1 s; each 429 was waited out before the next request
    assert elapsed >= 0.95 * stats.throttled
    assert stats.throttled <= 3  # at most one 429 per 2-second window: no hammering during a pause


async def test_persistent_429_surfaces_a_retryable_throttled_error(sim: SimHandle) -> None:
    sim.control.set_budget(1, window_s=120)
    try:
        async with connect(sim, max_attempts=2, max_retry_after=1.0) as client:
            with pytest.raises(ConnectWiseThrottledError) as raised:
                for _ in range(3):
                    await client.count_agreements()
    finally:
        sim.control.set_budget(0)
    assert raised.value.retryable is True
    assert raised.value.retry_after is not None and raised.value.retry_after > 1.0


async def test_5xx_is_retried_then_succeeds(sim: SimHandle) -> None:
    async with connect(sim, max_attempts=15) as client:
        expected = await client.count_agreements()
        sim.control.set_faults(error_rate=0.5, error_status=503)
        try:
            counts = [await client.count_agreements() for _ in range(20)]
        finally:
            sim.control.clear_faults()
        retries = client.stats.retries
    assert counts == [expected] * 20
    assert retries > 0


async def test_5xx_is_surfaced_after_the_bounded_retries(sim: SimHandle) -> None:
    async with connect(sim, max_attempts=3) as client:
        await client.system_info()
        sim.control.reset_stats()
        sim.control.set_faults(error_rate=1.0, error_status=500)
        try:
            with pytest.raises(ConnectWiseServerError) as raised:
                await client.count_agreements()
        finally:
            sim.control.clear_faults()
    served = sim.control.stats()
    assert raised.value.retryable is True and raised.value.status_code == 500
    assert served["requests"] == 3


async def test_timeouts_surface_as_retryable_transport_errors(sim: SimHandle) -> None:
    async with connect(sim, max_attempts=2, read_timeout=0.3) as client:
        await client.system_info()
        sim.control.set_faults(timeout_rate=1.0, timeout_hang_s=1)
        try:
            with pytest.raises(ConnectWiseTransportError) as raised:
                await client.count_agreements()
        finally:
            sim.control.clear_faults()
        assert client.stats.retries == 1
    assert raised.value.retryable is True


async def test_bad_credentials_surface_as_401_with_operator_guidance(sim: SimHandle) -> None:
    async with connect(sim, private_key="not-the-key") as client:
        with pytest.raises(ConnectWiseAuthenticationError) as raised:
            await client.count_agreements()
    assert raised.value.status_code == 401 and not raised.value.retryable
    assert "private key" in raised.value.operator_action
    assert "not-the-key" not in str(raised.value) + repr(raised.value)
    async with connect(sim, client_id="00000000-0000-0000-0000-000000000000") as client:
        with pytest.raises(ConnectWiseAuthenticationError):
            await client.count_agreements()


@pytest.mark.parametrize(
    ("permission", "call", "grant"),
    [
        ("finance_agreements", "agreements", "Finance > Agreements: Inquire Level All"),
        ("company_maintenance", "companies", "Companies > Company Maintenance: Inquire Level All"),
    ],
)
async def test_missing_permission_surfaces_as_403_naming_the_grant(
    sim: SimHandle, permission: str, call: str, grant: str
) -> None:
    sim.control.set_permissions(**{permission: False})
    try:
        async with connect(sim) as client:
            with pytest.raises(ConnectWisePermissionError) as raised:
                if call == "agreements":
                    _ = [a async for a in client.list_agreements()]
                else:
                    await client.count_companies()
            assert client.stats.retries == 0
    finally:
        sim.control.set_permissions(**{permission: True})
    assert raised.value.status_code == 403 and not raised.value.retryable
    assert raised.value.permission == grant
    assert grant in raised.value.operator_action


async def test_malformed_conditions_surface_as_400_with_connectwise_code(sim: SimHandle) -> None:
    async with connect(sim) as client:
        for text in ("company/id = = 5", "noSuchField = 1", 'lastUpdated >= "2026-01-01"', "(id = 1"):
            with pytest.raises(ConnectWiseBadRequestError) as raised:
                await client.count_agreements(cond.unsafe_raw(text))
            assert raised.value.status_code == 400
            assert raised.value.code == "InvalidObject"
            assert raised.value.cw_message and "conditions" in raised.value.cw_message
        assert client.stats.retries == 0


HOSTILE_SUFFIXES = [
    '" or 1=1 or name="',
    "' or 1=1 or name='",
    '") or (id > 0',
    "] or id > 0 or name = [",
    " or id > 0",
    '" or id > 0 or name = "x',
]


async def test_hostile_values_cannot_widen_a_query(sim: SimHandle) -> None:
    async with connect(sim) as client:
        agreement = await anext(aiter(client.list_agreements(page_size=1)))
        name = agreement.name
        assert name
        expected = await client.count_agreements(cond.eq("name", name))
        total = await client.count_agreements()
        assert 1 <= expected < total
        for suffix in HOSTILE_SUFFIXES:
            hostile = name + suffix
            assert await client.count_agreements(cond.eq("name", hostile)) == 0, hostile
            assert await client.count_agreements(cond.eq("name", hostile) | cond.eq("id", -1)) == 0, hostile
            assert await client.count_agreements(cond.contains("name", hostile)) == 0, hostile
            rows = [a async for a in client.list_agreements(cond.eq("company/name", hostile))]
            assert rows == [], hostile
        # the same values pasted into a condition by hand DO widen it: the test has teeth
        widened = await client.count_agreements(cond.unsafe_raw(f'name = "{name}" or id > 0 or name = "x"'))
        assert widened == total


async def test_deleted_agreement_is_a_404_not_found(sim: SimHandle) -> None:
    async with connect(sim) as client:
        company = await _a_company(client)
        created = sim.control.create_agreement(company, name="to be deleted")
        fetched = await client.get_agreement(created["id"])
        assert fetched.name == "to be deleted"
        sim.control.delete_agreement(created["id"])
        with pytest.raises(ConnectWiseNotFoundError) as raised:
            await client.get_agreement(created["id"])
    assert raised.value.code == "NotFound"


async def test_callbacks_can_be_registered_listed_and_deleted(sim: SimHandle) -> None:
    async with connect(sim) as client:
        created = await client.create_callback(
            "http://127.0.0.1:9/cw?recordId=", description="contract-sync test"
        )
        listed = [c.id async for c in client.list_callbacks()]
        assert created.id in listed
        await client.delete_callback(created.id or 0)
        after = [c.id async for c in client.list_callbacks()]
        with pytest.raises(ConnectWiseBadRequestError):
            await client.create_callback("http://127.0.0.1:9/x", level="nonsense")
    assert created.id not in after
    assert created.type == "agreement" and created.level == "owner"


async def test_tls_is_verified_by_default_and_a_trusted_ca_is_accepted() -> None:
    with run_simulator(companies=1, agreements_per_company=2, tls=True) as tls_sim:
        assert tls_sim.site_url.startswith("https://")
        async with connect(tls_sim, max_attempts=1) as client:
            with pytest.raises(ConnectWiseTransportError, match=r"(?i)certificate|SSL"):
                await client.system_info()
        assert not isinstance(tls_sim.verify, bool)
        conn = connect(tls_sim).connection
        async with ConnectWiseClient(conn, ssl_context=tls_sim.verify) as client:
            assert await client.count_agreements() == 2


async def _a_company(client: ConnectWiseClient) -> int:
    company = await anext(aiter(client.list_companies(order_by="id", page_size=1)))
    assert company.id is not None
    return company.id
