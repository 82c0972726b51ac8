"""The mapper's faust app: one agent over `psa.agreements.v1` + `sync.commands.v1`, its own state store.

Thin adapter around `services.mapper.state.decide`:
- Both source topics are read as raw bytes (`value_serializer="raw"`) and parsed inside `decide`
  (`services.mapper.messages.parse_input`: the compiled decoder of `schemas.fast` for observed
  snapshots, `schemas.topics.parse` for the rest); faust never defines a second schema.
- Helpers by role: `table_store.StateStore` (the store `decide` writes through),
  `output_producer.OutputProducer` (batched producer), `gap_reader.GapReader` (re-reads skipped
  input), `faust_internals` (the faust internals it needs, checked at start-up).
- State lives in the mapper's own store (`StateStore`: a local backend from
  `services.mapper.state_store`, `memory://` or `rocksdb://`, plus the batch's pending changes),
  keys prefixed by the client key, and in its changelog topic (`<app_id>-state-changelog`,
  `services.mapper.changelog`), which the mapper writes itself: each change goes to the changelog
  partition of the message being handled. As every message about a client is keyed
  `{tenant}:{client}` and all topics are co-partitioned, a client's state sits in the changelog
  partition of that client's messages. faust holds no table: on every (re)assignment the store
  reads back, per assigned partition, the changelog records after its local checkpoint (all of
  them for `memory://`, only the tail for `rocksdb://`) before anything of that partition is decided.
- Delivery: at-least-once (faust's exactly_once is unreliable). Messages are handled in batches
  (`stream.take_events`); the batch's outputs are produced (per-partition record batches of a
  dedicated idempotent producer, `OutputProducer`) and awaited first, then its state changes and
  input positions (changelog records), and only then is the batch acknowledged: no offset commits
  ahead of its effects, and no state ever claims records that were not written. A failed
  produce is retried with back-off until it lands (the agent waits meanwhile); a size refusal is
  pinned on its message, which is dead-lettered (`too_large`) instead (`_set_aside`).
- Input positions (`services.mapper.positions`): the state holds, per source partition, the
  next offset the state reflects. Duplicates below it are skipped; a message beyond it means
  faust skipped input (its fetcher can drop messages around recovery and seeks), so the missing
  range is read again with a group-less consumer (`GapReader`) and handled first; a timer does
  the same when the group's committed offset is beyond the position (a gap at a partition's
  end). Nothing is decided before the partition's state is recovered: such messages are held.
- The worker keeps running on bad input: `decide` dead-letters it. An unexpected exception while
  handling one message dead-letters that message (`internal_error`) and the batch goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import faust
from mode import Service
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from schemas.topics import PSA_AGREEMENTS, SYNC_COMMANDS
from services.common.health import HealthServer
from services.common.metrics import (
    EVENTS_CONSUMED,
    FAUST_INTERNALS_MISSING,
)
from services.common.poison import is_environmental
from services.common.settings import KafkaSettings, ObservabilitySettings
from services.mapper import faust_internals
from services.mapper.changelog import ChangelogRecovery, StaleLocalState, changelog_topic
from services.mapper.gap_reader import GapReader, RawMessage
from services.mapper.messages import Incoming, Output
from services.mapper.output_producer import (
    OutMessage,
    OutputProducer,
    internal_error_letter,
    kafka_message,
    needs_new_producer,
    too_large_error,
    transient_produce_error,
)
from services.mapper.positions import Verdict, classify
from services.mapper.settings import MapperSettings
from services.mapper.state import Decision, decide, too_large
from services.mapper.state_store import (
    open_backend,
)
from services.mapper.table_store import StateStore

log = logging.getLogger(__name__)

SERVICE = "mapper"
POSITION_CHECK_S = 2.0
"""How often the input positions are compared with what the consumer group acknowledged."""
YIELD_EVERY_S = 0.005
"""A batch gives the event loop a turn whenever it has held it this long (checked between messages)."""
PRODUCE_RETRY_INITIAL_S = 0.5
PRODUCE_RETRY_MAX_S = 30.0
"""Back-off between attempts to produce a batch's outputs or state (retried until they land)."""
_RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


