"""Backfill from the confirmation history: what it delivers, in what order, in slices, and when
live confirmations of an order may pass.

Real RocksDB tables in a temporary folder; the subscriber output is replaced by a recorder of
what would be delivered (the whole path runs on the broker in tests/integration).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from execdist.agents.backfill import DONE, SubscriptionBackfill, progress_key
from execdist.agents.subscriber_output import Encodings
from execdist.codecs.output import encode_json
from execdist.domain.routing import SubscriptionIndex
from execdist.domain.subscriptions import Filter, Subscription
from execdist.metrics import Metrics
from execdist.runtime.topology import PunctuationContext
from execdist.tables.declarations import HISTORY, TIMERS, history_key, table_specs
from execdist.tables.store import PartitionedState, RocksTables
from tests.unit.domain.test_subscriptions import T0, make_confirmation, make_subscription


class Delivered:
    """Stands in for the subscriber output: records (subscription, order, exec id)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, str]] = []

    async def deliver(
        self,
        subscription: Subscription,
        key: bytes,
        body: dict[str, object],
        encodings: Encodings,
    ) -> None:
        assert orjson.loads(encodings.json) == body, "the history's bytes are delivered as JSON"
        self.records.append((subscription.id, key.decode(), str(body["exec_id"])))


@pytest.fixture
def tables(tmp_path: Path) -> Iterator[tuple[PartitionedState, PartitionedState]]:
    rocks = RocksTables(tmp_path, table_specs("backfill-test"), 8 * 1024 * 1024)
    for name in (HISTORY, TIMERS):
        rocks.open(name, 0, fresh=True)
    yield (
        PartitionedState(rocks, rocks.specs[HISTORY]),
        PartitionedState(rocks, rocks.specs[TIMERS]),
    )
    rocks.close_all()


def confirm(history: PartitionedState, order_id: str, seq: int, symbol: str, minutes: int) -> None:
    confirmation = dataclasses.replace(
        make_confirmation(symbol=symbol),
        order_id=order_id,
        exec_id=f"{order_id}-E{seq}",
        confirmation_id=f"{order_id}-E{seq}",
        seq=seq,
        confirmed_at=T0 + timedelta(minutes=minutes),
    )
    history.put(0, history_key(order_id, seq), encode_json(confirmation.to_dict()))


def setup(
    tables: tuple[PartitionedState, PartitionedState], slice_s: float = 0.05, **filter_: object
) -> tuple[SubscriptionBackfill, Delivered, Subscription]:
    history, timers = tables
    subscription = dataclasses.replace(
        make_subscription("bf-1", Filter.parse(filter_ or None)),
        backfill_from=T0 + timedelta(minutes=10),
    )
    index = SubscriptionIndex()
    index.upsert(subscription)
    delivered = Delivered()
    backfill = SubscriptionBackfill(history, timers, index, delivered, Metrics(), slice_s)  # type: ignore[arg-type]
    return backfill, delivered, subscription


async def test_it_delivers_what_matches_since_the_time_per_order_in_seq_order(tables) -> None:
    history, timers = tables
    for order_id, symbol in (("ORD-B", "AAPL"), ("ORD-A", "AAPL"), ("ORD-C", "MSFT")):
        for seq, minutes in ((1, 5), (2, 15), (3, 20)):
            confirm(history, order_id, seq, symbol, minutes)
    backfill, delivered, subscription = setup(tables, symbols=["AAPL"])
    await backfill.punctuate(PunctuationContext(0))
    assert delivered.records == [
        ("bf-1", "ORD-A", "ORD-A-E2"),
        ("bf-1", "ORD-A", "ORD-A-E3"),
        ("bf-1", "ORD-B", "ORD-B-E2"),
        ("bf-1", "ORD-B", "ORD-B-E3"),
    ], "before backfill_from and other symbols left out; seq 1 predates it"
    assert timers.get(0, progress_key("bf-1")) == DONE
    assert backfill.admits(0, subscription, "ORD-Z")
    await backfill.punctuate(PunctuationContext(0))
    assert len(delivered.records) == 4, "a finished backfill delivers nothing again"


async def test_slices_stop_between_orders_and_live_ones_pass_only_walked_orders(
    tables,
) -> None:
    history, _ = tables
    for n in range(5):
        for seq in (1, 2):
            confirm(history, f"ORD-{n}", seq, "AAPL", 30)
    backfill, delivered, subscription = setup(tables, slice_s=-1.0)  # one order a tick
    assert not backfill.admits(0, subscription, "ORD-0"), "nothing walked yet"
    await backfill.punctuate(PunctuationContext(0))
    assert [r[2] for r in delivered.records] == ["ORD-0-E1", "ORD-0-E2"], "a whole order"
    assert backfill.admits(0, subscription, "ORD-0")
    assert not backfill.admits(0, subscription, "ORD-1"), "its live records wait for the walk"
    # the history gets a new confirmation of an order not walked yet (uncommitted): the walk
    # delivers it in its place
    confirm(history, "ORD-3", 3, "AAPL", 31)
    for _ in range(10):
        await backfill.punctuate(PunctuationContext(0))
    assert [r[2] for r in delivered.records] == [
        f"ORD-{n}-E{seq}" for n in range(5) for seq in ((1, 2, 3) if n == 3 else (1, 2))
    ]
    assert backfill.admits(0, subscription, "ORD-1")


async def test_a_subscription_without_backfill_is_not_walked(tables) -> None:
    history, timers = tables
    confirm(history, "ORD-1", 1, "AAPL", 30)
    _, delivered, subscription = setup(tables)
    live_only = dataclasses.replace(subscription, backfill_from=None)
    index = SubscriptionIndex()
    index.upsert(live_only)
    plain = SubscriptionBackfill(history, timers, index, delivered, Metrics())  # type: ignore[arg-type]
    await plain.punctuate(PunctuationContext(0))
    assert delivered.records == []
    assert timers.get(0, progress_key("bf-1")) is None
