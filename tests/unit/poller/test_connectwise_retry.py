"""Retries with bounded backoff, Retry-After, and the client-side token bucket (fake clock, no real waits)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from test_connectwise_support import FakeTime, json_response, make_client

from services.poller.connectwise import (
    ConnectWiseServerError,
    ConnectWiseThrottledError,
    ConnectWiseTransportError,
    RetryPolicy,
    TokenBucket,
    parse_retry_after,
)


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(initial_delay=0.5, max_delay=4.0)
    lows = [policy.backoff(n, lambda: 0.0) for n in range(1, 7)]
    highs = [policy.backoff(n, lambda: 1.0) for n in range(1, 7)]
    assert lows == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert highs == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_parses_retry_after_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=42), usegmt=True), now=now) == 42.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=42), usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("-5") == 0.0


def flaky(failures: list[httpx.Response | Exception], final: httpx.Response) -> object:
    queue = list(failures)

    def api(request: httpx.Request) -> httpx.Response:
        if queue:
            item = queue.pop(0)
            if isinstance(item, Exception):
                raise item
            return item
        return final

    return api


async def test_retries_5xx_with_growing_backoff_then_succeeds() -> None:
    api = flaky(
        [json_response(500, {"code": "x"}), json_response(503, {}), json_response(502, {})],
        json_response(200, {"count": 3}),
    )
    client, fake, ft = make_client(api, policy=RetryPolicy(max_attempts=5, initial_delay=1.0, max_delay=30))  # type: ignore[arg-type]
    async with client:
        assert await client.count_agreements() == 3
    retry_sleeps = [s for s in ft.sleeps if s >= 0.5]
    assert retry_sleeps == [0.75, 1.5, 3.0]  # rng fixed at 0.5: 3/4 of 1, 2, 4
    assert client.stats.retries == 3
    assert client.stats.requests == 5  # companyinfo + 4 tries
    assert len(fake.api_requests) == 4


async def test_5xx_is_surfaced_as_retryable_server_error_after_bounded_attempts() -> None:
    client, fake, _ = make_client(
        lambda r: json_response(500, {"code": "Boom", "message": "down"}), policy=RetryPolicy(max_attempts=3)
    )
    async with client:
        with pytest.raises(ConnectWiseServerError) as raised:
            await client.count_agreements()
    assert raised.value.retryable is True
    assert len(fake.api_requests) == 3
    assert client.stats.failures == 1


async def test_timeouts_and_connection_errors_are_retried_then_surfaced() -> None:
    errors: list[httpx.Response | Exception] = [httpx.ReadTimeout("slow"), httpx.ConnectError("refused")]
    client, _, _ = make_client(flaky(errors, json_response(200, {"count": 1})))  # type: ignore[arg-type]
    async with client:
        assert await client.count_agreements() == 1
    assert client.stats.retries == 2

    def always(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("no route")

    client, _, _ = make_client(always, policy=RetryPolicy(max_attempts=4), codebase="v2025_1")
    async with client:
        with pytest.raises(ConnectWiseTransportError) as raised:
            await client.system_info()
    assert raised.value.retryable is True
    assert client.stats.requests == 4


async def test_429_waits_retry_after_and_pauses_the_tenant_limiter() -> None:
    api = flaky(
        [json_response(429, {"error": "ConnectWiseAPI", "message": "Too many"}, {"Retry-After": "7"})],
        json_response(200, {"count": 2}),
    )
    client, _, ft = make_client(api)  # type: ignore[arg-type]
    async with client:
        assert await client.count_agreements() == 2
    assert 7.0 in ft.sleeps
    assert client.stats.throttled == 1 and client.stats.retries == 1


async def test_429_with_http_date_retry_after_is_honoured() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    api = flaky([json_response(429, {}, {"Retry-After": when})], json_response(200, {"count": 2}))
    client, _, ft = make_client(api)  # type: ignore[arg-type]
    async with client:
        assert await client.count_agreements() == 2
    assert any(18.0 <= s <= 20.0 for s in ft.sleeps)


async def test_429_without_retry_after_backs_off() -> None:
    api = flaky([json_response(429, {}), json_response(429, {})], json_response(200, {"count": 2}))
    client, _, ft = make_client(api, policy=RetryPolicy(initial_delay=2.0))  # type: ignore[arg-type]
    async with client:
        assert await client.count_agreements() == 2
    assert [s for s in ft.sleeps if s >= 1] == [1.5, 3.0]


async def test_retry_after_longer_than_the_cap_is_surfaced_at_once() -> None:
    client, fake, ft = make_client(
        lambda r: json_response(429, {}, {"Retry-After": "3600"}), policy=RetryPolicy(max_retry_after=120)
    )
    async with client:
        with pytest.raises(ConnectWiseThrottledError) as raised:
            await client.count_agreements()
    assert raised.value.retry_after == 3600.0
    assert raised.value.retryable is True
    assert len(fake.api_requests) == 1
    assert all(s < 1 for s in ft.sleeps)


async def test_persistent_429_is_surfaced_after_the_retry_budget() -> None:
    client, fake, _ = make_client(
        lambda r: json_response(429, {}, {"Retry-After": "1"}), policy=RetryPolicy(max_attempts=3)
    )
    async with client:
        with pytest.raises(ConnectWiseThrottledError):
            await client.count_agreements()
    assert len(fake.api_requests) == 3
    assert client.stats.throttled == 3


async def test_post_is_not_retried_on_5xx_but_is_on_connection_errors() -> None:
    client, fake, _ = make_client(lambda r: json_response(500, {}))
    async with client:
        with pytest.raises(ConnectWiseServerError):
            await client.create_callback("https://hooks.example/cw")
    assert len(fake.api_requests) == 1

    api = flaky([httpx.ConnectError("refused")], json_response(201, {"id": 9}))
    client, _, _ = make_client(api)  # type: ignore[arg-type]
    async with client:
        created = await client.create_callback("https://hooks.example/cw")
    assert created.id == 9


async def test_400_401_403_404_are_never_retried() -> None:
    for status in (400, 401, 403, 404):
        client, fake, _ = make_client(lambda r, s=status: json_response(s, {"code": "x", "message": "y"}))
        async with client:
            with pytest.raises(Exception):  # noqa: B017 - the type is checked in test_connectwise_client
                await client.count_agreements()
        assert len(fake.api_requests) == 1
        assert client.stats.retries == 0


async def test_token_bucket_caps_throughput_at_the_configured_rate() -> None:
    ft = FakeTime()
    bucket = TokenBucket(600, burst=5, clock=ft.clock, sleep=ft.sleep)  # 10 per second
    start = ft.now
    for _ in range(101):
        await bucket.acquire()
    elapsed = ft.now - start
    assert elapsed == pytest.approx(10.0, abs=0.01)  # 1 initial token + 100 at 10/s


async def test_token_bucket_burst_is_bounded_after_idle_time() -> None:
    ft = FakeTime()
    bucket = TokenBucket(600, burst=5, clock=ft.clock, sleep=ft.sleep)
    ft.now += 3600  # idle for an hour
    start = ft.now
    for _ in range(5):
        await bucket.acquire()
    assert ft.now == start  # the burst is free
    await bucket.acquire()
    assert ft.now - start == pytest.approx(0.1)


async def test_token_bucket_pause_holds_every_waiter() -> None:
    ft = FakeTime()
    bucket = TokenBucket(6000, clock=ft.clock, sleep=ft.sleep)
    bucket.pause_for(30)
    await asyncio.gather(*(bucket.acquire() for _ in range(3)))
    assert ft.now >= 1030


async def test_client_rate_limit_spaces_requests_with_headroom() -> None:
    ft = FakeTime()
    client, _, _ = make_client(
        lambda r: json_response(200, {"count": 0}),
        fake_time=ft,
        requests_per_minute=120,
        rate_limit_headroom=0.0,
        rate_limit_burst=1,
    )
    async with client:
        start = ft.now
        for _ in range(10):
            await client.count_agreements()
    # companyinfo + 10 calls = 11 tokens at 2/s, the first one free
    assert ft.now - start == pytest.approx(5.0)
    assert client.stats.rate_limit_wait_seconds == pytest.approx(5.0)


async def test_requests_retries_and_429s_reach_the_shared_prometheus_counters() -> None:
    from services.common.metrics import CW_REQUESTS, CW_RETRIES, CW_THROTTLED

    def value(counter: object, *labels: str) -> float:
        return counter.labels(*labels)._value.get()  # type: ignore[attr-defined, no-any-return]

    before = (
        value(CW_REQUESTS, "acme", "429"),
        value(CW_REQUESTS, "acme", "200"),
        value(CW_RETRIES, "acme"),
        value(CW_THROTTLED, "acme"),
    )
    api = flaky([json_response(429, {}, {"Retry-After": "1"})], json_response(200, {"count": 2}))
    client, _, _ = make_client(api)  # type: ignore[arg-type]
    async with client:
        await client.count_agreements()
    after = (
        value(CW_REQUESTS, "acme", "429"),
        value(CW_REQUESTS, "acme", "200"),
        value(CW_RETRIES, "acme"),
        value(CW_THROTTLED, "acme"),
    )
    # one 429, then the 200 of companyinfo and of the retried call
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 2, 1, 1]


async def test_503_with_retry_after_waits_at_least_that_long() -> None:
    api = flaky([json_response(503, {}, {"Retry-After": "12"})], json_response(200, {"count": 4}))
    client, _, ft = make_client(api)  # type: ignore[arg-type]
    async with client:
        assert await client.count_agreements() == 4
    assert 12.0 in ft.sleeps
