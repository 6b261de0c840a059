"""A worker's own part of a book query, over real RocksDB tables: scans in slices, pages by
key, and leaves out a partition it stops holding while it reads."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from execdist.domain import OrderState, apply_order
from execdist.domain.book import merge_pages, parse_order_query, parse_position_query
from execdist.services.book import SCAN_CHUNK, BookReader
from execdist.settings import Settings
from execdist.tables.declarations import ORDER_STATE, POSITIONS, table_specs
from execdist.tables.store import PartitionedState, RocksTables
from tests.unit.domain.fixtures import make_order

PER_PARTITION = SCAN_CHUNK * 2 + 17


@pytest.fixture
def rocks(tmp_path: Path) -> Iterator[RocksTables]:
    tables = RocksTables(tmp_path, table_specs("book-test"), 8 * 1024 * 1024)
    for name in (ORDER_STATE, POSITIONS):
        for partition in (0, 1):
            tables.open(name, partition, fresh=True)
    yield tables
    tables.close_all()


def fill(rocks: RocksTables, partitions: tuple[int, ...]) -> tuple[PartitionedState, list[str]]:
    """Orders ``ORD-<partition>-<n>`` in each partition, committed; returns their ids."""
    states = PartitionedState(rocks, rocks.specs[ORDER_STATE])
    now = datetime.now(UTC)
    ids = []
    for partition in partitions:
        for n in range(PER_PARTITION):
            order_id = f"ORD-{partition}-{n:04d}"
            state = OrderState.new(order_id, now)
            apply_order(state, dataclasses.replace(make_order(), order_id=order_id), now)
            states.put(partition, order_id.encode(), orjson.dumps(state.to_dict()))
            ids.append(order_id)
    states.committed()
    return states, sorted(ids)


class Owner:
    """Stands in for the engine: the partitions it owns, as they are when asked."""

    def __init__(self, owned: set[int]) -> None:
        self.owned = owned

    @property
    def partitions(self) -> list[int]:
        return sorted(self.owned)


def reader_for(rocks: RocksTables, states: PartitionedState, owned: set[int]) -> BookReader:
    positions = PartitionedState(rocks, rocks.specs[POSITIONS])
    return BookReader(Settings(), states, positions, Owner(owned))


async def test_pages_through_more_than_one_slice_per_partition(rocks: RocksTables) -> None:
    states, ids = fill(rocks, (0, 1))
    reader = reader_for(rocks, states, {0, 1})
    seen: list[str] = []
    query = parse_order_query({"limit": "300"})
    while True:
        page = merge_pages(query, [await reader.answer(query, {0, 1})], (0, 1))
        assert not page.partial
        seen.extend(str(item["order_id"]) for item in page.items)
        if page.next_cursor is None:
            break
        query = parse_order_query({"limit": "300", "cursor": page.next_cursor})
    assert seen == ids


async def test_answers_only_for_the_partitions_asked_and_held(rocks: RocksTables) -> None:
    states, _ = fill(rocks, (0, 1))
    reader = reader_for(rocks, states, {1})
    answer = await reader.answer(parse_order_query({"limit": "1000"}), {0, 1})
    assert answer.partitions == {1}
    assert {key.split("-")[1] for key, _ in answer.items} == {"1"}
    assert not answer.more and len(answer.items) == PER_PARTITION


async def test_a_partition_lost_while_it_is_read_is_left_out(rocks: RocksTables) -> None:
    states, _ = fill(rocks, (1,))
    owned = {0, 1}
    reader = reader_for(rocks, states, owned)

    async def rebalance() -> None:
        await asyncio.sleep(0)  # the scan has read its first slice of partition 1 by now
        owned.discard(1)
        rocks.close(ORDER_STATE, 1)

    answer, _ = await asyncio.gather(
        reader.answer(parse_order_query({"limit": "1000"}), {0, 1}), rebalance()
    )
    assert answer.partitions == {0}
    assert answer.items == []


async def test_positions_per_account(rocks: RocksTables) -> None:
    positions = PartitionedState(rocks, rocks.specs[POSITIONS])
    figures = {"bought_qty": "5", "bought_notional": "50", "sold_qty": "0", "sold_notional": "0"}
    positions.put(0, b"ACC-2", orjson.dumps({"AAPL": figures}))
    positions.put(1, b"ACC-1", orjson.dumps({"AAPL": figures, "SAP": figures}))
    positions.put(1, b"ACC-3", orjson.dumps({"SAP": figures}))
    positions.committed()
    reader = BookReader(
        Settings(), PartitionedState(rocks, rocks.specs[ORDER_STATE]), positions, Owner({0, 1})
    )
    answer = await reader.answer(parse_position_query({"symbol": "AAPL"}), {0, 1})
    assert [key for key, _ in answer.items] == ["ACC-1", "ACC-2"]
    assert answer.items[0][1] == {
        "account": "ACC-1",
        "positions": [{"symbol": "AAPL", "net_qty": "5", **figures}],
    }
