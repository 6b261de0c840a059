"""The per-order state machine that joins executions with their order into confirmations.

Each transition takes an :class:`OrderState` and one event and returns a :class:`Step`: the
state (the same object, updated in place) and the outputs to publish, in order. Nothing here
reads the clock; ``now`` is always passed in, so replaying the same events at the same times
gives the same results.

The rules, in the order they are checked for an execution:

1. **Dedup.** An exec_id seen before (held, applied or refused for a bad reference) with
   identical content is dropped; with other content it is rejected (CONFLICTING_DUPLICATE).
2. **Seq ownership.** A seq already held or applied under another exec_id is rejected
   (CONFLICTING_DUPLICATE).
3. **Sequencing.** Without the order, or ahead of ``next_seq``, the execution is held. At
   ``next_seq`` it is applied, and then every held successor in turn. A seq skipped by an
   earlier gap timeout is applied late, with a SEQUENCE_GAP notice, so no real fill is lost.
4. **Applying.** TRADE adds a live fill; CORRECT replaces and BUST removes the fill of the
   trade its reference resolves to (a reference to a CORRECT resolves to the corrected trade).
   A reference that is unknown, or whose trade is busted, is rejected (UNKNOWN_REFERENCE) but
   still takes its seq, so one bad record cannot stall the order.

Time-driven rules live in :func:`on_tick`: a gap open for ``gap_timeout`` is reported and
jumped; executions without an order for ``orphan_timeout`` are rejected (ORPHAN_EXECUTION).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import NamedTuple

from execdist.domain.errors import InvalidState, MisroutedEvent
from execdist.domain.fills import Fill, summarize_fills
from execdist.domain.model import (
    Confirmation,
    ExecType,
    Execution,
    Order,
    OrderStatus,
    RejectReason,
    StatusType,
    format_decimal,
    parse_stored_time,
)
from execdist.domain.order_state import (
    HeldExecution,
    OrderState,
    SeenExecution,
    SeqRange,
    content_fingerprint,
    require_json_compatible,
)
from execdist.domain.outputs import (
    Confirmed,
    DropKind,
    Dropped,
    Output,
    Rejected,
    StatusNotice,
)

__all__ = [
    "MAX_LISTED_SEQS",
    "Step",
    "apply_execution",
    "apply_order",
    "is_expired",
    "next_tick_due",
    "on_tick",
    "stored_state_expired",
]

MAX_LISTED_SEQS = 1000
"""Most missing seqs listed in one SEQUENCE_GAP notice; ``missing_count`` always has them all."""


class Step(NamedTuple):
    """The result of one transition: the (updated) state and the outputs, in publish order."""

    state: OrderState
    outputs: list[Output]


def apply_order(state: OrderState, order: Order, now: datetime) -> Step:
    """Take in an order version; the first one releases executions that were waiting for it.

    A higher version replaces the held order (later confirmations use its quantity); a version
    at or below the held one is a replay and is dropped.
    """
    _check_routing(state, order.order_id, "order")
    state.last_activity = now
    current = state.order
    if current is not None and order.version <= current.version:
        state.stale_orders_ignored += 1
        return Step(state, [Dropped(DropKind.STALE_ORDER)])
    state.order = order
    outputs: list[Output] = []
    if current is None:
        _release_in_sequence(state, now, outputs)
        _track_gap(state, now)
    return Step(state, outputs)


def apply_execution(state: OrderState, execution: Execution, origin: object, now: datetime) -> Step:
    """Take in an execution; apply it, hold it, or refuse it.

    ``origin`` must be JSON-compatible (see :mod:`execdist.domain.order_state`); it is stored
    with a held execution and handed back in any :class:`Rejected` about this execution.
    """
    _check_routing(state, execution.order_id, "execution")
    require_json_compatible(origin)
    state.last_activity = now
    fingerprint = content_fingerprint(execution)

    seen = state.seen.get(execution.exec_id)
    if seen is not None:
        if seen.fingerprint == fingerprint:
            state.duplicates_dropped += 1
            return Step(state, [Dropped(DropKind.DUPLICATE)])
        message = (
            f"exec_id {execution.exec_id!r} of order {state.order_id!r} was already received "
            "with different content; an execution may be repeated only unchanged"
        )
        return Step(
            state,
            [Rejected(RejectReason.CONFLICTING_DUPLICATE, message, origin, execution.exec_id)],
        )

    owner = _seq_owner(state, execution.seq)
    if owner is not None:
        message = (
            f"seq {execution.seq} of order {state.order_id!r} is already taken by exec_id "
            f"{owner!r}; exec_id {execution.exec_id!r} cannot take it too"
        )
        return Step(
            state,
            [Rejected(RejectReason.CONFLICTING_DUPLICATE, message, origin, execution.exec_id)],
        )

    state.seen[execution.exec_id] = SeenExecution(fingerprint, execution.seq)
    outputs: list[Output] = []
    if state.order is None or execution.seq > state.next_seq:
        state.held[execution.seq] = HeldExecution(execution, origin, held_since=now)
    elif execution.seq == state.next_seq:
        _apply(state, execution, origin, now, outputs)
        state.next_seq += 1
        _release_in_sequence(state, now, outputs)
    else:  # a seq jumped over by a gap timeout has turned up after all
        _unskip(state, execution.seq)
        _apply(state, execution, origin, now, outputs)
        details: dict[str, object] = {
            "order_id": state.order_id,
            "late_seq": execution.seq,
            "exec_id": execution.exec_id,
            "late": True,
        }
        outputs.append(StatusNotice(StatusType.SEQUENCE_GAP, details))
    _track_gap(state, now)
    return Step(state, outputs)


def on_tick(
    state: OrderState,
    now: datetime,
    *,
    gap_timeout: timedelta,
    orphan_timeout: timedelta,
    read_until: datetime | None = None,
) -> Step:
    """Apply the time-driven rules: report and jump an old gap, reject old orphans.

    Call it periodically for every state with held executions (see :func:`next_tick_due`).
    ``read_until`` is how far the inputs are read, if not up to ``now``: an order or a missing
    seq written later may still come, so the timeouts are judged against it (what they
    release is applied at ``now``).
    """
    outputs: list[Output] = []
    judged = now if read_until is None else min(now, read_until)
    if state.order is None:
        _reject_orphans(state, judged, orphan_timeout, outputs)
    elif state.gap_since is not None and judged - state.gap_since >= gap_timeout:
        _jump_gap(state, now, outputs)
    if outputs:
        state.last_activity = now
    return Step(state, outputs)


def next_tick_due(
    state: OrderState, *, gap_timeout: timedelta, orphan_timeout: timedelta
) -> datetime | None:
    """When :func:`on_tick` would next do something for this state; ``None`` if never.

    Lets the wiring keep a small index of states to revisit instead of scanning every key.
    """
    if not state.held:
        return None
    if state.order is None:
        return min(held.held_since for held in state.held.values()) + orphan_timeout
    if state.gap_since is not None:
        return state.gap_since + gap_timeout
    return None


def is_expired(state: OrderState, now: datetime, retention: timedelta) -> bool:
    """True when the state may be deleted: nothing is waiting and it has been idle long enough.

    Measured from the last activity, filled or not, so state stays bounded even for orders
    that never complete. A record for the order arriving after deletion starts afresh, so the
    retention must outlast any redelivery or replay the sources may still produce.
    """
    return not state.held and now - state.last_activity >= retention


def stored_state_expired(data: Mapping[str, object], now: datetime, retention: timedelta) -> bool:
    """:func:`is_expired` of a state stored by :meth:`OrderState.to_dict`, read from the two
    fields it needs: expiry sweeps look at many states and delete few, so they skip decoding
    the order and its confirmation history. :class:`InvalidState` if ``data`` is not a state."""
    try:
        held = data["held"]
        last_activity = parse_stored_time(data["last_activity"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidState(f"stored order state cannot be read: {exc!r}") from exc
    return not held and now - last_activity >= retention


def _check_routing(state: OrderState, order_id: str, what: str) -> None:
    if order_id != state.order_id:
        raise MisroutedEvent(
            f"{what} for order {order_id!r} given to the state of order {state.order_id!r}"
        )


def _seq_owner(state: OrderState, seq: int) -> str | None:
    """The exec_id already holding ``seq``, or ``None`` if the seq is free to take."""
    held = state.held.get(seq)
    if held is not None:
        return held.execution.exec_id
    if seq < state.next_seq and not state.is_skipped(seq):
        for exec_id, seen in state.seen.items():
            if seen.seq == seq:
                return exec_id
        return "(forgotten)"  # not reachable while seen covers every applied seq
    return None


def _release_in_sequence(state: OrderState, now: datetime, outputs: list[Output]) -> None:
    """Apply held executions for as long as the next seq is among them."""
    if state.order is None:
        return
    while (held := state.held.pop(state.next_seq, None)) is not None:
        _apply(state, held.execution, held.origin, now, outputs)
        state.next_seq += 1


def _track_gap(state: OrderState, now: datetime) -> None:
    """Start the gap clock when the order waits on a missing seq; stop it when none is."""
    if state.order is not None and state.held:
        if state.gap_since is None:
            state.gap_since = now
    else:
        state.gap_since = None


def _jump_gap(state: OrderState, now: datetime, outputs: list[Output]) -> None:
    """Report the gap, remember the missing seqs, and apply everything held in seq order."""
    held_seqs = sorted(state.held)
    expected_seq = state.next_seq
    missing: list[SeqRange] = []
    first_missing = expected_seq
    for seq in held_seqs:
        if seq > first_missing:
            missing.append(SeqRange(first_missing, seq - 1))
        first_missing = seq + 1
    missing_count = sum(len(gap) for gap in missing)
    listed = [seq for gap in missing for seq in range(gap.first, gap.last + 1)]
    details: dict[str, object] = {
        "order_id": state.order_id,
        "expected_seq": expected_seq,
        "missing_seqs": listed[:MAX_LISTED_SEQS],
        "missing_count": missing_count,
        "released_seqs": held_seqs,
    }
    outputs.append(StatusNotice(StatusType.SEQUENCE_GAP, details))
    state.skipped.extend(missing)
    for seq in held_seqs:
        held = state.held.pop(seq)
        _apply(state, held.execution, held.origin, now, outputs)
    state.next_seq = held_seqs[-1] + 1
    state.gap_since = None


def _unskip(state: OrderState, seq: int) -> None:
    """Remove ``seq`` from the skipped ranges, splitting the range it was in."""
    remaining: list[SeqRange] = []
    for skipped in state.skipped:
        if seq in skipped:
            if skipped.first < seq:
                remaining.append(SeqRange(skipped.first, seq - 1))
            if seq < skipped.last:
                remaining.append(SeqRange(seq + 1, skipped.last))
        else:
            remaining.append(skipped)
    state.skipped = remaining


def _reject_orphans(
    state: OrderState, now: datetime, orphan_timeout: timedelta, outputs: list[Output]
) -> None:
    """Refuse executions whose order has not come in time, and forget them entirely.

    Forgetting the exec_id means a later redelivery is judged afresh rather than dropped as a
    duplicate of something that was never confirmed.
    """
    for seq in sorted(state.held):
        held = state.held[seq]
        if now - held.held_since < orphan_timeout:
            continue
        del state.held[seq]
        state.seen.pop(held.execution.exec_id, None)
        message = (
            f"execution {held.execution.exec_id!r} (seq {seq}) waited "
            f"{orphan_timeout.total_seconds():g} s for order {state.order_id!r}, "
            "which never arrived"
        )
        outputs.append(
            Rejected(RejectReason.ORPHAN_EXECUTION, message, held.origin, held.execution.exec_id)
        )


def _apply(
    state: OrderState,
    execution: Execution,
    origin: object,
    now: datetime,
    outputs: list[Output],
) -> None:
    """Apply one execution in its turn: change the live fills and confirm, or refuse it."""
    order = state.order
    assert order is not None, "executions are applied only once the order is present"
    if execution.exec_type is ExecType.TRADE:
        trade_id = execution.exec_id
        state.live_fills[trade_id] = Fill(execution.last_qty, execution.last_px)
    else:
        resolved = _resolve_reference(state, execution)
        if isinstance(resolved, Rejected):
            outputs.append(Rejected(resolved.reason, resolved.message, origin, execution.exec_id))
            return
        trade_id = resolved
        if execution.exec_type is ExecType.CORRECT:
            state.live_fills[trade_id] = Fill(execution.last_qty, execution.last_px)
        else:
            del state.live_fills[trade_id]
    state.trade_of[execution.exec_id] = trade_id

    summary = summarize_fills(order.quantity, state.live_fills)
    previous_status = state.last_confirmed_status or OrderStatus.UNFILLED
    # by position, each value named by the field it fills where its own name differs:
    # matching nineteen keywords costs about 0.7 us, more than building the confirmation
    confirmation = Confirmation(
        execution.exec_id,  # confirmation_id
        execution.exec_id,
        order.order_id,
        order.account,
        order.symbol,
        order.side,
        execution.venue,
        execution.exec_type,
        execution.ref_exec_id,
        execution.seq,
        execution.last_qty,
        execution.last_px,
        summary.cum_qty,
        summary.leaves_qty,
        summary.avg_px,
        order.quantity,  # order_qty
        summary.order_status,
        execution.exec_time,
        now,  # confirmed_at
    )
    state.confirmation_count += 1
    state.last_confirmed_status = confirmation.order_status
    outputs.append(Confirmed(confirmation))
    if (
        summary.order_status is OrderStatus.OVERFILLED
        and previous_status is not OrderStatus.OVERFILLED
    ):
        details: dict[str, object] = {
            "order_id": order.order_id,
            "order_qty": format_decimal(order.quantity),
            "cum_qty": format_decimal(summary.cum_qty),
            "exec_id": execution.exec_id,
        }
        outputs.append(StatusNotice(StatusType.OVERFILL, details))


def _resolve_reference(state: OrderState, execution: Execution) -> str | Rejected:
    """The live trade a CORRECT or BUST acts on, or why there is none."""
    reference = execution.ref_exec_id
    trade_id = None if reference is None else state.trade_of.get(reference)
    if trade_id is None:
        message = (
            f"{execution.exec_type.value} {execution.exec_id!r} refers to {reference!r}, "
            f"which is not an earlier applied execution of order {state.order_id!r}"
        )
        return Rejected(RejectReason.UNKNOWN_REFERENCE, message, None)
    if trade_id not in state.live_fills:
        message = (
            f"{execution.exec_type.value} {execution.exec_id!r} refers to {reference!r}, "
            f"whose trade {trade_id!r} has already been busted"
        )
        return Rejected(RejectReason.UNKNOWN_REFERENCE, message, None)
    return trade_id
