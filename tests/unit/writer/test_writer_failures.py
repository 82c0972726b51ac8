"""How the writer treats failures (docs/writer.md "Failures"): data errors isolate one event, any
other exception of one event is dead-lettered on its second failure, environmental database errors
are retried (nothing dead-lettered, not ready, one retryable `sync.failed` per affected client),
and too many rejections in a row pause the writer. The store and producer are fakes here; the
same paths run against PostgreSQL in tests/integration/writer/test_writer_db_refusal.py."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from writer_factories import as_incoming, make_record, make_set_auto_sync, unique_tenant

from schemas.events import SyncFailed
from schemas.topics import CONTRACT_RECORDS, DLQ_ERROR_CLASS, DLQ_REASON, PSA_AGREEMENTS, SYNC_COMMANDS, parse
from services.writer.consumer import Writer
from services.writer.handlers import BatchPlan, BatchResult, OutboxTopics, outbox_messages, plan_batch
from services.writer.settings import WriterSettings
from services.writer.store import (
    StoreRefused,
    StoreRejected,
    StoreUnavailable,
    describe_db_error,
    is_data_error,
    store_error,
)


class FakeStore:
    """Applies a plan unless `fail(plan)` returns an exception to raise; counts attempts."""

    def __init__(self, fail: Any) -> None:
        self.fail = fail
        self.attempts = 0
        self.applied: list[Any] = []

    async def apply(self, plan: BatchPlan, outbox: OutboxTopics | None = None) -> BatchResult:
        self.attempts += 1
        error = self.fail(plan)
        if error is not None:
            raise error
        self.applied.extend(a.event.id for a in plan.events)
        return BatchResult(fresh=len(plan.events), dead_letters=list(plan.dead_letters))


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def send_and_wait(self, topic: str, value: bytes, **_: Any) -> None:
        self.sent.append((topic, value))


def writer(store: FakeStore, **overrides: Any) -> tuple[Writer, FakeProducer]:
    settings = WriterSettings(retry_initial_s=0.01, retry_max_s=0.02, **overrides)
    producer = FakeProducer()
    return Writer(settings, None, producer, store), producer  # type: ignore[arg-type]


def plan_of(*events: Any) -> BatchPlan:
    return plan_batch([as_incoming(e, CONTRACT_RECORDS) for e in events])


def test_only_data_errors_and_the_ownership_guard_blame_the_data() -> None:
    assert is_data_error("23514") and is_data_error("22003") and is_data_error("CS403")
    for sqlstate in ("42501", "25006", "XX000", "53100", "57P01", "40001", None):
        assert not is_data_error(sqlstate)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (psycopg.errors.InsufficientPrivilege(), StoreRefused),
        (psycopg.errors.ReadOnlySqlTransaction(), StoreRefused),
        (psycopg.errors.InternalError_(), StoreRefused),
        (psycopg.errors.DiskFull(), StoreUnavailable),
        (psycopg.errors.AdminShutdown(), StoreUnavailable),
        (psycopg.errors.CheckViolation(), StoreRejected),
        (psycopg.errors.NumericValueOutOfRange(), StoreRejected),
        (psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"), StoreRejected),
    ],
)
def test_driver_errors_become_retried_or_isolating_store_errors(error: psycopg.Error, kind: type) -> None:
    converted = store_error(error)
    assert type(converted) is kind
    assert converted.error_class == type(error).__name__
    if kind is not StoreRejected:
        assert isinstance(converted, StoreUnavailable)  # retried, never dead-lettered


def test_a_database_error_is_described_by_sqlstate_without_its_message() -> None:
    error = psycopg.errors.CheckViolation("Failing row contains (cw:acme:agreement:1, secret-name, 1500.00)")
    text = describe_db_error(error)
    assert "23514" in text and "CheckViolation" in text
    assert "Failing row" not in text and "secret-name" not in text


async def until(condition: Any, timeout_s: float = 5.0) -> None:
    """Poll `condition()` until true (the fakes have no event to wait on)."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_a_refused_database_dead_letters_nothing_is_not_ready_and_tells_each_client_once() -> None:
    tenant = unique_tenant()
    refusing = {"on": True}
    store = FakeStore(
        lambda plan: StoreRefused("InsufficientPrivilege (SQLSTATE 42501)") if refusing["on"] else None
    )
    w, producer = writer(store)
    plan = plan_of(
        make_record(tenant, "100", 1), make_record(tenant, "100", 2), make_record(tenant, "200", 3)
    )
    task = asyncio.create_task(w.apply_plan(plan))
    await until(lambda: store.attempts >= 4)
    assert not w.is_applying()
    failed = [parse("sync.events.v1", value) for _, value in producer.sent]
    assert sorted((f.data.client_id, f.data.retryable) for f in failed if isinstance(f, SyncFailed)) == [
        ("100", True),
        ("200", True),
    ]
    refusing["on"] = False
    result = await asyncio.wait_for(task, 5)
    assert w.is_applying()
    assert result.dead_letters == [] and result.rejected_events == []
    assert len(store.applied) == 3


