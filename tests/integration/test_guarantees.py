"""Each guarantee of the contract on its own, through the real broker and one worker process.

One worker serves the whole module (timeouts shortened); every test uses order ids of its own
and reads back only its own outputs.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from confluent_kafka import Producer
from schema_registry.client import AsyncSchemaRegistryClient

from execdist import topics
from execdist.codecs import AvroEncoder
from tests.integration.conftest import (
    ADMIN_TOKEN,
    BROKER,
    CONTRACT_TOPICS,
    REGISTRY_URL,
    Worker,
    delete_topics,
    read_committed,
    start_all,
)

pytestmark = pytest.mark.integration

ORPHAN_TIMEOUT_S = 2
TICK_INTERVAL_S = 0.5
BACKLOG_ORDERS = 80_000


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    asyncio.run(delete_topics(CONTRACT_TOPICS))
    tmp: Path = tmp_path_factory.mktemp("guarantees")
    worker = Worker(
        app_id=f"execdist-guarantees-{uuid.uuid4().hex[:8]}",
        data_dir=tmp / "data",
        log_path=tmp / "worker.log",
        extra_env={
            "EXECDIST_GAP_TIMEOUT_S": "2",
            "EXECDIST_ORPHAN_TIMEOUT_S": str(ORPHAN_TIMEOUT_S),
            "EXECDIST_TICK_INTERVAL_S": str(TICK_INTERVAL_S),
        },
    )
    start_all([worker])
    yield worker
    worker.stop()


@pytest_asyncio.fixture
async def send(worker: Worker) -> AsyncIterator[object]:
    producer = AIOKafkaProducer(bootstrap_servers=BROKER, enable_idempotence=True)
    await producer.start()

    async def send(topic: str, record: dict[str, object] | bytes, key: str) -> None:
        value = record if isinstance(record, bytes) else orjson.dumps(record)
        await producer.send_and_wait(topic, value, key=key.encode())

    yield send
    await producer.stop()


def oid() -> str:
    return f"G-{uuid.uuid4().hex[:10]}"


def order(order_id: str, **fields: object) -> dict[str, object]:
    return {
        "order_id": order_id,
        "account": "ACC-G",
        "symbol": "MSFT",
        "side": "BUY",
        "quantity": "1000",
        "order_type": "LIMIT",
        "limit_price": "420.00",
        "currency": "USD",
        "version": 1,
        "event_time": "2026-11-26T09:30:00.000000Z",
        **fields,
    }


def execution(order_id: str, seq: int, **fields: object) -> dict[str, object]:
    return {
        "exec_id": f"{order_id}-X{seq}",
        "order_id": order_id,
        "seq": seq,
        "exec_type": "TRADE",
        "ref_exec_id": None,
        "last_qty": "100",
        "last_px": "415.10",
        "venue": "XNAS",
        "exec_time": "2026-11-26T09:30:01.000000Z",
        **fields,
    }


async def confirmations_of(order_id: str, count: int, timeout: float = 30.0) -> list[dict]:
    def mine(records: list) -> list[dict]:
        return [orjson.loads(r.value) for r in records if r.key == order_id.encode()]

    records = await read_committed(
        [topics.CONFIRMATIONS], lambda got: len(mine(got)) >= count, timeout
    )
    return mine(records)


async def dlq_of(key: str, count: int, timeout: float = 30.0) -> list:
    records = await read_committed(
        [topics.DLQ], lambda got: len([r for r in got if r.key == key.encode()]) >= count, timeout
    )
    return [r for r in records if r.key == key.encode()]


async def status_of(order_id: str, type_: str, timeout: float = 30.0) -> list[dict]:
    def mine(records: list) -> list[dict]:
        events = [orjson.loads(r.value) for r in records]
        return [e for e in events if e["type"] == type_ and order_id in orjson.dumps(e).decode()]

    records = await read_committed([topics.STATUS], lambda got: bool(mine(got)), timeout)
    return mine(records)


async def test_out_of_order_seq_is_confirmed_in_seq_order(send) -> None:
    o = oid()
    await send(topics.ORDERS, order(o), o)
    for seq in (3, 1, 2):
        await send(topics.EXECUTIONS, execution(o, seq), o)
    confirmations = await confirmations_of(o, 3)
    assert [c["seq"] for c in confirmations] == [1, 2, 3]
    assert [c["cum_qty"] for c in confirmations] == ["100", "200", "300"]


async def test_executions_before_their_order_are_held_then_confirmed(send) -> None:
    o = oid()
    await send(topics.EXECUTIONS, execution(o, 2), o)
    await send(topics.EXECUTIONS, execution(o, 1), o)
    await asyncio.sleep(0.5)
    await send(topics.ORDERS, order(o), o)
    confirmations = await confirmations_of(o, 2)
    assert [c["seq"] for c in confirmations] == [1, 2]
    assert confirmations[0]["account"] == "ACC-G"


async def test_a_large_execution_is_held_for_its_order(send, worker: Worker) -> None:
    # Unknown fields are allowed; a held execution keeps its original bytes (for the DLQ, should
    # its order never come), so this order's state is over Kafka's default 1 MB record size.
    o = oid()
    await send(topics.EXECUTIONS, execution(o, 1, padding=["p" * 1000] * 850), o)
    await asyncio.sleep(0.5)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=worker.url, headers=headers) as http:
        for _ in range(50):
            held = await http.get(f"/api/v1/orders/{o}")
            if held.status_code == 200:
                break
            await asyncio.sleep(0.2)
        assert [h["seq"] for h in held.json()["held_executions"]] == [1]
    await send(topics.ORDERS, order(o), o)
    (confirmation,) = await confirmations_of(o, 1)
    assert confirmation["seq"] == 1
    assert confirmation["cum_qty"] == "100"


async def test_amendment_changes_leaves_and_stale_replay_is_ignored(send, worker: Worker) -> None:
    # orders and executions are separate topics, read independently: each step waits until
    # the previous one is applied, so that the order of events is certain
    o = oid()
    await send(topics.ORDERS, order(o), o)
    await send(topics.EXECUTIONS, execution(o, 1), o)
    await confirmations_of(o, 1)
    await send(topics.ORDERS, order(o, version=2, quantity="500"), o)
    await send(topics.ORDERS, order(o, version=1, quantity="9000"), o)  # stale replay
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=worker.url, headers=headers) as http:
        for _ in range(100):
            state = (await http.get(f"/api/v1/orders/{o}")).json()
            if state["stale_orders_ignored"] == 1:
                break
            await asyncio.sleep(0.1)
    assert state["order"]["version"] == 2
    assert state["order"]["quantity"] == "500"
    assert state["stale_orders_ignored"] == 1
    await send(topics.EXECUTIONS, execution(o, 2), o)
    confirmations = await confirmations_of(o, 2)
    assert [c["order_qty"] for c in confirmations] == ["1000", "500"]
    assert confirmations[1]["leaves_qty"] == "300"


async def test_identical_duplicate_is_dropped_and_conflicting_one_dead_lettered(send) -> None:
    o = oid()
    await send(topics.ORDERS, order(o), o)
    await send(topics.EXECUTIONS, execution(o, 1), o)
    await send(topics.EXECUTIONS, execution(o, 1), o)  # identical repeat
    await send(topics.EXECUTIONS, execution(o, 1, last_qty="999"), o)  # same exec_id, other content
    await send(topics.EXECUTIONS, execution(o, 2), o)
    confirmations = await confirmations_of(o, 2)
    assert [c["exec_id"] for c in confirmations] == [f"{o}-X1", f"{o}-X2"]
    (dead,) = await dlq_of(o, 1)
    assert dict(dead.headers)["error.reason"] == b"CONFLICTING_DUPLICATE"
    assert orjson.loads(dead.value)["last_qty"] == "999"


async def test_correction_and_bust_give_exact_cum_and_avg(send) -> None:
    o = oid()
    await send(topics.ORDERS, order(o), o)
    await send(topics.EXECUTIONS, execution(o, 1, last_qty="100", last_px="10.10"), o)
    await send(topics.EXECUTIONS, execution(o, 2, last_qty="200", last_px="10.20"), o)
    await send(
        topics.EXECUTIONS,
        execution(
            o, 3, exec_type="CORRECT", ref_exec_id=f"{o}-X1", last_qty="150", last_px="10.00"
        ),
        o,
    )
    await send(
        topics.EXECUTIONS,
        execution(o, 4, exec_type="BUST", ref_exec_id=f"{o}-X2", last_qty="0"),
        o,
    )
    confirmations = await confirmations_of(o, 4)
    # after the correction: 150 @ 10.00 + 200 @ 10.20 = 3540 / 350
    assert confirmations[2]["cum_qty"] == "350"
    assert confirmations[2]["avg_px"] == "10.11428571"
    assert confirmations[3]["cum_qty"] == "150"
    assert confirmations[3]["avg_px"] == "10"
    assert confirmations[3]["exec_type"] == "BUST"


async def test_unknown_reference_is_dead_lettered_and_takes_its_seq(send) -> None:
    o = oid()
    await send(topics.ORDERS, order(o), o)
    await send(
        topics.EXECUTIONS,
        execution(o, 1, exec_type="BUST", ref_exec_id="NOPE", last_qty="0"),
        o,
    )
    await send(topics.EXECUTIONS, execution(o, 2), o)
    (dead,) = await dlq_of(o, 1)
    assert dict(dead.headers)["error.reason"] == b"UNKNOWN_REFERENCE"
    confirmations = await confirmations_of(o, 1)
    assert [c["seq"] for c in confirmations] == [2]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\x00\x00", "DECODE_ERROR"),
        (b"{not json", "DECODE_ERROR"),
        ("missing", "VALIDATION_ERROR"),
        ("negative", "VALIDATION_ERROR"),
        ("side", "VALIDATION_ERROR"),
    ],
)
async def test_bad_input_goes_to_dlq_with_original_bytes(send, value, reason) -> None:
    o = oid()
    if value == "missing":
        record = execution(o, 1)
        del record["last_px"]
        raw = orjson.dumps(record)
        topic = topics.EXECUTIONS
    elif value == "negative":
        raw = orjson.dumps(execution(o, 1, last_qty="-5"))
        topic = topics.EXECUTIONS
    elif value == "side":
        raw = orjson.dumps(order(o, side="HOLD"))
        topic = topics.ORDERS
    else:
        raw = value
        topic = topics.EXECUTIONS
    await send(topic, raw, o)
    (dead,) = await dlq_of(o, 1)
    headers = dict(dead.headers)
    assert dead.value == raw
    assert headers["error.reason"] == reason.encode()
    assert headers["error.topic"] == topic.encode()
    assert int(headers["error.partition"]) >= 0
    assert int(headers["error.offset"]) >= 0
    assert headers["error.message"]


async def test_orphan_execution_goes_to_dlq_after_timeout(send) -> None:
    o = oid()
    raw = orjson.dumps(execution(o, 1))
    await send(topics.EXECUTIONS, raw, o)
    (dead,) = await dlq_of(o, 1)
    assert dict(dead.headers)["error.reason"] == b"ORPHAN_EXECUTION"
    assert dead.value == raw


async def test_an_execution_is_not_orphaned_while_its_order_is_in_a_backlog(
    worker: Worker,
) -> None:
    """A worker catching up on a backlog of orders (after an outage, say) holds an execution
    whose order is still in it for longer than the orphan timeout, and confirms it once the
    order is read: the order did arrive, the worker had not read it yet."""
    target = oid()
    backlog = [
        (f"{target}-B{n}", orjson.dumps(order(f"{target}-B{n}"))) for n in range(BACKLOG_ORDERS)
    ]
    backlog.append((target, orjson.dumps(order(target))))
    producer = Producer({"bootstrap.servers": BROKER, "linger.ms": 20})
    producer.produce(topics.EXECUTIONS, orjson.dumps(execution(target, 1)), target, 0)
    assert producer.flush(30) == 0
    await held_executions_of(worker, target, [1])
    # then, on the same partition, more orders than the worker reads within the timeout,
    # written faster than it reads them, and the execution's order last. The worker judges
    # the timeout by the records' timestamps, so the backlog is stamped as it begins, within
    # the timeout however long a slow host takes to hand it to the broker.
    started = time.monotonic()
    stamp = int(time.time() * 1000)
    for n, (key, value) in enumerate(backlog):
        producer.produce(topics.ORDERS, value, key, 0, timestamp=stamp)
        if n % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0

    (confirmation,) = await confirmations_of(target, 1, timeout=120)
    took = time.monotonic() - started
    assert confirmation["exec_id"] == f"{target}-X1"
    assert await dlq_of(target, 1, timeout=3) == [], "rejected as an orphan"
    # held since before the backlog began: past the timeout, and a tick to judge it
    assert took > ORPHAN_TIMEOUT_S + TICK_INTERVAL_S, f"the backlog took {took:.1f} s: too short"


async def test_an_orphan_is_rejected_in_time_while_its_partition_is_written_to_all_along(
    send,
) -> None:
    """A partition written to all the time is seldom found empty by a fetch, yet the worker is
    not behind on it: the orphan timeout must still be judged there, not put off until the
    flow stops."""
    run = oid()
    orphan = f"{run}-ORPHAN"
    flowing = threading.Event()
    flowing.set()

    def flow() -> None:  # orders with one fill each, 200 a second, on every partition
        producer = Producer({"bootstrap.servers": BROKER, "linger.ms": 1})
        started, n = time.monotonic(), 0
        while flowing.is_set():
            if time.monotonic() < started + n / 200:
                time.sleep(0.001)
                continue
            order_id = f"{run}-{n}"
            producer.produce(topics.ORDERS, orjson.dumps(order(order_id)), order_id)
            producer.produce(topics.EXECUTIONS, orjson.dumps(execution(order_id, 1)), order_id)
            producer.poll(0)
            n += 1
        producer.flush(30)

    writer = threading.Thread(target=flow)
    writer.start()
    try:
        await confirmations_of(f"{run}-0", 1)  # the flow is being processed
        sent = time.monotonic()
        await send(topics.EXECUTIONS, execution(orphan, 1), orphan)
        (dead,) = await dlq_of(orphan, 1, timeout=ORPHAN_TIMEOUT_S + 10)
        waited = time.monotonic() - sent
        assert writer.is_alive(), "the flow stopped before the orphan was judged"
    finally:
        flowing.clear()
        writer.join()
    assert dict(dead.headers)["error.reason"] == b"ORPHAN_EXECUTION"
    # not put off until the flow stops (the bound leaves room for a worker slowed by coverage)
    assert waited < ORPHAN_TIMEOUT_S + 8, f"rejected after {waited:.1f} s"


async def held_executions_of(worker: Worker, order_id: str, seqs: list[int]) -> None:
    """Wait until the worker holds the executions ``seqs`` of ``order_id``."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    held: list[int] = []
    async with httpx.AsyncClient(base_url=worker.url, headers=headers) as http:
        for _ in range(150):
            answer = await http.get(f"/api/v1/orders/{order_id}")
            if answer.status_code == 200:
                held = [h["seq"] for h in answer.json()["held_executions"]]
                if held == seqs:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"{order_id}: held {held}, not {seqs}, after 15 s")


