"""Conflation without a broker: one frame per order per interval, folding what it stands for,
never closed for slowness."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from execdist.relay.hub import ConflatingClient, InvalidConflation, parse_conflate


def record(order_id: str, sub_seq: int, cum_qty: int) -> bytes:
    return orjson.dumps({"order_id": order_id, "cum_qty": str(cum_qty), "sub_seq": sub_seq})


def offer_all(client: ConflatingClient, records: list[bytes], start: int = 0) -> None:
    for offset, value in enumerate(records, start):
        client.offer(0, offset, value)


async def test_a_flush_has_one_frame_per_order_with_its_latest_record_and_folded() -> None:
    client = ConflatingClient(position={0: 0}, interval_s=0.05)
    offer_all(
        client,
        [
            record("A", 1, 100),
            record("B", 2, 50),
            record("A", 3, 200),
            record("C", 4, 10),
            record("A", 5, 300),
        ],
    )
    frames = await client.next_batch(100)
    got = [
        (orjson.loads(f.value)["order_id"], orjson.loads(f.value)["sub_seq"], f.folded)
        for f in frames
    ]
    assert got == [("B", 2, None), ("C", 4, None), ("A", 5, [1, 3, 5])]
    assert orjson.loads(frames[-1].value)["cum_qty"] == "300", "the order's latest state"
    assert [f.cursor for f in frames] == ["0:2", "0:4", "0:5"], "after each frame's own record"
    message = orjson.loads(frames[-1].websocket_message())
    assert message["folded"] == [1, 3, 5] and message["sub_seq"] == 5
    assert orjson.loads(frames[-1].value_with_folded())["folded"] == [1, 3, 5]
    assert "folded" not in orjson.loads(frames[0].websocket_message())


async def test_the_next_flush_waits_for_the_interval_and_folds_what_came_meanwhile() -> None:
    client = ConflatingClient(position={0: 0}, interval_s=0.2)
    offer_all(client, [record("A", 1, 1)])
    assert len(await client.next_batch(10)) == 1
    loop = asyncio.get_running_loop()
    started = loop.time()
    waiting = asyncio.create_task(client.next_batch(10))
    for n in range(2, 50):
        client.offer(0, n - 1, record("A", n, n))
        await asyncio.sleep(0.001)
    frames = await waiting
    assert loop.time() - started >= 0.19, "at most one frame per order per interval"
    assert len(frames) == 1
    assert frames[0].folded is not None and frames[0].folded[0] == 2
    rest = [] if frames[0].folded[-1] == 49 else (await client.next_batch(10))[0].folded or []
    assert [*frames[0].folded, *rest] == list(range(2, 50)), "every record is in one fold"


async def test_a_client_far_behind_is_conflated_not_closed() -> None:
    client = ConflatingClient(position={0: 0}, interval_s=0.05)
    offer_all(client, [record(f"O{n % 10}", n + 1, n) for n in range(10_000)])
    assert not client.too_slow
    frames = await client.next_batch(100)
    assert len(frames) == 10, "bounded by the orders, not the records"
    assert sorted(s for f in frames for s in (f.folded or [])) == list(range(1, 10_001))


async def test_a_heartbeat_wakes_a_quiet_client_with_nothing() -> None:
    client = ConflatingClient(position={0: 0}, interval_s=0.05)
    waiting = asyncio.create_task(client.next())
    for _ in range(5):
        client.tick()
    assert await asyncio.wait_for(waiting, 1) is None


@pytest.mark.parametrize("raw", ["49", "5001", "x", "-5", "1.5"])
def test_conflate_outside_50_to_5000_ms_is_refused(raw: str) -> None:
    with pytest.raises(InvalidConflation):
        parse_conflate(raw)


def test_conflate_absent_or_in_range() -> None:
    assert parse_conflate(None) is None
    assert parse_conflate("50") == 50
    assert parse_conflate(5000) == 5000