def _credentials(kafka: KafkaSettings) -> Any:
    if kafka.security_protocol == "PLAINTEXT":
        return None
    ssl_context = kafka.client_kwargs().get("ssl_context")
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
            mechanism=kafka.sasl_mechanism,
            ssl_context=ssl_context,
        )
    return faust.SSLCredentials(ssl_context)


class MapperApp:
    """The faust app, its state store, topics and agent, built from settings (nothing at import)."""

    def __init__(
        self,
        settings: MapperSettings,
        kafka: KafkaSettings,
        observability: ObservabilitySettings | None = None,
        tenants: frozenset[str] | None = None,
    ) -> None:
        self.settings = settings
        self.observability = observability or ObservabilitySettings()
        self.tenants = tenants
        """Configured tenant ids (`services.common.tenants`); None = unknown-tenant checks off."""
        self._lock = asyncio.Lock()
        """One handler at a time: the agent's batches and the position check's re-reads."""
        self._missing_internals: list[str] = []
        """faust internals this release lacks (`faust_internals.missing`): not ready while any."""
        self._held: list[Any] = []
        """Messages whose partition's state could not be recovered yet, handled once it is."""
        self.ready = False
        self.app = faust.App(
            settings.app_id,
            broker=kafka.faust_broker,
            broker_credentials=_credentials(kafka),
            broker_client_id=f"{kafka.client_id}-mapper",
            store="memory://",  # faust holds no table: the state is the mapper's own (StateStore)
            datadir=settings.datadir,
            autodiscover=False,
            web_enabled=False,
            topic_partitions=settings.partitions,
            topic_replication_factor=kafka.topic_replication_factor,
            topic_disable_leader=True,
            processing_guarantee="at_least_once",
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=settings.commit_interval_s,
            producer_acks=-1,
            producer_linger_ms=5,
            producer_max_batch_size=256 * 1024,
            producer_max_request_size=8 * 1024 * 1024,
            consumer_max_fetch_size=8 * 1024 * 1024,
            table_standby_replicas=0,
            consumer_group_instance_id=settings.group_instance_id,
        )
        self.changelog_name = changelog_topic(settings.app_id)
        self.backend = open_backend(settings.store, settings.datadir)
        self.store = StateStore(self.backend, self.changelog_name)
        self.recovery = ChangelogRecovery(kafka, self.changelog_name, self.backend)
        self._assigned: set[int] | None = None
        """Input partitions assigned to this worker (None: no assignment yet)."""
        self._recovered_partitions: set[int] = set()
        """Changelog partitions whose records the local store holds up to the end (since assigned)."""
        self.app.on_partitions_revoked.connect(self._on_partitions_revoked)
        self.app.on_partitions_assigned.connect(self._on_partitions_assigned)
        self._input_topics = {settings.topic(PSA_AGREEMENTS), settings.topic(SYNC_COMMANDS)}
        self.inputs = self.app.topic(*sorted(self._input_topics), **_RAW)
        self.app.agent(self.inputs, name="mapper")(self._agent)
        self.app.timer(interval=POSITION_CHECK_S)(self._check_positions)
        health = HealthServer(
            SERVICE,
            self.observability.health_host,
            self.observability.health_port,
            {"worker": self.is_ready},
        )
        self.output = OutputProducer(kafka, self.settings)
        self.gap_reader = GapReader(kafka)

        class Services(Service):
            async def on_start(self) -> None:
                await health.start()

            async def on_stop(self) -> None:
                await health.stop()

        self.app.service(Services)
        # faust starts instances too (App.on_init_extra_service takes a Service or its class)
        self.app.service(self.output)  # type: ignore[arg-type]
        self.app.service(self.gap_reader)  # type: ignore[arg-type]
        self.app.service(self.recovery)  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------------------

    async def _agent(self, stream: Any) -> AsyncIterator[None]:
        self._self_check()
        self.ready = True
        log.info("mapper agent started", extra={"app_id": self.settings.app_id})
        try:
            async for batch in stream.take_events(
                self.settings.batch_max, within=self.settings.batch_within_s
            ):
                await self._handle_batch(batch)
                yield None
        finally:
            self.ready = False

    async def _handle_batch(self, events: list[Any]) -> None:
        """Handle one batch of faust events (see `_handle_messages`) once the state of their
        partitions is recovered; when recovery fails (the broker is away) the batch is held and
        handled by the position check once it succeeds: nothing is decided on a partial state."""
        messages = [RawMessage.of(event.message) for event in events]
        async with self._lock:
            if not await self._recover({m.partition for m in messages}):
                self._held.extend(messages)
                return
            await self._handle_messages(self._with_held(messages))

    def _on_partitions_revoked(self, sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        """A partition that leaves may change elsewhere: read its changelog tail when it is back
        (faust's `on_partitions_revoked` signal: args = (revoked partitions,))."""
        revoked: set[Any] = args[0]
        self._recovered_partitions -= {tp.partition for tp in revoked if tp.topic in self._input_topics}

    def _on_partitions_assigned(self, sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        """faust's `on_partitions_assigned` signal: args = (the whole new assignment,)."""
        assigned: set[Any] = args[0]
        self._assigned = {tp.partition for tp in assigned if tp.topic in self._input_topics}
        self._recovered_partitions &= self._assigned

    async def _recover(self, partitions: set[int]) -> bool:
        """Bring the local store up to the changelog's end for `partitions` not recovered since
        they were assigned (`ChangelogRecovery`: only the tail after the local checkpoint). A local
        store that belongs to another changelog is cleared and read again. False when a partition
        could not be recovered now (logged; retried by the next batch or position check).
        Called with `_lock` held."""
        wanted = sorted(partitions - self._recovered_partitions)
        if not wanted:
            return True
        try:
            for partition in wanted:
                try:
                    await self.recovery.recover(partition)
                except StaleLocalState as stale:
                    log.warning("local state store cleared: %s", stale)
                    self.backend.clear()
                    self._recovered_partitions.clear()
                    await self.recovery.recover(partition)
                self._recovered_partitions.add(partition)
        except Exception:
            log.warning("cannot recover the state from its changelog yet", exc_info=True)
            return False
        finally:
            self._on_recovered()
        return True

    def _on_recovered(self) -> None:
        """The store was filled behind the index's back: rebuild the index (memory://: one pass)."""
        started = time.perf_counter()
        self.store.rebuild_index()
        log.info("state index rebuilt", extra={"ms": round((time.perf_counter() - started) * 1000)})

    def _with_held(self, messages: list[RawMessage]) -> list[RawMessage]:
        """`messages` plus the held ones of partitions still assigned, each partition in offset
        order, each offset once; empties the hold."""
        if not self._held:
            return messages
        owned = {(tp.topic, tp.partition) for tp in self.app.consumer.assignment()}
        unique = {(m.topic, m.partition, m.offset): m for m in self._held if (m.topic, m.partition) in owned}
        unique.update({(m.topic, m.partition, m.offset): m for m in messages})
        self._held = []
        return [unique[k] for k in sorted(unique)]

    async def _handle_messages(self, messages: list[RawMessage]) -> None:
        """Handle messages in order; outputs are durable before the state that records them.

        Every message is first checked against the mapper's own position for its partition
        (`services.mapper.positions`): duplicates of handled messages are skipped; a message
        beyond the position means input was skipped upstream, so the missing range is read
        again with the gap reader and handled first. Then the outputs are produced and awaited,
        and only then the state changes and new positions (changelog records): a crash in
        between re-handles the messages (duplicate records, harmless), never leaves state that
        claims records which were not written. If anything fails or the task is cancelled
        (shutdown, rebalance) before the state is written, the state's changes are undone
        (`StateStore.discard`): the batch's messages count as not handled, so they are handled
        again when re-delivered or found as a gap.
        """
        try:
            await self._handle_messages_once(messages)
        except BaseException as error:
            self.store.discard()
            if not too_large_error(error):
                raise
            refused: BaseException = error
        else:
            self.store.keep()
            return
        if len(messages) == 1:
            await self._undone_unless(self._set_aside(messages[0], refused))
            return
        log.warning(
            "Kafka refused the batch's outputs or state for their size: handling it message by message",
            extra={"messages": len(messages), "error": str(refused)[:300]},
        )
        for message in messages:
            await self._handle_messages([message])

    async def _undone_unless(self, step: Awaitable[None]) -> None:
        """`await step`, keeping its state changes; undone when it raises."""
        try:
            await step
        except BaseException:
            self.store.discard()
            raise
        self.store.keep()

    async def _set_aside(self, message: RawMessage, error: BaseException) -> None:
        """A message whose outputs or state Kafka refused for their size (a batch of its own):
        dead-lettered as `too_large`, answered when its tenant can be read, recorded as handled,
        so a permanent size refusal never blocks its partition. Outputs that landed before the
        refusal (the records, when only the state was too large) stay: at-least-once, the writer
        applies them by content. Only a message at its partition's position is set aside; one
        after a gap is raised again, so skipped input is never passed over with it (the gap is
        read again later, and split message by message)."""
        where = (message.topic, message.partition)
        position = self.store.position(*where)
        if classify(position, message.offset) is not Verdict.PROCESS:
            if classify(position, message.offset) is Verdict.DUPLICATE:
                return
            raise error
        incoming = self._incoming(message)
        text = f"{type(error).__name__}: {error}"
        log.error(
            "message set aside: Kafka refused what it produces for its size",
            extra={"topic": message.topic, "partition": message.partition, "offset": message.offset},
        )
        self._consumed(incoming.topic, "too_large").inc()
        self.store.put_position(*where, message.offset + 1)
        await self._produce_retrying(
            [kafka_message(o, self.settings) for o in too_large(incoming, text)], "outputs"
        )
        self.store.written(await self._produce_retrying(self.store.take_pending(), "state"))

    async def _handle_messages_once(self, messages: list[RawMessage]) -> None:
        outputs: list[Output] = []
        store = self.store
        advanced: dict[tuple[str, int], int] = {}
        blocked: set[tuple[str, int]] = set()
        yielded = time.perf_counter()
        for message in messages:
            if time.perf_counter() - yielded > YIELD_EVERY_S:  # let health probes and heartbeats in
                await asyncio.sleep(0)
                yielded = time.perf_counter()
            where = (message.topic, message.partition)
            if where in blocked:
                continue
            position = advanced.get(where)
            if position is None:
                position = store.position(*where)
            verdict = classify(position, message.offset)
            if verdict is Verdict.DUPLICATE:
                self._consumed(self.settings.canonical(message.topic), "duplicate").inc()
                continue
            if verdict is Verdict.GAP and position is not None:
                try:
                    missing = await self._read_gap(message.topic, message.partition, position, message.offset)
                except Exception:  # e.g. the broker is away: retried by a later message or the timer
                    log.warning("cannot re-read skipped input", exc_info=True, extra={"topic": message.topic})
                    blocked.add(where)
                    continue
                for earlier in missing:
                    outputs.extend(await self._decide_any(earlier))
            outputs.extend(await self._decide_any(message))
            advanced[where] = message.offset + 1
        for (topic, partition), position in advanced.items():
            store.put_position(topic, partition, position)
        if outputs:
            await self._produce_retrying(
                [kafka_message(output, self.settings) for output in outputs], "outputs"
            )
        state = store.take_pending()
        if state:
            store.written(await self._produce_retrying(state, "state"))

    async def _produce_retrying(self, messages: list[OutMessage], what: str) -> dict[tuple[str, int], int]:
        """`OutputProducer.produce_all`, retried with exponential back-off until it succeeds
        when the error is transient (`transient_produce_error`: the broker away, timeouts, leader changes).

        A batch's outputs and state are not given up while the worker runs: its input
        positions and state already moved in memory, so an error let through here would leave
        them claiming work that was never written (and the batch's offsets acknowledged). A
        retry sends the same messages again (same event ids: the writer applies them once).
        The agent waits meanwhile, so nothing else is consumed. Cancellation (shutdown,
        rebalance) is not retried: the in-memory state then goes with the batch, and the durable
        positions make the partition's next owner read the batch again. A permanent error is
        raised at once and the caller undoes the batch's state: a size refusal (`too_large_error`) is
        pinned on its message, which is set aside (`_set_aside`); any other (a denied topic)
        makes the batch be read again as a gap on the next position check, so the partition
        waits (with an error logged each time) until the operator fixes it.
        """

        def before_sleep(state: RetryCallState) -> None:
            outcome = state.outcome
            error = outcome.exception() if outcome is not None else None
            log.warning(
                "cannot produce the batch's %s, retrying",
                what,
                extra={"attempt": state.attempt_number, "messages": len(messages), "error": str(error)[:300]},
            )

        async for attempt in AsyncRetrying(
            retry=retry_if_exception(transient_produce_error),
            wait=wait_exponential_jitter(multiplier=PRODUCE_RETRY_INITIAL_S, max=PRODUCE_RETRY_MAX_S),
            before_sleep=before_sleep,
            reraise=True,
        ):
            with attempt:
                try:
                    return await self.output.produce_all(messages)
                except Exception as error:
                    if needs_new_producer(error):
                        await self.output.reset()
                    raise
        raise AssertionError("unreachable: AsyncRetrying re-raises the last error")  # pragma: no cover

    async def _decide_any(self, message: RawMessage) -> list[Output]:
        """`_decide`; a command (whose cost grows with what it names: a select of 10,000 ids takes
        a few hundred ms) is decided in a worker thread, so the event loop keeps answering health
        probes and heartbeats meanwhile. The agent still waits for it: messages stay in order, and
        a cancellation (rebalance, shutdown) waits for the thread before the batch is undone."""
        if self.settings.canonical(message.topic) != SYNC_COMMANDS:
            return self._decide(message)
        future = asyncio.get_running_loop().run_in_executor(None, self._decide_exclusive, message)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            while not future.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({future})
            raise

    def _decide_exclusive(self, message: RawMessage) -> list[Output]:
        with self.store.index_lock:
            return self._decide(message)

    def _incoming(self, message: RawMessage) -> Incoming:
        return Incoming(
            topic=self.settings.canonical(message.topic),
            source_topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value if message.value is not None else b"",
        )

    def _decide(self, message: RawMessage) -> list[Output]:
        incoming = self._incoming(message)
        self.store.partition = message.partition
        try:
            decision = decide(self.store, incoming, self.tenants)
        except Exception as error:  # any failure of one message: park it, go on (services.common.poison)
            if is_environmental(error):
                raise
            log.exception(
                "unexpected error handling a message",
                extra={"topic": message.topic, "partition": message.partition, "offset": message.offset},
            )
            decision = Decision("error", [internal_error_letter(incoming, error)])
        self._consumed(incoming.topic, decision.message_type).inc()
        return decision.outputs

    async def _read_gap(self, topic: str, partition: int, position: int, until: int) -> list[RawMessage]:
        """The messages of `topic`/`partition` from `position` up to `until` (exclusive), read
        with the gap reader; retention-deleted ones are logged as lost and left out."""
        start = await self._fill_gap_from(topic, partition, position)
        if start > position:  # retention deleted the rest: move on (flushed with the next state)
            self.store.put_position(topic, partition, min(start, until))
        if start >= until:
            return []
        missing = await self.gap_reader.read(topic, partition, start, until)
        log.warning(
            "input skipped upstream: read again by the mapper",
            extra={
                "topic": topic,
                "partition": partition,
                "from": start,
                "to": until - 1,
                "count": len(missing),
            },
        )
        return missing

    def _self_check(self) -> None:
        """Check the faust internals the mapper needs (`faust_internals`); report any missing."""
        self._missing_internals = faust_internals.missing(self.app)
        FAUST_INTERNALS_MISSING.set(len(self._missing_internals))
        if self._missing_internals:
            log.error(
                "faust lacks internals the mapper needs: not ready (docs/mapper.md)",
                extra={"missing": self._missing_internals},
            )

    def _recovered(self) -> bool:
        """Every assigned input partition's state is recovered (False before the first assignment)."""
        return self._assigned is not None and self._assigned <= self._recovered_partitions

    async def _check_positions(self) -> None:
        """Periodic: recovers assigned partitions not recovered yet, then, once all are:

        1. messages held during recovery are handled (without waiting for a next batch, which
           may never come when faust re-delivers nothing);
        2. when the group acknowledged more of a partition than the state handled (committed
           offset beyond the position, e.g. after a restart), the range in between is read and
           handled: no later message would reveal such a gap at a partition's end;
        3. the group's offsets are committed up to the positions (`_commit_positions`).
        """
        if self._assigned is not None and not self._recovered():
            async with self._lock:
                await self._recover(set(self._assigned))
        if not self._recovered():
            return
        if self._held:
            async with self._lock:
                if self._held and self._recovered():
                    await self._handle_or_log(self._with_held([]), "messages held during recovery")
        if self._missing_internals:
            return
        consumer = self.app.consumer
        committed = faust_internals.committed_offsets(self.app)
        for tp in consumer.assignment():
            if tp.topic not in self._input_topics:
                continue
            position = self.store.position(tp.topic, tp.partition)
            acknowledged = committed.get(tp)
            if position is None or acknowledged is None or acknowledged <= position:
                continue
            async with self._lock:
                position = self.store.position(tp.topic, tp.partition)
                if position is None or acknowledged <= position or not self._recovered():
                    continue
                try:
                    missing = await self._read_gap(tp.topic, tp.partition, position, acknowledged)
                except Exception:
                    log.warning("cannot re-read skipped input", exc_info=True, extra={"topic": tp.topic})
                    continue
                await self._handle_or_log(missing, "re-read input", topic=tp.topic, partition=tp.partition)
        await self._commit_positions(committed, faust_internals.offset_committer(self.app))

    async def _handle_or_log(self, messages: list[RawMessage], what: str, **where: Any) -> None:
        """`_handle_messages` for the timer: a failure is logged, not raised (the batch was undone,
        so a later check reads it again as a gap)."""
        try:
            await self._handle_messages(messages)
        except Exception:
            log.error("cannot handle %s", what, exc_info=True, extra=where)

    async def _commit_positions(
        self,
        committed: Mapping[Any, int | None],
        commit_offsets: Callable[[dict[Any, int]], Awaitable[Any]],
    ) -> None:
        """Commit each assigned input partition's offset up to the mapper's position, when
        faust's own commit is behind it.

        faust commits only offsets its streams acknowledged one by one, and it loses track of
        some around recovery (seen: a partition's commit stuck for minutes although every
        message was mapped), which shows as consumer lag that is not there and makes a restart
        re-read (and skip) what was done. The positions are durable when read here: they change
        only inside `_handle_messages`, under the lock, after its outputs and state were
        written. faust never commits an offset lower than one already committed
        (`Consumer._should_commit`), so the two never move a partition backwards.
        """
        async with self._lock:
            if not self._recovered():
                return
            ahead: dict[Any, int] = {}
            for tp in self.app.consumer.assignment():
                if tp.topic not in self._input_topics:
                    continue
                position = self.store.position(tp.topic, tp.partition)
                acknowledged = committed.get(tp)
                if position is not None and (acknowledged is None or position > acknowledged):
                    ahead[tp] = position
            if ahead:
                try:
                    await commit_offsets(ahead)
                except Exception:  # the broker is away or a rebalance began: faust or the next tick commits
                    log.warning("cannot commit the mapper's input positions", exc_info=True)

    async def _fill_gap_from(self, topic: str, partition: int, position: int) -> int:
        """Where re-reading starts: `position`, or the partition's earliest offset when retention
        already deleted the messages in between (logged as an error: they are lost)."""
        try:
            earliest = await self.gap_reader.earliest(topic, partition)
        except Exception:  # unknown: assume the messages still exist
            log.warning("cannot read the earliest offset", exc_info=True, extra={"topic": topic})
            return position
        if earliest > position:
            log.error(
                "input deleted by retention before the mapper read it",
                extra={
                    "topic": topic,
                    "partition": partition,
                    "lost_from": position,
                    "lost_to": earliest - 1,
                },
            )
            return earliest
        return position

    @staticmethod
    @functools.cache
    def _consumed(topic: str, message_type: str) -> Any:
        return EVENTS_CONSUMED.labels(SERVICE, topic, message_type)

    # ------------------------------------------------------------------------------------------

    def worker(self, loglevel: str = "info") -> faust.Worker:
        """A faust Worker for this app. Its `execute_from_commandline()` owns and closes the loop.

        Without its terminal spinner: the spinner writes cursor escapes (ESC[?25h) to stdout even when
        stdout is no terminal, which would break the one-JSON-object-per-line log."""
        worker = faust.Worker(
            self.app, loglevel=loglevel, quiet=True, redirect_stdouts=False, override_logging=False
        )
        worker.spinner = None
        return worker

    def is_ready(self) -> bool:
        """Ready = the agent runs, faust has every internal the mapper needs (start-up self-check)
        and the state of every assigned partition is recovered."""
        return self.ready and not self._missing_internals and self._recovered()