async def test_gap_is_reported_and_held_executions_released(send) -> None:
    o = oid()
    await send(topics.ORDERS, order(o), o)
    await send(topics.EXECUTIONS, execution(o, 1), o)
    await send(topics.EXECUTIONS, execution(o, 3), o)
    await send(topics.EXECUTIONS, execution(o, 4), o)
    confirmations = await confirmations_of(o, 3)
    assert [c["seq"] for c in confirmations] == [1, 3, 4]
    (gap,) = await status_of(o, "SEQUENCE_GAP")
    assert gap["details"]["missing_seqs"] == [2]
    assert gap["source"].startswith("worker-")


async def test_overfill_is_confirmed_and_reported(send) -> None:
    o = oid()
    await send(topics.ORDERS, order(o, quantity="100"), o)
    await send(topics.EXECUTIONS, execution(o, 1, last_qty="150"), o)
    (confirmation,) = await confirmations_of(o, 1)
    assert confirmation["order_status"] == "OVERFILLED"
    assert confirmation["leaves_qty"] == "0"
    (event,) = await status_of(o, "OVERFILL")
    assert event["details"]["cum_qty"] == "150"


async def test_avro_inputs_are_accepted_beside_json(send) -> None:
    registry = AsyncSchemaRegistryClient(url=REGISTRY_URL)
    encoder = AvroEncoder(registry)
    o = oid()
    await send(topics.ORDERS, await encoder.encode("orders-value", "order", order(o)), o)
    await send(topics.EXECUTIONS, execution(o, 1), o)
    await send(
        topics.EXECUTIONS,
        await encoder.encode(
            "executions-value", "execution", execution(o, 2, last_px="415.12345678")
        ),
        o,
    )
    confirmations = await confirmations_of(o, 2)
    assert [c["seq"] for c in confirmations] == [1, 2]
    assert confirmations[1]["last_px"] == "415.12345678"


