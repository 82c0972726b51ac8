"""The contract of the poller's state port (`services.poller.store.PollerStore`).

One suite, run against the in-memory fake the unit tests use (`tests/unit/poller/test_poller_store_contract_in_memory.py`)
and against `PostgresPollerStore` on a real PostgreSQL (`tests/integration/poller/test_poller_store_contract_postgres.py`),
so that what the unit tests learn from the fake holds for the real adapter. A subclass provides the
`store` fixture; every test uses its own tenant ids.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.poller.changes import KnownAgreement, SnapshotDigest
from services.poller.store import Cursor, PollerStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def tenant() -> str:
    return f"it-contract-{uuid.uuid4().hex[:10]}"


def digest(seed: str) -> SnapshotDigest:
    half = uuid.uuid5(uuid.NAMESPACE_OID, seed).hex
    return SnapshotDigest(half, half[::-1])


def known(
    agreement_id: int, seed: str = "a", *, client: str = "250", additions: set[int] | None = None
) -> KnownAgreement:
    return KnownAgreement(
        agreement_id=agreement_id,
        client_id=client,
        digest=digest(f"{agreement_id}-{seed}"),
        psa_last_updated=T0 + timedelta(minutes=agreement_id),
        addition_ids=frozenset(additions) if additions is not None else frozenset(),
    )


class PollerStoreContract:
    """What every `PollerStore` guarantees."""

    async def test_a_tenant_never_seen_has_no_agreements_and_an_empty_cursor(
        self, store: PollerStore
    ) -> None:
        t = tenant()
        assert await store.known_agreements(t) == {}
        assert await store.get_cursor(t, "incremental:all") == Cursor("incremental:all")

    async def test_saved_snapshots_are_returned_as_saved(self, store: PollerStore) -> None:
        t = tenant()
        records = [known(1, additions={10, 11}), known(2, client="251")]
        await store.save_snapshots(t, records)
        assert await store.known_agreements(t) == {1: records[0], 2: records[1]}

    async def test_saving_an_agreement_again_replaces_its_snapshot(self, store: PollerStore) -> None:
        t = tenant()
        await store.save_snapshots(t, [known(1, "old", additions={10})])
        newer = known(1, "new", client="252", additions={11})
        await store.save_snapshots(t, [newer])
        assert await store.known_agreements(t) == {1: newer}

    async def test_known_agreements_can_be_asked_for_some_ids_only(self, store: PollerStore) -> None:
        t = tenant()
        records = [known(1), known(2), known(3)]
        await store.save_snapshots(t, records)
        assert await store.known_agreements(t, [3, 1, 99]) == {1: records[0], 3: records[2]}
        assert await store.known_agreements(t, []) == {}

    async def test_tenants_do_not_see_or_forget_each_others_agreements(self, store: PollerStore) -> None:
        first, second = tenant(), tenant()
        await store.save_snapshots(first, [known(1, "first")])
        await store.save_snapshots(second, [known(1, "second")])
        await store.forget_agreements(first, [1])
        assert await store.known_agreements(first) == {}
        assert await store.known_agreements(second) == {1: known(1, "second")}

    async def test_forgotten_agreements_are_gone_and_the_others_stay(self, store: PollerStore) -> None:
        t = tenant()
        await store.save_snapshots(t, [known(1), known(2), known(3)])
        await store.forget_agreements(t, [1, 3, 3, 42])
        await store.forget_agreements(t, [])
        assert await store.known_agreements(t) == {2: known(2)}

    async def test_a_snapshot_without_a_digest_is_not_remembered(self, store: PollerStore) -> None:
        t = tenant()
        await store.save_snapshots(t, [KnownAgreement(agreement_id=1, client_id="250", digest=None)])
        assert await store.known_agreements(t) == {}

    async def test_a_cursor_keeps_its_watermark_and_last_run_per_scope(self, store: PollerStore) -> None:
        t = tenant()
        await store.set_cursor(t, "incremental:all", T0, {"requests": 3})
        await store.set_cursor(t, "incremental:auto", T0 + timedelta(minutes=5), {"requests": 1})
        assert await store.get_cursor(t, "incremental:all") == Cursor("incremental:all", T0, {"requests": 3})
        auto = await store.get_cursor(t, "incremental:auto")
        assert auto.watermark == T0 + timedelta(minutes=5)

    async def test_a_watermark_never_moves_backwards_but_the_last_run_is_replaced(
        self, store: PollerStore
    ) -> None:
        t = tenant()
        await store.set_cursor(t, "incremental:all", T0 + timedelta(minutes=10), {"run": 1})
        await store.set_cursor(t, "incremental:all", T0, {"run": 2})
        assert await store.get_cursor(t, "incremental:all") == Cursor(
            "incremental:all", T0 + timedelta(minutes=10), {"run": 2}
        )
        await store.set_cursor(t, "incremental:all", T0 + timedelta(minutes=20), {"run": 3})
        assert (await store.get_cursor(t, "incremental:all")).watermark == T0 + timedelta(minutes=20)

    async def test_a_run_without_a_watermark_keeps_the_previous_one(self, store: PollerStore) -> None:
        t = tenant()
        await store.set_cursor(t, "reconcile", None, {"run": 0})
        assert await store.get_cursor(t, "reconcile") == Cursor("reconcile", None, {"run": 0})
        await store.set_cursor(t, "reconcile", T0, {"run": 1})
        await store.set_cursor(t, "reconcile", None, {"run": 2})
        assert await store.get_cursor(t, "reconcile") == Cursor("reconcile", T0, {"run": 2})
