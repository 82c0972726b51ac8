"""The callback endpoint and the hints it feeds stay bounded whatever the senders do, and any replica
answers for any configured tenant (`services.poller.callbacks`, `TenantPoller` hints, `handle_command`).
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from poller_fakes import InMemoryStore, RecordingPublisher, make_simulator, sim_client

from devtools.cwsim.callbacks import sign
from schemas.commands import RefreshCommand, RefreshData
from schemas.envelope import utcnow
from services.poller import callbacks as callbacks_module
from services.poller import hints as hints_module
from services.poller.app import handle_command, hint_forwarder
from services.poller.callbacks import KEY_CACHE_SIZE, MAX_BODY_BYTES, KeyFetcher, build_app
from services.poller.service import TenantPoller
from services.poller.tenants import TenantConfig, parse_config

KEY = "signing-key-for-tests"
HOST = "api-na.myconnectwise.net"


def key_url(company: str = "acme", key_id: str = "abc") -> str:
    return f"https://{HOST}/v2025_1//system/callbackkey/index.rails?companyName={company}&id={key_id}"


def tenant(tenant_id: str = "acme", company: str = "acme") -> TenantConfig:
    creds = {"public_key": {"env": "A"}, "private_key": {"env": "B"}, "client_id": {"env": "C"}}
    return parse_config(
        {"tenants": [{"id": tenant_id, "site": HOST, "company_id": company, "credentials": creds}]}
    ).tenants[0]


def make_poller(config: TenantConfig) -> TenantPoller:
    return TenantPoller(config, sim_client(make_simulator()), RecordingPublisher(), InMemoryStore())


def payload(agreement_id: int, url: str | None = None, action: str = "updated", pad: int = 0) -> bytes:
    body: dict[str, Any] = {
        "Action": action,
        "Type": "agreement",
        "ID": agreement_id,
        "Metadata": {"key_url": url or key_url()},
    }
    if pad:
        body["Entity"] = "x" * pad
    return json.dumps(body).encode()


class KeyServer:
    def __init__(self) -> None:
        self.fetched: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.fetched.append(str(request.url))
        return httpx.Response(200, json={"signing_key": KEY})


def app_for(pollers: dict[str, TenantPoller], keys: KeyServer, **kwargs: Any) -> httpx.AsyncClient:
    fetcher = KeyFetcher(httpx.AsyncClient(transport=httpx.MockTransport(keys)))
    client_ids = {t: "client-guid" for t in kwargs.get("tenants", pollers)}
    app = build_app(pollers, fetcher, client_ids, **kwargs)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://poller")


async def post(http: httpx.AsyncClient, tenant_id: str, body: bytes, key: str = KEY) -> int:
    response = await http.post(
        f"/callbacks/{tenant_id}", content=body, headers={"x-content-signature": sign(body, key)}
    )
    return response.status_code


async def test_a_key_url_of_another_company_on_the_same_host_is_refused_without_a_fetch() -> None:
    keys, poller = KeyServer(), make_poller(tenant())
    async with app_for({"acme": poller}, keys) as http:
        other = await post(http, "acme", payload(7, key_url(company="mallory")))
        wrong_path = await post(http, "acme", payload(8, f"https://{HOST}/anything?companyName=acme"))
        ours = await post(http, "acme", payload(9))
    assert (other, wrong_path, ours) == (401, 401, 202)
    assert keys.fetched == [key_url()]
    await poller.client.aclose()


async def test_a_body_over_64_kb_is_refused_before_it_is_parsed() -> None:
    keys, poller = KeyServer(), make_poller(tenant())
    async with app_for({"acme": poller}, keys) as http:
        status = await post(http, "acme", payload(7, pad=MAX_BODY_BYTES))
    assert status == 413
    assert keys.fetched == [] and poller.hints_waiting == 0
    await poller.client.aclose()


async def test_a_flood_of_forged_callbacks_fetches_the_key_once_and_is_rate_limited_per_source() -> None:
    keys, poller = KeyServer(), make_poller(tenant())
    async with app_for({"acme": poller}, keys) as http:
        statuses = [await post(http, "acme", payload(n), key="forged") for n in range(1, 101)]
    assert set(statuses) == {401, 429}
    assert statuses.count(429) >= 50  # one source: a burst of 40, then 20 per second
    assert len(keys.fetched) == 1  # bad signatures do not trigger fetches within the interval
    assert poller.hints_waiting == 0
    await poller.client.aclose()


async def test_the_key_cache_is_bounded() -> None:
    keys = KeyServer()
    fetcher = KeyFetcher(httpx.AsyncClient(transport=httpx.MockTransport(keys)))
    for n in range(KEY_CACHE_SIZE + 50):
        assert await fetcher.key(key_url(key_id=str(n)), "client-guid") == KEY
    assert len(fetcher._cache) == KEY_CACHE_SIZE
    assert await fetcher.key(key_url(key_id=str(KEY_CACHE_SIZE + 49)), "client-guid") == KEY
    assert fetcher.fetches == KEY_CACHE_SIZE + 50  # the newest stayed cached


async def test_genuine_callbacks_coalesce_per_agreement_into_a_bounded_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(callbacks_module, "SOURCE_BURST", 10_000.0)
    monkeypatch.setattr(callbacks_module, "TENANT_BURST", 10_000.0)
    monkeypatch.setattr(hints_module, "MAX_RECHECK_HINTS", 5)
    keys, poller = KeyServer(), make_poller(tenant())
    async with app_for({"acme": poller}, keys) as http:
        for _ in range(50):
            assert await post(http, "acme", payload(7)) == 202
        assert await post(http, "acme", payload(7, action="deleted")) == 202
        for n in range(100, 110):
            await post(http, "acme", payload(n))
    assert poller.hints_waiting == 5
    assert poller.hints.rechecks[7] is True  # one hint for 51 callbacks, `deleted` kept
    assert poller.hints_dropped == 6
    await poller.client.aclose()


async def test_scheduled_polls_run_between_hints_instead_of_after_all_of_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    poller = make_poller(tenant())
    rechecked: list[int] = []
    polled_after: list[int] = []
    stop = asyncio.Event()

    async def recheck(agreement_id: int, *, deleted: bool = False) -> None:
        rechecked.append(agreement_id)

    async def poll(scope: str = "incremental:all") -> None:
        polled_after.append(len(rechecked))
        stop.set()

    async def quiet() -> None:
        return None

    monkeypatch.setattr(poller, "recheck_agreement", recheck)
    monkeypatch.setattr(poller, "poll_once", poll)
    monkeypatch.setattr(poller, "heartbeat", quiet)
    for n in range(1, 201):
        poller.request_recheck(n)
    await asyncio.wait_for(poller.run_forever(stop), 10)
    assert polled_after and polled_after[0] < 200  # the due poll did not wait for 200 hints
    await poller.client.aclose()


async def test_a_refreshs_age_is_its_receive_time_not_the_senders_clock() -> None:
    poller = make_poller(tenant())
    max_age = timedelta(minutes=10)
    future = RefreshCommand.build(
        RefreshData(tenant_id="acme", client_id="250", requested_by="ui"), source="ui"
    )
    future = future.model_copy(update={"time": utcnow() + timedelta(days=365)})  # a skewed sender
    old_clock = future.model_copy(update={"time": utcnow() - timedelta(days=1)})
    received_long_ago = utcnow() - timedelta(hours=1)
    assert await handle_command(
        future.to_bytes(), {"acme": poller}, max_age, key=future.key, received_at=received_long_ago
    ) == ("skipped: stale refresh")
    assert await handle_command(
        old_clock.to_bytes(), {"acme": poller}, max_age, key=old_clock.key, received_at=utcnow()
    ) == ("refresh queued")
    await poller.client.aclose()


async def test_with_two_shards_a_callback_reaching_the_other_replica_gets_to_the_owning_shard() -> None:
    configs = {"t1": tenant("t1"), "t2": tenant("t2")}
    shard_a, shard_b = {"t1": make_poller(configs["t1"])}, {"t2": make_poller(configs["t2"])}
    bus = RecordingPublisher()  # sync.commands.v1 between the replicas
    keys = KeyServer()
    forward = hint_forwarder(bus, "sync.commands.v1")
    replica_a = app_for(shard_a, keys, tenants=configs, forward=forward)
    replica_b = app_for(shard_b, keys, tenants=configs, forward=forward)
    async with replica_a as a, replica_b as b:
        assert await post(a, "t2", payload(42, action="deleted")) == 202  # t2 is polled by shard b
        assert await post(b, "t2", payload(43)) == 202  # its own: queued directly
        assert await post(a, "t3", payload(44)) == 404  # not configured anywhere
        assert await post(a, "t2", payload(45), key="forged") == 401  # never forwarded
    [(topic, hint)] = bus.sent
    assert topic == "sync.commands.v1" and hint.key == b"t2:*"
    configured = frozenset(configs)
    for pollers in (shard_a, shard_b):  # every shard's command consumer reads it; the owner acts
        await handle_command(hint.to_bytes(), pollers, timedelta(minutes=10), configured, key=hint.key)
    assert shard_b["t2"].hints.rechecks == {43: False, 42: True}
    assert shard_a["t1"].hints_waiting == 0
    for pollers in (shard_a, shard_b):
        for poller in pollers.values():
            await poller.client.aclose()
