"""The writer's Kafka loop: poll a batch, apply it in one database transaction, publish what it
caused, then commit the offsets.

Guarantees:
- at-least-once consumption with exactly-once effects: offsets are committed only after the
  database commit; a replayed message is skipped by its event id (`processed_events`);
- no lost sync events or dead letters (transactional outbox): a batch's outgoing messages are
  written to `writer_outbox` in the batch's transaction, published from there (acks=all,
  idempotent producer) and deleted once acknowledged (in the next batch's transaction, or
  directly when idle). Messages left by a crash or a failed
  publish are published first, in order: at start-up (every row for this writer's output
  topics) and before the next batch's. Delivery is at-least-once: a message acknowledged but not
  yet deleted when the process died is published again, with the same CloudEvent `id`;
- PostgreSQL unavailable: the same batch is retried with exponential back-off (tenacity) until
  it commits; nothing is committed to Kafka meanwhile, so nothing is lost;
- a message that does not parse, or whose data the database refuses (SQLSTATE classes 22 and 23,
  the ownership guard's CS403), goes to the dead-letter topic with the reason and error class (plus
  a `sync.failed` event) while the rest of its batch applies: a refused batch is split in halves
  until the offending event is alone. Any other exception while applying (a bug, a value the code
  cannot handle) is isolated the same way; the lone event is tried twice (`PoisonGuard`) and then
  dead-lettered as `internal_error`, never retried forever;
- the database failing for reasons that are not the data (lost connection, revoked grant, read-only,
  internal or resource errors, shutdown: `StoreUnavailable`/`StoreRefused`): nothing is
  dead-lettered; the batch is retried with back-off, `/readyz` reports `applying: false`, and each
  affected tenant's clients get one `sync.failed` (`retryable: true`) per outage. After
  `rejections_before_pause` events in a row refused as bad data, the writer pauses the same way
  (retrying the next refused event) instead of dead-lettering more;
- error texts (logs, `cs-dlq-error`, `sync.failed`) name the SQLSTATE, constraint, table and
  column, never row data (`store.describe_db_error`);
- batches are pipelined one deep on the event loop: while PostgreSQL works on batch k (psycopg
  async), batch k+1 is polled and parsed in slices; batches commit in order, and batch k's
  messages are published and its offsets committed while batch k+1's transaction runs. (A worker thread
  was tried and measured worse: the parsing and applying threads mostly waited on each other
  for the GIL.)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from prometheus_client import Counter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from schemas.topics import DLQ_REASON
from services.common.kafka import CONTENT_TYPE_HEADER
from services.common.metrics import (
    APPLY_SECONDS,
    BATCH_SIZE,
    CONSUMER_LAG,
    DEADLETTERED,
    EVENTS_CONSUMED,
    EVENTS_PRODUCED,
)
from services.common.poison import PoisonGuard, failure_of, is_environmental
from services.writer.handlers import (
    BatchPlan,
    BatchResult,
    ClientKey,
    DeadLetter,
    Incoming,
    OutboxMessage,
    OutboxTopics,
    client_of,
    database_failed_event,
    plan_batch,
)
from services.writer.settings import WriterSettings
from services.writer.store import StoreRejected, StoreUnavailable
from services.writer.store_port import WriterStore

log = logging.getLogger(__name__)

IN_FLIGHT_POLL_MS = 10
"""While a batch is being applied and nothing new arrived, poll in steps this long."""
PLAN_SLICE = 200
"""Messages parsed between two yields to the event loop: small enough (~2 ms) that the batch being
applied sends its next statement soon after PostgreSQL answered the previous one."""

MESSAGES = Counter("writer_messages_total", "Messages consumed by the writer", ["topic"])
APPLIED = Counter("writer_contracts_total", "Contract record outcomes", ["outcome"])
DEAD_LETTERS = Counter("writer_dead_letters_total", "Messages sent to the dead-letter topic", ["reason"])
DUPLICATES = Counter("writer_duplicates_total", "Events skipped because they were already applied")
SKIPPED = Counter(
    "writer_skipped_unparseable_total",
    "Messages the writer refuses on topics whose dead letters the mapper owns (unreadable, keyed as"
    " another client, of an unknown tenant): skipped here, dead-lettered by the mapper",
)
OUTBOX_FAILURES = Counter(
    "writer_outbox_publish_failures_total",
    "Attempts to publish outbox messages that Kafka did not acknowledge",
)
DB_RETRIES = Counter(
    "writer_db_retries_total", "Batch attempts that failed because PostgreSQL was unavailable"
)
SERVICE = "writer"
"""`service` label of the shared metrics (services/common/metrics.py), which the dashboard reads."""


def _message_type(message: OutboxMessage) -> str:
    """The CloudEvent type of an outgoing sync event, `deadletter` for a dead letter."""
    if any(name == DLQ_REASON for name, _ in message.headers):
        return "deadletter"
    if message.value and message.value.startswith(b"{"):
        start = message.value.find(b'"type":"')
        if start != -1:
            end = message.value.find(b'"', start + 8)
            return message.value[start + 8 : end].decode(errors="replace")
    return "deadletter"


def incoming(record: ConsumerRecord[Any, Any]) -> Incoming:
    return Incoming(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=_headers(record.headers),
    )


def _headers(headers: Sequence[tuple[str, bytes]] | None) -> tuple[tuple[str, bytes], ...]:
    return tuple((k, bytes(v)) for k, v in headers) if headers else ()


def incoming_batch(topic: str, partition: int, records: Sequence[ConsumerRecord[Any, Any]]) -> list[Incoming]:
    """`incoming` for the records of one partition (built as plain tuples: the per-message cost of
    the batch's bookkeeping matters at tens of thousands of messages per second)."""
    new = tuple.__new__
    return [
        new(Incoming, (topic, partition, r.offset, r.key, r.value, _headers(r.headers) if r.headers else ()))
        for r in records
    ]


def next_offsets(messages: Sequence[Incoming]) -> dict[TopicPartition, int]:
    """The offsets to commit after `messages`: per partition, the highest offset + 1."""
    offsets: dict[TopicPartition, int] = {}
    for message in messages:
        tp = TopicPartition(message.topic, message.partition)
        offsets[tp] = max(offsets.get(tp, 0), message.offset + 1)
    return offsets


def merge_results(into: BatchResult, other: BatchResult) -> BatchResult:
    for key, counts in other.applied.items():
        held = into.applied.setdefault(key, type(counts)())
        held.created += counts.created
        held.updated += counts.updated
        held.unchanged += counts.unchanged
        held.retired += counts.retired
    into.last_synced_at.update(other.last_synced_at)
    into.catalog_changed.update(other.catalog_changed)
    into.edits.extend(other.edits)
    into.auto_sync.update(other.auto_sync)
    into.duplicates += other.duplicates
    into.fresh += other.fresh
    into.rejected_events.extend(other.rejected_events)
    into.dead_letters.extend(other.dead_letters)
    into.outbox.extend(other.outbox)
    return into


@dataclass
class _Pending:
    task: asyncio.Task[BatchResult]
    plan: BatchPlan
    offsets: dict[TopicPartition, int]
    started: float = field(default_factory=time.perf_counter)


class Writer:
    """One writer instance: a consumer, a producer and a store. `run()` until `stop()`."""

    def __init__(
        self,
        settings: WriterSettings,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        store: WriterStore,
        *,
        tenants: frozenset[str] | None = None,
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self.producer = producer
        self.store = store
        self._stopping = asyncio.Event()
        self._kinds = settings.topic_kinds()
        self._tenants = tenants
        """Configured tenant ids (`services.common.tenants`); None = unknown-tenant checks off."""
        self.outbox_topics = OutboxTopics(settings.events_topic, settings.deadletter_topic)
        self._unsent: list[OutboxMessage] = []
        """Committed outbox messages not yet acknowledged by Kafka (published before anything newer)."""
        self._undeleted: list[UUID] = []
        """Acknowledged outbox messages whose rows could not be deleted yet."""
        self.batches = 0
        self.applied_messages = 0
        self._polled_offsets: dict[TopicPartition, int] = {}
        self._polled_counts: dict[str, int] = {}
        self._poison = PoisonGuard()
        self._rejections_in_a_row = 0
        """Events refused by PostgreSQL as bad data since the last batch that applied something."""
        self._failing: set[ClientKey] | None = None
        """While batches fail for reasons that are not their data: the clients told so far."""
        self.first_batch_at: float | None = None
        """`time.perf_counter()` when the first non-empty batch was polled (for throughput figures)."""

    def stop(self) -> None:
        self._stopping.set()

    # -- polling ----------------------------------------------------------------------------
    async def poll_batch(self, in_flight: asyncio.Task[Any] | None = None) -> list[Incoming]:
        """Up to `batch_max_records` messages, or what arrived within `batch_max_ms` of the first;
        without waiting for that deadline once every assigned partition has been read up to its
        high watermark (nothing more to wait for: a drained backlog or a quiet stream is applied
        at once, while a stream faster than the writer still fills whole batches). With `in_flight`
        (the batch being applied), returns empty as soon as that is done while nothing arrived, so
        its messages are published and its offsets committed without waiting for the poll."""
        limit = self.settings.batch_max_records
        out: list[Incoming] = []
        # the batch's next offsets and per-topic counts, collected per partition (not per message)
        offsets: dict[TopicPartition, int] = {}
        counts: dict[str, int] = {}
        self._polled_offsets, self._polled_counts = offsets, counts
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while len(out) < limit and not self._stopping.is_set():
            if deadline is None:
                timeout_ms = self.settings.batch_max_ms
                if in_flight is not None:
                    if in_flight.done():
                        break
                    timeout_ms = min(timeout_ms, IN_FLIGHT_POLL_MS)
            else:
                timeout_ms = int((deadline - loop.time()) * 1000)
                if timeout_ms <= 0:
                    break
            got = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=limit - len(out))
            if not got:
                if out or (deadline is None and in_flight is None):
                    break
                continue
            if deadline is None:
                deadline = loop.time() + self.settings.batch_max_ms / 1000
            for tp, records in got.items():
                out.extend(incoming_batch(tp.topic, tp.partition, records))
                offsets[tp] = max(offsets.get(tp, 0), records[-1].offset + 1)
                counts[tp.topic] = counts.get(tp.topic, 0) + len(records)
            if len(out) < limit and await self._caught_up():
                break
        return out

    async def _caught_up(self) -> bool:
        """True when every assigned partition's position has reached its high watermark as of the
        last fetch response (False while any is unknown, e.g. right after an assignment)."""
        try:
            for tp in self.consumer.assignment():
                highwater = self.consumer.highwater(tp)
                if highwater is None or await self.consumer.position(tp) < highwater:
                    return False
        except (IllegalStateError, KafkaError):
            return False  # a rebalance is under way: keep the deadline
        return True

    # -- applying ---------------------------------------------------------------------------
    def is_applying(self) -> bool:
        """Readiness: False while a batch is being retried because the database fails or refuses it,
        or while the writer is paused after too many rejections in a row."""
        return self._failing is None

    async def apply_plan(self, plan: BatchPlan) -> BatchResult:
        """Apply with retries while PostgreSQL is unavailable or refuses the batch for reasons
        that are not its data; isolate the events whose data it refuses, and the event that makes
        applying fail in any other way (see the module docstring)."""
        try:
            result = await self._apply_retrying(plan)
        except StoreRejected as error:
            return await self._isolate(
                plan, "db_rejected", str(error), error.error_class or type(error).__name__, error
            )
        except StoreUnavailable:
            raise  # only when shutting down: the batch stays uncommitted
        except Exception as error:
            if is_environmental(error):
                raise
            failure = failure_of(error)
            log.error(
                "applying a batch failed unexpectedly",
                exc_info=True,
                extra={"events": len(plan.events), "error_class": failure.error_class},
            )
            return await self._isolate(plan, failure.reason, failure.error, failure.error_class, None)
        if result.fresh:
            self._rejections_in_a_row = 0
        return result

    async def _isolate(
        self,
        plan: BatchPlan,
        reason: str,
        error_text: str,
        error_class: str,
        rejected: StoreRejected | None,
    ) -> BatchResult:
        """Split a failed plan in halves until the failing event is alone, then dead-letter it:
        at once when the database refused its data (unless `rejections_before_pause` events in a
        row were refused: then pause), on its second failure otherwise (`PoisonGuard`)."""
        if len(plan.events) > 1:
            middle = len(plan.events) // 2
            first = BatchPlan(
                events=plan.events[:middle], dead_letters=plan.dead_letters, outbox_done=plan.outbox_done
            )
            second = BatchPlan(events=plan.events[middle:])
            return merge_results(await self.apply_plan(first), await self.apply_plan(second))
        if not plan.events or (
            rejected is not None and self._rejections_in_a_row >= self.settings.rejections_before_pause
        ):
            return await self._paused(plan, error_text)
        applicable = plan.events[0]
        message = applicable.message
        if rejected is None and not self._poison.failed((message.topic, message.partition, message.offset)):
            return await self.apply_plan(plan)  # once more: a second failure dead-letters it
        self._poison.forget((message.topic, message.partition, message.offset))
        if rejected is not None:
            self._rejections_in_a_row += 1
        log.warning(
            "dead-lettering an event the writer cannot apply",
            extra={"event_id": str(applicable.event.id), "reason": reason, "error": error_text[:500]},
        )
        letter = DeadLetter(
            message,
            reason,
            error_text[:2000],
            client_of(applicable.event),
            str(applicable.event.id),
            error_class,
        )
        # the dead letters commit (client status + outbox) in a transaction of their own
        result = await self._apply_retrying(
            BatchPlan(dead_letters=[*plan.dead_letters, letter], outbox_done=plan.outbox_done)
        )
        result.rejected_events.append((applicable.event.id, reason, error_text[:2000]))
        return result

    async def _paused(self, plan: BatchPlan, error_text: str) -> BatchResult:
        """Retry `plan` with back-off until the database takes it: too many events in a row were
        refused as bad data, so the fault is more likely the database's (a migration, a trigger)
        than every message's. Not ready meanwhile; the affected clients are told once."""
        log.error(
            "writer paused: PostgreSQL refused %d events in a row; retrying instead of dead-lettering more",
            self._rejections_in_a_row,
            extra={"error": error_text[:500]},
        )
        delay = self.settings.retry_initial_s
        while True:
            if self._stopping.is_set():
                raise StoreUnavailable("paused writer shutting down")
            await self._failing_since(plan, error_text)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.retry_max_s)
            try:
                result = await self._apply_retrying(plan)
            except Exception as error:
                if is_environmental(error):
                    raise
                error_text = str(error) if isinstance(error, StoreRejected) else failure_of(error).error
                continue
            self._rejections_in_a_row = 0
            return result

    async def _failing_since(self, plan: BatchPlan, error_text: str) -> None:
        """Mark the writer not ready and send each affected client one retryable `sync.failed`
        per outage (directly: the database cannot take the outbox now; best effort)."""
        if self._failing is None:
            self._failing = set()
            log.error(
                "PostgreSQL fails the batch; not ready until it applies", extra={"error": error_text[:500]}
            )
        clients = {client_of(a.event) for a in plan.events}
        clients.update(d.client for d in plan.dead_letters if d.client is not None)
        new = sorted(clients - self._failing)
        if not new:
            return
        self._failing.update(new)
        for tenant_id, client_id in new:
            event = database_failed_event(tenant_id, client_id, error_text)
            try:
                await self.producer.send_and_wait(
                    self.outbox_topics.events, event.to_bytes(), key=event.key, headers=[CONTENT_TYPE_HEADER]
                )
                EVENTS_PRODUCED.labels(SERVICE, self.outbox_topics.events, event.type).inc()
            except KafkaError as error:
                log.warning("cannot announce the database failure", extra={"error": str(error)[:300]})

    def _recovered(self) -> None:
        if self._failing is not None:
            log.warning("PostgreSQL applies batches again", extra={"clients_told": len(self._failing)})
            self._failing = None

    async def _apply_retrying(self, plan: BatchPlan) -> BatchResult:
        async def before_sleep(state: RetryCallState) -> None:
            DB_RETRIES.inc()
            outcome = state.outcome
            error = outcome.exception() if outcome is not None else None
            log.warning(
                "PostgreSQL unavailable or refusing the batch, retrying: %s",
                getattr(error, "error_class", None),
                extra={
                    "attempt": state.attempt_number,
                    "error": str(error)[:300],
                    "error_class": getattr(error, "error_class", None),
                    "events": len(plan.events),
                },
            )
            await self._failing_since(plan, str(error))

        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(StoreUnavailable),
            wait=wait_exponential_jitter(
                multiplier=self.settings.retry_initial_s, max=self.settings.retry_max_s
            ),
            stop=lambda _: self._stopping.is_set(),  # shutting down: give up, nothing is committed
            before_sleep=before_sleep,
            reraise=True,
        ):
            with attempt, APPLY_SECONDS.labels(SERVICE).time():
                result = await self.store.apply(plan, self.outbox_topics)
                if self._failing is not None:
                    self._recovered()
                return result
        raise AssertionError("unreachable: tenacity retries forever")  # pragma: no cover

    # -- publishing (from the outbox) ---------------------------------------------------------
    async def publish_outbox(self, messages: Sequence[OutboxMessage], *, delete: bool = True) -> bool:
        """Publish what earlier attempts left unacknowledged, then `messages`, in order; wait for
        the broker's acknowledgements, then delete the rows (with `delete=False` only remember
        them: the next batch's transaction deletes them, while the connection is busy with it).
        Returns False when Kafka failed: the messages stay in the outbox and are sent first next
        time (nothing is lost; a retry may repeat a message with the same id)."""
        batch = [*self._unsent, *messages]
        self._unsent = []
        try:
            futures = [
                await self.producer.send(m.topic, m.value, key=m.key, headers=list(m.headers)) for m in batch
            ]
            if futures:
                await asyncio.gather(*futures)
        except KafkaError as error:
            OUTBOX_FAILURES.inc()
            self._unsent = batch
            log.warning(
                "publishing the outbox failed; kept for the next attempt",
                extra={"messages": len(batch), "error": str(error)[:300]},
            )
            return False
        for message in batch:
            EVENTS_PRODUCED.labels(SERVICE, message.topic, _message_type(message)).inc()
        done = [*self._undeleted, *(m.id for m in batch)]
        if not delete:
            self._undeleted = done
        elif done:
            try:
                await self.store.delete_outbox(done)
                self._undeleted = []
            except StoreUnavailable as error:
                self._undeleted = done
                log.warning("could not delete published outbox rows", extra={"error": str(error)[:300]})
        return True

    async def _record_lag(self) -> None:
        """Messages behind the end of each assigned partition (`contract_sync_consumer_lag`)."""
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is None:
                continue
            with contextlib.suppress(KafkaError, IllegalStateError):
                lag = max(0, highwater - await self.consumer.position(tp))
                CONSUMER_LAG.labels(SERVICE, tp.topic, str(tp.partition)).set(lag)

    async def recover_outbox(self) -> int:
        """At start-up: publish every message left in the outbox for this writer's output topics
        (a crash between commit and acknowledgement), oldest first. Waits for PostgreSQL like a
        batch does. Returns how many were found."""
        topics = [self.outbox_topics.deadletter, self.outbox_topics.events]
        left: list[OutboxMessage] = []
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(StoreUnavailable),
            wait=wait_exponential_jitter(
                multiplier=self.settings.retry_initial_s, max=self.settings.retry_max_s
            ),
            reraise=True,
        ):
            with attempt:
                left = await self.store.read_outbox(topics)
        if left:
            log.warning("publishing messages left in the outbox", extra={"messages": len(left)})
            await self.publish_outbox(left)
        return len(left)

    async def _finish(self, pending: _Pending, *, delete: bool = True) -> BatchResult:
        result = await pending.task
        await self.publish_outbox(result.outbox, delete=delete)
        try:
            await self.consumer.commit(pending.offsets)
        except (CommitFailedError, IllegalStateError) as error:
            # The group rebalanced while the batch was applied: the new owner re-reads these
            # messages and skips them by event id. Nothing is lost or applied twice.
            log.warning("offset commit failed after a rebalance", extra={"error": str(error)[:300]})
        self.batches += 1
        self.applied_messages += result.fresh
        DUPLICATES.inc(result.duplicates)
        SKIPPED.inc(pending.plan.skipped_unparseable)
        for letter in result.dead_letters:
            DEAD_LETTERS.labels(letter.reason).inc()
            DEADLETTERED.labels(SERVICE, "writer.apply", letter.reason).inc()
            log.warning(
                "dead-lettered message",
                extra={
                    "reason": letter.reason,
                    "topic": letter.message.topic,
                    "partition": letter.message.partition,
                    "offset": letter.message.offset,
                },
            )
        for counts in result.applied.values():
            APPLIED.labels("created").inc(counts.created)
            APPLIED.labels("updated").inc(counts.updated)
            APPLIED.labels("unchanged").inc(counts.unchanged)
            APPLIED.labels("retired").inc(counts.retired)
        log.debug(
            "batch committed",
            extra={
                "events": len(pending.plan.events),
                "fresh": result.fresh,
                "duplicates": result.duplicates,
                "dead_letters": len(result.dead_letters),
                "seconds": round(time.perf_counter() - pending.started, 4),
            },
        )
        return result

    async def _prune(self) -> None:
        try:
            deleted = await self.store.prune_processed(self.settings.processed_retention_days)
        except StoreUnavailable as error:
            log.warning("could not prune processed event ids", extra={"error": str(error)[:300]})
            return
        if deleted:
            log.info("pruned processed event ids", extra={"deleted": deleted})

    async def plan(self, messages: Sequence[Incoming]) -> BatchPlan:
        """`plan_batch` in slices, yielding to the loop between them so the batch being applied
        (awaiting PostgreSQL) and the Kafka fetcher progress while this one is parsed."""
        plan = BatchPlan()
        seen: set[UUID] = set()
        for start in range(0, len(messages), PLAN_SLICE):
            part = plan_batch(
                messages[start : start + PLAN_SLICE], self._kinds, seen=seen, tenants=self._tenants
            )
            plan.events.extend(part.events)
            plan.dead_letters.extend(part.dead_letters)
            plan.ignored += part.ignored
            plan.skipped_unparseable += part.skipped_unparseable
            await asyncio.sleep(0)
        return plan

    async def process(self, messages: Sequence[Incoming]) -> BatchResult:
        """Apply, publish and commit one batch now (no pipelining)."""
        plan = plan_batch(messages, self._kinds, tenants=self._tenants)
        task = asyncio.create_task(self.apply_plan(plan))
        return await self._finish(_Pending(task, plan, next_offsets(messages)))

    async def run(self) -> None:
        """Consume until `stop()`; the batch in flight is finished (applied, published, committed)."""
        pending: _Pending | None = None
        clean = False
        next_prune = time.monotonic()
        # A batch allocates ~20 tracked objects per message (pydantic models, dicts) that are freed by
        # reference counting; with Python's default gen-0 threshold (700) the cyclic collector runs
        # every few dozen messages and re-scans the batch, which measured 2.5x the parse cost itself.
        saved_gc = gc.get_threshold()
        if self.settings.gc_gen0_threshold:
            gc.set_threshold(self.settings.gc_gen0_threshold, *saved_gc[1:])
        try:
            await self.recover_outbox()
            while not self._stopping.is_set():
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self.settings.prune_interval_s
                    await self._prune()
                messages = await self.poll_batch(pending.task if pending is not None else None)
                plan = None
                if messages:
                    if self.first_batch_at is None:
                        self.first_batch_at = time.perf_counter()
                    offsets = self._polled_offsets
                    for topic, count in self._polled_counts.items():
                        MESSAGES.labels(topic).inc(count)
                        EVENTS_CONSUMED.labels(SERVICE, topic, "*").inc(count)
                    BATCH_SIZE.labels(SERVICE).observe(len(messages))
                    await self._record_lag()
                    plan = await self.plan(messages)
                if pending is not None:
                    await asyncio.wait([pending.task])  # batch k committed (or failed)
                done, pending = pending, None
                if plan is not None:
                    # Start applying batch k+1 first (its transaction also deletes the outbox rows
                    # acknowledged so far), then publish batch k's messages and commit its offsets
                    # while PostgreSQL works: the Kafka round trips overlap with the database.
                    plan.outbox_done, self._undeleted = self._undeleted, []
                    pending = _Pending(asyncio.create_task(self.apply_plan(plan)), plan, offsets)
                    # Let the task send its first statement now: `getmany` returns buffered records
                    # without suspending, so without this nothing would overlap.
                    await asyncio.sleep(0)
                if done is not None:
                    try:
                        await self._finish(done, delete=pending is None)
                    except StoreUnavailable as error:
                        if not self._stopping.is_set():
                            raise
                        # given up on shutdown: its offsets stay uncommitted, the next owner applies it
                        log.warning("batch not applied before shutdown", extra={"error": str(error)[:300]})
                elif self._unsent or self._undeleted:
                    await self.publish_outbox(())  # idle: retry an earlier publish, delete acked rows
            clean = True
        finally:
            gc.set_threshold(*saved_gc)
            if pending is not None:
                try:
                    if clean:
                        await self._finish(pending)
                    else:  # failing: let its transaction end; its messages stay in the outbox
                        await asyncio.wait([pending.task])
                except (KafkaError, StoreUnavailable, asyncio.CancelledError) as error:
                    log.warning("last batch not finished on shutdown", extra={"error": str(error)[:300]})
