"""The comparison of two revisions' confirmations: what it holds the same, what it ignores."""

from __future__ import annotations

from collections import Counter

import orjson

from bench.same_confirmations import (
    STATUS_WALL_CLOCK_FIELDS,
    WALL_CLOCK_FIELDS,
    closing_records,
    comparable,
    differences,
    inputs,
)
from execdist import topics

CONFIRMATION = {"order_id": "O-1", "exec_id": "E-1", "leaves_qty": "100", "confirmed_at": "t1"}


def untimed(value: bytes) -> dict[str, object]:
    """A record's fields but its time (the demo flow stamps each as it is made)."""
    return {k: v for k, v in orjson.loads(value).items() if k not in ("exec_time", "event_time")}


def test_the_inputs_are_the_same_for_a_seed_and_exercise_the_join() -> None:
    """Made once per comparison, and replayed byte for byte into both workers."""
    first, again = inputs(200, seed=7), inputs(200, seed=7)
    assert [(r.topic, r.key, untimed(r.value)) for r in first] == [
        (r.topic, r.key, untimed(r.value)) for r in again
    ]
    executions = [orjson.loads(r.value) for r in first if r.topic == topics.EXECUTIONS]
    assert {e["exec_type"] for e in executions} == {"TRADE", "CORRECT", "BUST"}
    assert max(Counter(e["exec_id"] for e in executions).values()) == 2, "repeats"
    orders_seen: set[bytes] = set()
    fills_before_order = 0
    for record in first:
        if record.topic == topics.ORDERS:
            orders_seen.add(record.key)
        elif record.key not in orders_seen:
            fills_before_order += 1
    assert fills_before_order > 0
    assert sum(1 for r in first if r.topic == topics.ORDERS) > 200, "amendments"


def test_a_closing_order_lands_in_each_input_partition() -> None:
    closing = closing_records("abc")
    partitions = {topics.key_partition(r.key, 4) for r in closing if r.topic == topics.ORDERS}
    assert partitions == {0, 1, 2, 3}
    assert [r.topic for r in closing].count(topics.EXECUTIONS) == 4


def test_only_the_wall_clock_is_ignored() -> None:
    base = comparable([CONFIRMATION], WALL_CLOCK_FIELDS)
    later = comparable([{**CONFIRMATION, "confirmed_at": "t2"}], WALL_CLOCK_FIELDS)
    changed = comparable([{**CONFIRMATION, "leaves_qty": "0"}], WALL_CLOCK_FIELDS)

    assert differences(base, later) == []
    (found,) = differences(base, changed)
    assert found.startswith("O-1: base 1 record(s), new 1") and '"leaves_qty":"0"' in found


def test_order_within_an_order_counts_and_status_events_go_by_their_order() -> None:
    second = {**CONFIRMATION, "exec_id": "E-2"}
    assert differences(
        comparable([CONFIRMATION, second], WALL_CLOCK_FIELDS),
        comparable([second, CONFIRMATION], WALL_CLOCK_FIELDS),
    )
    event = {"type": "OVERFILL", "time": "t1", "source": "w1", "details": {"order_id": "O-9"}}
    status = comparable([event], STATUS_WALL_CLOCK_FIELDS)
    assert list(status) == ["O-9"]
    assert status == comparable([{**event, "time": "t2", "source": "w2"}], STATUS_WALL_CLOCK_FIELDS)
