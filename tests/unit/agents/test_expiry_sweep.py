"""The join's expiry sweep over a partition's RocksDB tables, with outputs captured in memory.

The tables are real RocksDB databases in a temporary folder; what the join would send in its
partition's transaction is recorded instead of produced.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest

from execdist.agents.join import SWEEP_BATCH, JoinProcessor
from execdist.codecs.input import InputDecoder
from execdist.domain import OrderState, apply_execution
from execdist.metrics import Metrics
from execdist.settings import Settings
from execdist.tables.declarations import (
    HISTORY,
    ORDER_STATE,
    TIMERS,
    history_key,
    history_prefix,
    table_specs,
)
from execdist.tables.store import PartitionedState, RocksTables
from tests.unit.domain.fixtures import T0, trade

RETENTION = timedelta(minutes=10)


class Recorder:
    """Stands in for a partition's transaction: records what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []

    def send(self, topic: str, key: bytes | None, value: bytes | None, **_: object) -> None:
        self.sent.append((topic, key, value))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


Parts = tuple[JoinProcessor, PartitionedState, PartitionedState, Clock]


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    settings = Settings(app_id="sweep-test", order_retention=RETENTION)
    rocks = RocksTables(tmp_path, table_specs(settings.app_id), 8 * 1024 * 1024)
    recorder = Recorder()
    tables = {
        name: PartitionedState(rocks, rocks.specs[name]) for name in (ORDER_STATE, TIMERS, HISTORY)
    }
    for name in tables:
        rocks.open(name, 0, fresh=True)
    clock = Clock()
    join = JoinProcessor(
        settings=settings,
        states=tables[ORDER_STATE],
        timers=tables[TIMERS],
        history=tables[HISTORY],
        out=recorder,
        decoder=InputDecoder(None),
        metrics=Metrics(),
        clock=clock,
    )
    yield join, tables[ORDER_STATE], tables[HISTORY], clock
    rocks.close_all()


async def store_orders(
    states: PartitionedState, history: PartitionedState, ids: list[str], at: datetime = T0
) -> None:
    """Orders last active ``at``, each with one confirmation in the history, committed."""
    for order_id in ids:
        state = OrderState.new(order_id, at)
        states.put(0, order_id.encode(), orjson.dumps(state.to_dict()))
        history.put(0, history_key(order_id, 1), b"{}")
    states.committed()
    history.committed()


def keys(table: PartitionedState) -> list[bytes]:
    return list(table.keys_from(0, None, 1_000_000))


async def tick(join: JoinProcessor, *tables: PartitionedState) -> None:
    await join.punctuate(0)
    for table in tables:
        table.committed()


async def test_the_sweep_goes_round_the_partition_and_takes_the_history_along(parts) -> None:
    join, states, history, clock = parts
    await store_orders(states, history, [f"OLD-{n:04d}" for n in range(120)])

    async def tick_with_new_orders(label: str) -> None:
        # new order ids sort after the old ones, as growing ids do
        await store_orders(states, history, [f"ZNEW-{label}-{n}" for n in range(5)], clock.now)
        clock.now += timedelta(seconds=1)
        await tick(join, states, history)

    for second in range(4):  # within the retention: the sweep passes every key, deletes none
        await tick_with_new_orders(f"A{second}")
    assert len(keys(states)) == 120 + 4 * 5
    clock.now = T0 + RETENTION + timedelta(seconds=10)  # the old orders and the A ones expire
    for second in range(5):
        await tick_with_new_orders(f"B{second}")
    assert [key for key in keys(states) if not key.startswith(b"ZNEW-B")] == []
    assert len(keys(states)) == 5 * 5, "the orders active within the retention stay"
    assert not any(key.startswith(history_prefix("OLD-0000")) for key in keys(history))
    assert len(keys(history)) == 5 * 5


async def test_the_sweep_examines_more_when_more_orders_are_created(parts) -> None:
    join, states, history, clock = parts
    old = [f"OLD-{n:04d}" for n in range(1000)]
    await store_orders(states, history, old)
    clock.now = T0 + RETENTION
    await tick(join, states, history)
    assert len(keys(states)) == 1000 - SWEEP_BATCH
    # orders created through the join since the last tick widen the next sweep
    for n in range(200):
        join._load(0, f"NEW-{n}", clock.now)
    await tick(join, states, history)
    assert len(keys(states)) == 1000 - SWEEP_BATCH - (SWEEP_BATCH + 2 * 200)


async def test_the_sweep_keeps_states_still_holding_executions_and_those_it_cannot_read(
    parts,
) -> None:
    join, states, history, clock = parts
    await store_orders(states, history, ["DONE"])
    waiting = OrderState.new("WAITING", T0)
    apply_execution(waiting, trade("EX-1", 1, "10", "187.45", order_id="WAITING"), {}, T0)
    assert waiting.held, "an execution before its order is held"
    states.put(0, b"WAITING", orjson.dumps(waiting.to_dict()))
    states.put(0, b"GARBLED", b"{not json")
    states.put(0, b"PARTIAL", orjson.dumps({"held": []}))  # no last_activity
    states.committed()
    clock.now = T0 + RETENTION + timedelta(seconds=1)
    await tick(join, states, history)
    assert keys(states) == [b"GARBLED", b"PARTIAL", b"WAITING"]
    assert keys(history) == []
