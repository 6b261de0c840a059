"""The positions agent: a change folds at once where this worker holds the account's partition,
and goes through the repartition topic otherwise; the sums do not depend on the way taken.

The table is a real RocksDB database in a temporary folder; what would be sent in the worker's
transaction is recorded instead of produced.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from execdist import topics
from execdist.agents.positions import PositionsProcessor
from execdist.domain.model import Side
from execdist.domain.positions import PositionChange
from execdist.runtime.records import InputRecord
from execdist.tables.declarations import POSITIONS, table_specs
from execdist.tables.store import PartitionedState, RocksTables
from execdist.topics import key_partition

PARTITIONS = 4


class Recorder:
    """Stands in for the worker's transaction: records what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, int | None]] = []

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        partition: int | None = None,
        **_: object,
    ) -> None:
        self.sent.append((topic, key, value, partition))


async def _no_set_aside(record: InputRecord, error: str) -> None:
    raise AssertionError(f"nothing should be set aside: {error}")


@pytest.fixture
def rocks(tmp_path: Path) -> Iterator[RocksTables]:
    tables = RocksTables(tmp_path, table_specs("positions-test"), 8 * 1024 * 1024)
    yield tables
    tables.close_all()


Parts = tuple[PositionsProcessor, Recorder, PartitionedState]


def _agent(rocks: RocksTables, held: list[int]) -> Parts:
    """An agent on a worker that holds the ``held`` partitions of the positions table."""
    table = PartitionedState(rocks, rocks.specs[POSITIONS])
    for partition in held:
        rocks.open(POSITIONS, partition, fresh=True)
    recorder = Recorder()
    return PositionsProcessor(table, recorder, PARTITIONS, _no_set_aside), recorder, table


def _change(account: str, side: Side, qty: str, px: str) -> PositionChange:
    return PositionChange(account, "MSFT", side, Decimal(qty), Decimal(qty) * Decimal(px))


def _figures(table: PartitionedState, account: str) -> dict[str, str]:
    raw = table.get(key_partition(account.encode(), PARTITIONS), account.encode())
    assert raw is not None, f"{account} has no positions"
    return orjson.loads(raw)["MSFT"]


def test_a_change_of_an_account_held_here_is_folded_at_once_without_a_record(
    rocks: RocksTables,
) -> None:
    agent, recorder, table = _agent(rocks, held=list(range(PARTITIONS)))
    agent.change(_change("ACC-1", Side.BUY, "25", "10.5"))
    agent.change(_change("ACC-1", Side.SELL, "10", "11"))
    assert recorder.sent == [], "no hop through the repartition topic"
    assert _figures(table, "ACC-1") == {
        "bought_qty": "25",
        "bought_notional": "262.5",
        "sold_qty": "10",
        "sold_notional": "110",
    }


async def test_a_change_of_an_account_held_elsewhere_goes_to_its_partition(
    rocks: RocksTables,
) -> None:
    account = "ACC-7"
    home = key_partition(account.encode(), PARTITIONS)
    agent, recorder, _ = _agent(rocks, held=[p for p in range(PARTITIONS) if p != home])
    agent.change(_change(account, Side.BUY, "25", "10"))
    ((topic, key, value, partition),) = recorder.sent
    assert (topic, key, partition) == (topics.POSITIONS_BY_ACCOUNT, account.encode(), home)
    assert value is not None

    # the worker holding that partition folds it when it reads it
    there, sent_there, table = _agent(rocks, held=[home])
    await there.process(InputRecord(topics.POSITIONS_BY_ACCOUNT, home, 0, key, value, None))
    assert sent_there.sent == []
    assert _figures(table, account)["bought_qty"] == "25"
    assert _figures(table, account)["bought_notional"] == "250"


async def test_the_sums_are_the_same_whichever_way_each_change_took(rocks: RocksTables) -> None:
    account = "ACC-3"
    home = key_partition(account.encode(), PARTITIONS)
    changes = [
        _change(account, Side.BUY, "25", "10.25"),
        _change(account, Side.BUY, "-25", "10.25"),  # a bust
        _change(account, Side.BUY, "30", "10.5"),
        _change(account, Side.SELL_SHORT, "5", "9.75"),
    ]
    agent, _, table = _agent(rocks, held=[home])
    # the first two arrive late through the topic, the others are folded at once before them
    for change in changes[2:]:
        agent.change(change)
    for offset, change in enumerate(changes[:2]):
        value = orjson.dumps(change.to_dict())
        await agent.process(
            InputRecord(topics.POSITIONS_BY_ACCOUNT, home, offset, account.encode(), value, None)
        )
    assert _figures(table, account) == {
        "bought_qty": "30",
        "bought_notional": "315",
        "sold_qty": "5",
        "sold_notional": "48.75",
    }