async def test_data_errors_isolate_the_bad_event_and_the_rest_applies() -> None:
    tenant = unique_tenant()
    bad = make_record(tenant, "100", 2)
    store = FakeStore(
        lambda plan: (
            StoreRejected("CheckViolation (SQLSTATE 23514)", "CheckViolation")
            if any(a.event.id == bad.id for a in plan.events)
            else None
        )
    )
    w, _ = writer(store)
    result = await w.apply_plan(plan_of(make_record(tenant, "100", 1), bad, make_record(tenant, "100", 3)))
    assert [(d.reason, d.error_class) for d in result.dead_letters] == [("db_rejected", "CheckViolation")]
    assert len(store.applied) == 2 and bad.id not in store.applied
    headers = dict(outbox_messages(result.dead_letters, [], OutboxTopics("e", "d"))[0].headers)
    assert headers[DLQ_REASON] == b"db_rejected" and headers[DLQ_ERROR_CLASS] == b"CheckViolation"


async def test_after_n_rejections_in_a_row_the_writer_pauses_instead_of_dead_lettering_more() -> None:
    tenant = unique_tenant()
    rejecting = {"on": True}
    store = FakeStore(
        lambda plan: (
            StoreRejected("CheckViolation (SQLSTATE 23514)", "CheckViolation")
            if rejecting["on"] and plan.events
            else None
        )
    )
    w, _ = writer(store, rejections_before_pause=3)
    plan = plan_of(*(make_record(tenant, "100", i) for i in range(1, 9)))
    task = asyncio.create_task(w.apply_plan(plan))
    await until(lambda: not w.is_applying())
    await asyncio.sleep(0.1)
    assert not task.done()  # paused: retrying the 4th refused event, not dead-lettering it
    rejecting["on"] = False  # e.g. the constraint that refused everything was fixed
    result = await asyncio.wait_for(task, 5)
    assert len(result.dead_letters) == 3
    assert len(store.applied) == 5
    assert w.is_applying()


async def test_any_other_exception_of_one_event_dead_letters_it_on_its_second_failure() -> None:
    tenant = unique_tenant()
    poison = make_record(tenant, "100", 2)
    tries: list[int] = []

    def fail(plan: BatchPlan) -> Exception | None:
        if any(a.event.id == poison.id for a in plan.events):
            tries.append(len(plan.events))
            return RecursionError("maximum recursion depth exceeded")
        return None

    store = FakeStore(fail)
    w, _ = writer(store)
    result = await w.apply_plan(plan_of(make_record(tenant, "100", 1), poison, make_record(tenant, "100", 3)))
    assert [(d.reason, d.error_class) for d in result.dead_letters] == [
        ("too_deeply_nested", "RecursionError")
    ]
    assert tries.count(1) == 2  # alone: tried twice, then given up
    assert len(store.applied) == 2


def test_an_exception_planning_one_message_dead_letters_it_and_the_batch_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import services.writer.handlers as handlers

    tenant = unique_tenant()
    good, poison = make_record(tenant, "100", 1), make_record(tenant, "100", 2)
    real = handlers.decode_mapped

    def decode_mapped(raw: bytes) -> Any:
        if str(poison.id).encode() in raw:
            raise KeyError("a bug")
        return real(raw)

    monkeypatch.setattr(handlers, "decode_mapped", decode_mapped)
    plan = plan_of(good, poison)
    assert [a.event.id for a in plan.events] == [good.id]
    assert [(d.reason, d.error_class) for d in plan.dead_letters] == [("internal_error", "KeyError")]


@pytest.mark.parametrize("topic", [CONTRACT_RECORDS, PSA_AGREEMENTS, SYNC_COMMANDS])
@pytest.mark.parametrize("depth", [4_000, 100_000])
def test_deeply_nested_json_on_any_input_topic_never_raises(topic: str, depth: int) -> None:
    raw = b'{"data":' + b"[" * depth + b"]" * depth + b"}"
    plan = plan_batch([as_incoming(None, topic, value=raw, key=b"acme:1")])
    assert plan.events == []
    if topic == CONTRACT_RECORDS:
        assert [d.reason for d in plan.dead_letters] == ["malformed_json"]
    else:
        assert plan.skipped_unparseable == 1  # the mapper dead-letters and answers it


def test_a_record_without_a_kafka_key_is_dead_lettered_as_key_mismatch() -> None:
    record = make_record(unique_tenant(), "100", 1)
    message = as_incoming(record, CONTRACT_RECORDS)._replace(key=None)
    plan = plan_batch([message])
    assert plan.events == []
    assert [d.reason for d in plan.dead_letters] == ["key_mismatch"]
    assert "no Kafka key" in plan.dead_letters[0].error


def test_a_command_or_psa_event_without_a_kafka_key_is_never_applied() -> None:
    command = make_set_auto_sync(unique_tenant(), "100", True)
    plan = plan_batch([as_incoming(command, SYNC_COMMANDS)._replace(key=None)])
    assert plan.events == [] and plan.skipped_unparseable == 1  # the mapper dead-letters it
