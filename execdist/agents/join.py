"""The join agent: orders and executions in, confirmations, status events and DLQ records out.

Thin by design: decode, validate, hand the record to the pure core
(:mod:`execdist.domain.join`), store the new state and publish what the core returned, all in
the transaction of the source partition. Timeouts and the expiry of finished orders are the
join's punctuation (:meth:`JoinProcessor.punctuate`): the engine calls it for each owned
partition once per tick interval, inside the same transaction as the partition's records.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypedDict

import msgspec
import orjson

from execdist import topics
from execdist.agents.anomalies import AnomalyFlags
from execdist.agents.dead_letters import DeadLetters
from execdist.agents.hot_states import HotStates, approximate_size
from execdist.agents.positions import PositionsProcessor
from execdist.codecs.errors import DecodeError, RegistryUnavailable
from execdist.codecs.input import InputDecoder, read_typed_json
from execdist.codecs.output import encode_json
from execdist.domain import (
    Confirmation,
    Confirmed,
    Dropped,
    Execution,
    Fill,
    InvalidRecord,
    InvalidState,
    Order,
    OrderState,
    Output,
    RecordOrigin,
    Rejected,
    RejectReason,
    StatusNotice,
    StatusType,
    apply_execution,
    apply_order,
    format_time,
    next_tick_due,
    on_tick,
    parse_execution,
    parse_order,
    stored_state_expired,
)
from execdist.domain.anomalies import anomaly_event_details
from execdist.domain.positions import position_change
from execdist.metrics import LabelledChildren, Metrics
from execdist.runtime.records import InputRecord
from execdist.runtime.topology import PunctuationContext
from execdist.runtime.transaction import RecordSink
from execdist.settings import Settings
from execdist.tables.declarations import history_key, history_prefix
from execdist.tables.store import PartitionedState

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
ConfirmationSink = Callable[
    [int, bytes, Confirmation, dict[str, object], bytes, float | None], Awaitable[None]
]
"""Where a confirmation goes besides ``execdist.confirmations`` (the subscription router):
called with the source partition, key, confirmation, its JSON dict and bytes, and the
timestamp of the input record that caused it."""

TIMER_PREFIX = b"due:"
"""Timers-table keys ``due:<order_id>`` hold when that order needs a tick next."""


class _ExpiryFields(TypedDict):
    """The two fields of a stored order state that say whether it expired
    (:func:`stored_state_expired`). msgspec reads just these and skips the rest of the JSON in
    C: a sweep looks at many states and deletes few, and decoding a whole state (its fills
    and seen executions) cost three times as much."""

    held: list[object]
    last_activity: str


_read_expiry_fields = msgspec.json.Decoder(_ExpiryFields).decode

DEFERRED_LOG_EVERY = timedelta(seconds=60)
"""At most how often a partition's timeouts put off while its inputs are read are logged."""
DEFERRED_LOG_AFTER = timedelta(seconds=5)
"""How long past its due time a timeout must wait for its inputs to be logged: one put off by
the worker's own latency under a steady flow fires at the next tick, unremarked."""

