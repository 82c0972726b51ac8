"""Pure parts of the gateway: rate limiting, SSE positions and filtering, catalog diffs, outcomes."""

from __future__ import annotations

import json

from services.gateway.catalog_cache import CatalogCache
from services.gateway.catalog_diff import field_changes
from services.gateway.command_store import request_hash, summarise
from services.gateway.event_stream import StreamFilter, format_position, parse_last_event_id
from services.gateway.ratelimit import TenantRateLimiter


def test_the_rate_limiter_allows_the_burst_then_answers_the_wait_per_tenant() -> None:
    now = [0.0]
    limiter = TenantRateLimiter(rate=2, burst=3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a") == 1
    assert limiter.take("b") == 0  # another tenant has its own bucket
    now[0] = 0.5
    assert limiter.take("a") == 0


def test_stream_positions_round_trip_and_foreign_ids_are_ignored() -> None:
    assert parse_last_event_id(format_position({0: 5, 2: 7})) == {0: 5, 2: 7}
    assert parse_last_event_id("garbage") is None and parse_last_event_id(None) is None


def test_the_stream_filter_passes_only_the_tenant_and_its_scoped_clients() -> None:
    def event(tenant: str, client: str) -> tuple[bytes, bytes]:
        value = {"type": "t", "tenantid": tenant, "data": {"tenant_id": tenant, "client_id": client}}
        return f"{tenant}:{client}".encode(), json.dumps(value).encode()

    everything = StreamFilter("acme")
    assert everything.accepts(*event("acme", "1")) is not None
    assert everything.accepts(*event("acme-two", "1")) is None  # a tenant id that shares a prefix
    assert everything.accepts(b"acme:1", event("other", "1")[1]) is None  # key and body disagree
    scoped = StreamFilter("acme", frozenset({"1"}))
    assert scoped.accepts(*event("acme", "1")) is not None
    assert scoped.accepts(*event("acme", "*")) is not None
    assert scoped.accepts(*event("acme", "2")) is None


def test_the_catalog_diff_names_what_a_sync_would_change() -> None:
    contract = {"psa_name": "Old", "psa_start_date": "2024-01-01", "psa_end_date": None,
                "billing_amount": "100.00", "billing_currency": "USD", "billing_cycle": "monthly",
                "status": "active"}  # fmt: skip
    summary = {"bill_amount": "120", "currency": "USD", "billing_cycle": "Quarterly",
               "start_date": "2024-01-01T00:00:00Z", "cancelled": True}  # fmt: skip
    changes = field_changes("agreement", "New", summary, contract)
    assert [c["field"] for c in changes] == ["name", "billing_cost.amount", "billing_cycle", "status"]
    assert changes[1] == {"field": "billing_cost.amount", "contract_value": "100.00", "psa_value": "120"}
    same = {
        "bill_amount": "100",
        "currency": "USD",
        "billing_cycle": "Monthly",
        "start_date": "2024-01-01T00:00:00Z",
    }
    assert field_changes("agreement", "Old", same, contract) == []


def test_command_outcomes_summarise_rejections_first_and_sum_counts() -> None:
    applied = {"type": "sync.contracts.applied", "data": {"created": 2, "updated": 1}}
    assert summarise([]) == ("pending", None, None, {})
    assert summarise([applied, applied])[0] == "applied"
    assert summarise([applied, applied])[3] == {"created": 4, "updated": 2}
    rejected = {"type": "sync.command.rejected", "data": {"reason": "auto_sync_enabled", "message": "m"}}
    assert summarise([applied, rejected])[:3] == ("rejected", "auto_sync_enabled", "m")


def test_the_request_fingerprint_ignores_key_order_but_not_values() -> None:
    assert request_hash("POST", "/x", {"a": 1, "b": 2}) == request_hash("POST", "/x", {"b": 2, "a": 1})
    assert request_hash("POST", "/x", {"a": 1}) != request_hash("POST", "/x", {"a": 2})
    assert request_hash("POST", "/x", {"a": 1}) != request_hash("POST", "/y", {"a": 1})


def test_the_catalog_cache_answers_only_the_version_it_stored_and_drops_the_least_recently_used() -> None:
    cache = CatalogCache(max_entries=2)
    a, b, c = ("t", "1", ("new",)), ("t", "2", ("new",)), ("u", "1", ("new",))
    cache.put(a, "v1", b"A")
    assert cache.get(a, "v1") == b"A"
    assert cache.get(a, "v2") is None, "another version of the read model is never answered"
    assert cache.get(("t", "1", ("new", "updated")), "v1") is None
    cache.put(b, "v1", b"B")
    assert cache.get(a, "v1") == b"A"  # a is now the most recently used
    cache.put(c, "v1", b"C")
    assert len(cache) == 2 and cache.get(b, "v1") is None and cache.get(a, "v1") == b"A"
    off = CatalogCache(max_entries=0)
    off.put(a, "v1", b"A")
    assert off.get(a, "v1") is None and len(off) == 0