async def test_state_queries_and_positions(send, worker: Worker) -> None:
    o = oid()
    account = f"ACC-{uuid.uuid4().hex[:6]}"
    await send(topics.ORDERS, order(o, account=account, side="SELL"), o)
    await send(topics.EXECUTIONS, execution(o, 1, last_qty="100", last_px="10"), o)
    await send(topics.EXECUTIONS, execution(o, 2, last_qty="50", last_px="12"), o)
    await confirmations_of(o, 2)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    expected = {
        "symbol": "MSFT",
        "net_qty": "-150",
        "bought_qty": "0",
        "bought_notional": "0",
        "sold_qty": "150",
        "sold_notional": "1600",
    }
    async with httpx.AsyncClient(base_url=worker.url, headers=headers) as http:
        # one worker holds every account, so positions fold in the confirmations' transaction;
        # queries read RocksDB, written just after that transaction commits
        position = None
        for _ in range(50):
            response = await http.get(f"/api/v1/positions/{account}")
            if response.status_code == 200:
                (position,) = response.json()["positions"]
                if position == expected:
                    break
            await asyncio.sleep(0.2)
        assert position == expected
        state = (await http.get(f"/api/v1/orders/{o}")).json()
        assert state["order_status"] == "PARTIALLY_FILLED"
        assert state["cum_qty"] == "150"
        assert state["held_executions"] == []