SWEEP_BATCH = 50
"""Keys examined for expiry per partition and tick, plus twice the orders created there since
the previous tick: the sweep then goes round a partition faster than new keys arrive, so the
table stays under twice the orders live within the retention at any input rate."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class JoinProcessor:
    """Processes one input record at a time, inside its source partition's transaction."""

    def __init__(
        self,
        *,
        settings: Settings,
        states: PartitionedState,
        timers: PartitionedState,
        history: PartitionedState,
        out: RecordSink,
        decoder: InputDecoder,
        metrics: Metrics,
        anomalies: AnomalyFlags | None = None,
        confirmation_sinks: list[ConfirmationSink] | None = None,
        positions: PositionsProcessor | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._settings = settings
        self._states = states
        self._timers = timers
        self._history = history
        self._out = out
        self._decoder = decoder
        self._metrics = metrics
        self._clock = clock
        self._dead_letters = DeadLetters(settings, out, metrics, clock)
        self._sweep_cursor: dict[int, bytes | None] = {}
        self._deferred_logged: dict[int, datetime] = {}
        """When each partition's put-off timeouts were last logged."""
        self._created: dict[int, int] = {}
        self._hot: dict[int, HotStates] = {}
        self._timer_indexes: dict[int, dict[str, str]] = {}
        self._anomalies = anomalies
        self._confirmation_sinks = list(confirmation_sinks or [])
        self._positions = positions
        self._records_in = LabelledChildren(metrics.records_in)
        self._confirmed = LabelledChildren(metrics.confirmations)
        self._input_timestamp: float | None = None

    # ---- inputs -------------------------------------------------------------------------

    async def process(self, record: InputRecord) -> None:
        """One input record: an order or an execution."""
        started = time.perf_counter()
        topic, partition, offset = record.topic, record.partition, record.offset
        key, value = record.key, record.value
        self._input_timestamp = record.timestamp
        self._records_in[topic].inc()
        origin = RecordOrigin(topic, partition, offset, key, value)
        try:
            # most records: JSON of the contract's shape, read by msgspec in C, then the rules
            parsed = read_typed_json(value, order=topic == topics.ORDERS)
        except InvalidRecord as exc:
            await self._invalid(origin, exc)
            return
        if parsed is None:
            parsed = await self._decode(origin)
            if parsed is None:
                return
        order_id = parsed.order_id
        if key != order_id.encode():
            await self._dead_letters.reject(
                Rejected(
                    RejectReason.VALIDATION_ERROR,
                    f"the record key must equal its order_id {order_id!r} (got {key!r}); "
                    "orders and executions are partitioned by order_id",
                    origin,
                    parsed.exec_id if isinstance(parsed, Execution) else None,
                ),
            )
            return
        now = self._clock()
        state = self._load(partition, order_id, now)
        before = dict(state.live_fills)
        if isinstance(parsed, Order):
            step = apply_order(state, parsed, now)
        else:
            step = apply_execution(state, parsed, origin, now)
        self._store(partition, step.state, before)
        await self._publish(partition, topic, offset, step.outputs)
        self._metrics.processing_seconds.observe(time.perf_counter() - started)

    async def _decode(self, origin: RecordOrigin) -> Order | Execution | None:
        """The general path, for a record the typed JSON read did not take (Avro, JSON of
        another shape): decoded (asking the schema registry, waiting for it if need be), then
        parsed; ``None`` if it was dead-lettered instead. The typed read is done in
        :meth:`process` itself, not here: most records take it, and never wait."""
        value = origin.value
        while True:
            try:
                data = await self._decoder.decode(value)
                break
            except RegistryUnavailable as exc:
                # Not the record's fault: wait for the registry rather than reject good input.
                log.warning(
                    "schema registry unavailable, retrying in 1 s: %s",
                    exc,
                    extra={
                        "topic": origin.topic,
                        "partition": origin.partition,
                        "offset": origin.offset,
                    },
                )
                await asyncio.sleep(1.0)
            except DecodeError as exc:
                await self._dead_letters.reject(
                    Rejected(RejectReason.DECODE_ERROR, str(exc), origin)
                )
                return None
        try:
            if origin.topic == topics.ORDERS:
                return parse_order(data)
            return parse_execution(data)
        except InvalidRecord as exc:
            await self._invalid(origin, exc)
            return None

    async def _invalid(self, origin: RecordOrigin, error: InvalidRecord) -> None:
        await self._dead_letters.reject(Rejected(RejectReason.VALIDATION_ERROR, str(error), origin))

    async def punctuate(self, context: PunctuationContext) -> None:
        """Fire the partition's due timeouts and expire a slice of its finished orders (the
        engine calls this once per tick interval, inside the partition's transaction).

        The timeouts wait for input (an order, a missing seq), so they are judged against how
        far the partition's orders and executions are read: as many seconds before now as the
        worker is behind them. A worker catching up on a backlog does not reject an execution
        whose order is still in it; one keeping up with a steady flow judges its timeouts its
        own latency late, a fraction of a second."""
        partition = context.partition
        now = self._clock()
        self._input_timestamp = None
        due_index = self._load_timers(partition)
        behind = context.behind_by(topics.ORDERS, topics.EXECUTIONS)
        read_until = now - timedelta(seconds=behind) if behind < math.inf else None
        held = await self._fire_due(partition, now, read_until, due_index)
        if held:
            self._log_deferred(partition, now, held, context)
        self._sweep_expired(partition, now, due_index)

    def _log_deferred(
        self, partition: int, now: datetime, held: int, context: PunctuationContext
    ) -> None:
        """Say, now and then, that ``held`` timeouts are long overdue and wait for the inputs
        to be read: an SRE watching executions held past their timeout learns why."""
        logged = self._deferred_logged.get(partition)
        if logged is not None and now - logged < DEFERRED_LOG_EVERY:
            return
        self._deferred_logged[partition] = now
        behind = [
            f"{topic} ({seconds:.1f} s behind)" if seconds < math.inf else f"{topic} (not read yet)"
            for topic in (topics.ORDERS, topics.EXECUTIONS)
            if (seconds := context.behind_by(topic)) > 0
        ]
        log.info(
            "partition %d: %d timeouts are overdue and wait until the worker has read its %s "
            "(it is catching up on a backlog; see execdist_input_lag_records)",
            partition,
            held,
            " and ".join(behind),
            extra={"partition": partition, "timeouts_due": held},
        )

    async def _fire_due(
        self,
        partition: int,
        now: datetime,
        read_until: datetime | None,
        due_index: dict[str, str],
    ) -> int:
        """Fire the timeouts due by ``read_until``, how far the inputs are read (none while
        that is unknown). Returns how many it holds that are overdue by more than
        ``DEFERRED_LOG_AFTER``: the ones worth a line in the log."""
        long_overdue = now - DEFERRED_LOG_AFTER
        held = 0
        for order_id, due in sorted(due_index.items()):
            when = datetime.fromisoformat(due)
            if read_until is None or when > read_until:
                held += when <= long_overdue
                continue
            state = self._existing(partition, order_id)
            if state is None:
                self._set_timer(partition, order_id, None)
                continue
            before = dict(state.live_fills)
            step = on_tick(
                state,
                now,
                gap_timeout=self._settings.gap_timeout,
                orphan_timeout=self._settings.orphan_timeout,
                read_until=read_until,
            )
            self._store(partition, step.state, before)
            # unique per order and moment: a timeout is not an input record with an offset
            await self._publish(
                partition, "timeout", f"{order_id}:{format_time(now)}", step.outputs
            )
        return held

    # ---- state --------------------------------------------------------------------------

    def _load(self, partition: int, order_id: str, now: datetime) -> OrderState:
        state = self._existing(partition, order_id)
        if state is None:
            self._created[partition] = self._created.get(partition, 0) + 1
            return OrderState.new(order_id, now)
        return state

    def _existing(self, partition: int, order_id: str) -> OrderState | None:
        """The order's state as this partition's transaction has it, ``None`` if it has none."""
        hot = self._hot.get(partition)
        if hot is not None:
            state = hot.get(order_id)
            if state is not None:
                return state
        raw = self._states.get(partition, order_id.encode())
        return None if raw is None else OrderState.from_dict(orjson.loads(raw))

    def _store(self, partition: int, state: OrderState, fills_before: dict[str, Fill]) -> None:
        key = state.order_id.encode()
        self._states.put_encoded_later(partition, key, state.to_json)
        hot = self._hot.get(partition)
        if hot is None:
            hot = self._hot[partition] = HotStates()
        hot.keep(state, approximate_size(state))
        due = next_tick_due(
            state,
            gap_timeout=self._settings.gap_timeout,
            orphan_timeout=self._settings.orphan_timeout,
        )
        self._set_timer(partition, state.order_id, None if due is None else due.isoformat())
        if state.order is not None and fills_before != state.live_fills:
            change = position_change(
                state.order.account,
                state.order.symbol,
                state.order.side,
                fills_before,
                state.live_fills,
            )
            if change is not None and self._positions is not None:
                self._positions.change(change)

    def release(self, partition: int) -> None:
        """Drop what is cached for ``partition``: its state was restored or rolled back."""
        self._timer_indexes.pop(partition, None)
        self._sweep_cursor.pop(partition, None)
        self._deferred_logged.pop(partition, None)
        self._created.pop(partition, None)
        self._hot.pop(partition, None)
        if self._anomalies is not None:
            self._anomalies.release(partition)

    def _load_timers(self, partition: int) -> dict[str, str]:
        """The partition's pending timeouts (order_id -> due), read once, then kept in step."""
        index = self._timer_indexes.get(partition)
        if index is None:
            index = {
                key[len(TIMER_PREFIX) :].decode(): value.decode()
                for key, value in self._timers.items_with_prefix(partition, TIMER_PREFIX)
            }
            self._timer_indexes[partition] = index
        return index

    def _set_timer(self, partition: int, order_id: str, due: str | None) -> None:
        """Record when ``order_id`` needs a punctuation next (``None``: it does not)."""
        index = self._load_timers(partition)
        if index.get(order_id) == due:
            return
        key = TIMER_PREFIX + order_id.encode()
        if due is None:
            del index[order_id]
            self._timers.delete(partition, key)
        else:
            index[order_id] = due
            self._timers.put(partition, key, due.encode())
        self._metrics.held_executions.set(sum(len(i) for i in self._timer_indexes.values()))

    def _sweep_expired(self, partition: int, now: datetime, due_index: dict[str, str]) -> None:
        """Delete the expired states among the next slice of the partition's keys, going on
        from where the previous punctuation stopped and starting again from the first key
        after the last one (new order ids often sort last, so stopping at the end would only
        ever see the newest orders)."""
        budget = SWEEP_BATCH + 2 * self._created.pop(partition, 0)
        cursor = self._sweep_cursor.get(partition)
        examined = 0
        for key, committed in self._states.items_after(partition, cursor, budget):
            examined += 1
            cursor = key
            raw = self._states.seen_as(partition, key, committed)
            if raw is None or key.decode() in due_index:
                continue
            try:
                expired = stored_state_expired(
                    _read_expiry_fields(raw), now, self._settings.order_retention
                )
            except (msgspec.MsgspecError, InvalidState) as exc:
                log.error(
                    "order state %r cannot be read, not expiring it: %s",
                    key,
                    exc,
                    extra={"partition": partition, "order_id": key.decode(errors="replace")},
                )
                continue
            if expired:
                self._states.delete(partition, key)
                hot = self._hot.get(partition)
                if hot is not None:
                    hot.drop(key.decode())
                prefix = history_prefix(key.decode())
                for history, _ in list(self._history.items_with_prefix(partition, prefix)):
                    self._history.delete(partition, history)
                self._metrics.expired_orders.inc()
        self._sweep_cursor[partition] = cursor if examined == budget else None

    # ---- outputs ------------------------------------------------------------------------

    async def _publish(
        self, partition: int, source: str, position: int | str, outputs: list[Output]
    ) -> None:
        """Send what one step of the core returned. ``source`` and ``position`` name the step
        uniquely within the partition (the input record's topic and offset, or ``timeout`` and
        the order and moment); with each output's index they make its status events' ids,
        built only for the events sent, not for every record."""
        for index, output in enumerate(outputs):
            if isinstance(output, Confirmed):
                confirmation = output.confirmation
                if self._anomalies is not None:
                    confirmation = self._anomalies.flag(partition, confirmation)
                body = confirmation.to_dict()
                key = confirmation.order_id.encode()
                value = encode_json(body)
                self._out.send(topics.CONFIRMATIONS, key, value)
                self._history.put(
                    partition, history_key(confirmation.order_id, confirmation.seq), value
                )
                for sink in self._confirmation_sinks:
                    await sink(partition, key, confirmation, body, value, self._input_timestamp)
                self._confirmed[confirmation.exec_type._value_].inc()
                if confirmation.anomaly is not None:
                    await self._dead_letters.publish_status(
                        StatusType.ANOMALY,
                        anomaly_event_details(confirmation),
                        event_id=f"{source}:{partition}:{position}:{index}:anomaly",
                    )
            elif isinstance(output, Rejected):
                await self._dead_letters.reject(output)
            elif isinstance(output, StatusNotice):
                await self._dead_letters.publish_status(
                    output.type, output.details, event_id=f"{source}:{partition}:{position}:{index}"
                )
            elif isinstance(output, Dropped):
                self._metrics.dropped.labels(output.kind.value).inc()

    async def set_aside(self, record: InputRecord, error: str) -> None:
        """Move on past an input record whose processing keeps failing (dead-lettered, with an
        ERROR status event for the operators)."""
        await self._dead_letters.set_aside(record, error)
