"""sub_seq on the real broker: 1, 2, 3 ... per subscription, with no gap and no repeat, while two
workers make its records, one of them is SIGKILLed, and a filter changes.

With two workers each subscription is numbered by one of them, so the records of the other
worker's orders travel the route topic to it, and the records of its own orders are numbered
at once: both ways are taken, and they must give one sequence, in each order's own order.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
from collections.abc import Callable

import aiohttp
import fastavro
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from execdist import topics
from execdist.codecs.output import SUB_SEQ_HEADER
from execdist.codecs.schemas import parsed_schema
from tests.integration.conftest import ADMIN_TOKEN, BROKER, Worker, read_committed
from tests.integration.expectations import expected_confirmations
from tests.integration.helpers import flows, send_records

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _decoded(record: ConsumerRecord) -> dict[str, object]:
    value = record.value
    if value[:1] == b"\x00":  # Avro, Confluent-framed
        return dict(
            fastavro.schemaless_reader(io.BytesIO(value[5:]), parsed_schema("confirmation"))
        )
    return dict(orjson.loads(value))


def _check_sequence(records: list[ConsumerRecord]) -> list[dict[str, object]]:
    """Every record's sub_seq (field and header alike) is 1..n, each once; each order's records
    in sub_seq order are in its executions' order. Returns the records in sub_seq order."""
    numbered = []
    for record in records:
        body = _decoded(record)
        header = dict(record.headers)[SUB_SEQ_HEADER]
        assert int(header) == body["sub_seq"], "the header and the field agree"
        numbered.append(body)
    numbered.sort(key=lambda body: int(body["sub_seq"]))  # type: ignore[arg-type]
    assert [body["sub_seq"] for body in numbered] == list(range(1, len(numbered) + 1))
    last_seq: dict[object, int] = {}
    for body in numbered:
        seq = int(body["seq"])  # type: ignore[arg-type]
        assert seq > last_seq.get(body["order_id"], 0), f"order {body['order_id']} out of order"
        last_seq[body["order_id"]] = seq
    return numbered


async def _create(worker: Worker, body: dict[str, object]) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=worker.url, headers=ADMIN) as http:
        response = await http.post("/api/v1/subscriptions", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_sub_seq_has_no_gap_across_two_workers_a_sigkill_and_a_filter_change(
    cluster: Callable[..., Worker], producer
) -> None:
    first, second = cluster(), cluster()
    everything = await _create(first, {"name": "all", "filter": {}})
    spread = await _create(first, {"name": "two partitions", "filter": {}, "partitions": 2})
    avro = await _create(first, {"name": "avro", "filter": {}, "format": "avro"})
    narrowed = await _create(first, {"name": "narrowed", "filter": {}})
    await asyncio.sleep(1.0)  # in force on both workers

    records = flows("SEQ", 120, seed=3)
    half = len(records) // 2
    await send_records(producer, records[:half])

    def confirmations_of(total: int) -> Callable[[list[ConsumerRecord]], bool]:
        return lambda got: len(got) >= total

    # some of the first half is numbered before the kill
    await read_committed([str(everything["topic"])], lambda got: len(got) > 0)
    second.kill()
    async with httpx.AsyncClient(base_url=first.url, headers=ADMIN) as http:
        response = await http.patch(
            f"/api/v1/subscriptions/{narrowed['id']}", json={"filter": {"sides": ["BUY"]}}
        )
        assert response.status_code == 200, response.text
    await send_records(producer, records[half:])
    third = cluster()  # takes partitions back from the survivor: a second rebalance

    total = sum(len(items) for items in expected_confirmations(records).values())
    for subscription in (everything, spread, avro):
        got = await read_committed(
            [str(subscription["topic"])], confirmations_of(total), timeout=60, settle=2.0
        )
        numbered = _check_sequence(got)
        assert len(numbered) == total, f"{subscription['name']}: every confirmation, once"
    narrowed_records = await read_committed(
        [str(narrowed["topic"])], lambda got: len(got) > 0, timeout=30, settle=3.0
    )
    numbered = _check_sequence(narrowed_records)
    assert 0 < len(numbered) < total, "the filter change narrowed what followed it"
    # Every execution sent after the change returned is routed under the new filter, by the
    # survivor (whose index the change updated before answering) or by the worker started
    # after it. Executions of the first half may fall either side of the change, and one
    # routed under the old filter can be numbered after the rebalance, late in the sequence.
    sent_after = {
        orjson.loads(record.value)["exec_id"]
        for record in records[half:]
        if record.topic == topics.EXECUTIONS
    }
    after_change = [body for body in numbered if body["exec_id"] in sent_after]
    assert after_change, "executions sent after the change reached the narrowed subscription"
    assert all(body["side"] == "BUY" for body in after_change), "after the change, BUY only"
    assert third.process is not None and third.process.poll() is None
    routed = await read_committed([topics.SUBSCRIBER_ROUTE], lambda got: len(got) > 0, timeout=10)
    assert routed, "some records took the route topic to the worker numbering them"


async def test_sub_seq_continues_after_pause_and_resume(
    cluster: Callable[..., Worker], producer
) -> None:
    worker = cluster()
    subscription = await _create(worker, {"name": "paused", "filter": {}})
    await asyncio.sleep(1.0)
    records = flows("PAUSE", 30, seed=5)
    await send_records(producer, records[: len(records) // 2])
    await read_committed([str(subscription["topic"])], lambda got: len(got) > 0, timeout=60)
    async with httpx.AsyncClient(base_url=worker.url, headers=ADMIN) as http:
        url = f"/api/v1/subscriptions/{subscription['id']}"
        paused = await http.patch(url, json={"status": "PAUSED"})
        assert paused.status_code == 200, paused.text
        resumed = await http.patch(url, json={"status": "ACTIVE"})
        assert resumed.status_code == 200, resumed.text
    await asyncio.sleep(1.0)  # resumed on the worker
    await send_records(producer, records[len(records) // 2 :])
    total = sum(len(items) for items in expected_confirmations(records).values())
    got = await read_committed(
        [str(subscription["topic"])], lambda got: len(got) >= total, timeout=60, settle=2.0
    )
    numbered = _check_sequence(got)  # 1..total: numbered on from before the pause
    assert len(numbered) == total


async def test_reconcile_gives_the_contracts_digest_of_a_sub_seq_range(
    cluster: Callable[..., Worker], producer
) -> None:
    worker = cluster()
    subscription = await _create(worker, {"name": "reconciled", "filter": {}, "partitions": 2})
    await asyncio.sleep(1.0)
    records = flows("REC", 20, seed=11)
    total = sum(len(items) for items in expected_confirmations(records).values())
    await send_records(producer, records)
    got = await read_committed(
        [str(subscription["topic"])], lambda got: len(got) >= total, timeout=60
    )
    by_seq = {int(dict(r.headers)[SUB_SEQ_HEADER]): r.value for r in got}
    assert sorted(by_seq) == list(range(1, total + 1))

    def expected(from_seq: int, to_seq: int) -> str:
        sha = hashlib.sha256()
        for seq in range(from_seq, min(to_seq, total) + 1):
            sha.update(len(by_seq[seq]).to_bytes(4, "big") + by_seq[seq])
        return sha.hexdigest()

    url = f"/api/v1/subscriptions/{subscription['id']}/reconcile"
    own_token = {"Authorization": f"Bearer {subscription['token']}"}
    async with httpx.AsyncClient(base_url=worker.url, headers=own_token, timeout=30) as http:
        for from_seq, to_seq in ((1, total), (3, 7), (total, total + 50)):
            response = await http.get(url, params={"from_seq": from_seq, "to_seq": to_seq})
            assert response.status_code == 200, response.text
            answer = response.json()
            assert answer == {
                "from_seq": from_seq,
                "to_seq": to_seq,
                "count": min(to_seq, total) - from_seq + 1,
                "sha256": expected(from_seq, to_seq),
                "last_sub_seq": total,
            }
        for params, field in (
            ({"from_seq": "0", "to_seq": "5"}, "from_seq"),
            ({"from_seq": "1"}, "to_seq"),
            ({"from_seq": "9", "to_seq": "2"}, "to_seq"),
            ({"from_seq": "1", "to_seq": "200000"}, "to_seq"),
        ):
            response = await http.get(url, params=params)
            assert response.status_code == 400, params
            assert response.json()["error"]["field"] == field


async def test_backfill_then_live_with_one_sequence_across_a_sigkill(
    cluster: Callable[..., Worker], producer
) -> None:
    # slow slices, so that the backfill is still going when a worker dies
    first = cluster(EXECDIST_BACKFILL_SLICE_S="0.002")
    second = cluster(EXECDIST_BACKFILL_SLICE_S="0.002")
    history = flows("BFH", 150, seed=31)
    await send_records(producer, history)
    before = sum(len(items) for items in expected_confirmations(history).values())
    await read_committed([topics.CONFIRMATIONS], lambda got: len(got) >= before, timeout=90)

    subscription = await _create(
        first,
        {"name": "backfilled", "filter": {}, "backfill_from": "2000-01-01T00:00:00Z"},
    )
    assert subscription["backfill_from"] == "2000-01-01T00:00:00.000000Z"
    live = flows("BFL", 80, seed=32)
    sending = asyncio.create_task(send_records(producer, live))
    await read_committed([str(subscription["topic"])], lambda got: len(got) > 0, timeout=60)
    second.kill()  # mid-backfill: its partitions' backfill goes on elsewhere from the last commit
    await sending
    cluster(EXECDIST_BACKFILL_SLICE_S="0.002")

    expected = expected_confirmations(history + live)
    total = sum(len(items) for items in expected.values())
    got = await read_committed(
        [str(subscription["topic"])], lambda got: len(got) >= total, timeout=120, settle=3.0
    )
    numbered = _check_sequence(got)  # 1..n, each order in seq order
    assert len(numbered) == total, "every confirmation once, backfilled or live"
    assert sorted(str(body["exec_id"]) for body in numbered) == sorted(
        str(item["exec_id"]) for items in expected.values() for item in items
    )


async def test_status_reports_last_and_acknowledged_sub_seq_from_a_group_and_from_ws_acks(
    cluster: Callable[..., Worker], producer
) -> None:
    worker = cluster()
    group = f"downstream-{uuid.uuid4().hex[:8]}"
    with_group = await _create(worker, {"name": "grouped", "filter": {}, "consumer_group": group})
    assert with_group["consumer_group"] == group
    with_acks = await _create(worker, {"name": "acked", "filter": {}})
    await asyncio.sleep(1.0)
    records = flows("ACK", 10, seed=41)
    total = sum(len(items) for items in expected_confirmations(records).values())
    await send_records(producer, records)
    await read_committed([str(with_group["topic"])], lambda got: len(got) >= total, timeout=60)

    async def status(subscription: dict[str, object]) -> dict[str, object]:
        async with httpx.AsyncClient(base_url=worker.url, headers=ADMIN, timeout=30) as http:
            response = await http.get(f"/api/v1/subscriptions/{subscription['id']}/status")
        assert response.status_code == 200, response.text
        return dict(response.json())

    before = await status(with_group)
    assert (before["last_sub_seq"], before["acknowledged_sub_seq"], before["lag"]) == (
        total,
        None,
        None,
    ), "the group has read nothing yet"

    # the downstream reads the first 7 records and commits where it is
    downstream = AIOKafkaConsumer(
        str(with_group["topic"]),
        bootstrap_servers=BROKER,
        group_id=group,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await downstream.start()
    try:
        taken: list = []
        while len(taken) < 7:
            batch = await downstream.getmany(timeout_ms=1000, max_records=7 - len(taken))
            for messages in batch.values():
                taken.extend(messages)
        last_taken = taken[-1]
        await downstream.commit(
            {TopicPartition(last_taken.topic, last_taken.partition): last_taken.offset + 1}
        )
    finally:
        await downstream.stop()
    after = await status(with_group)
    assert (after["last_sub_seq"], after["acknowledged_sub_seq"], after["lag"]) == (
        total,
        7,
        total - 7,
    )

    url = (
        f"ws://127.0.0.1:{worker.web_port}/api/v1/subscriptions/{with_acks['id']}/stream"
        f"?from=earliest&token={with_acks['token']}"
    )
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_json({"type": "ack", "sub_seq": 5})
        deadline = asyncio.get_running_loop().time() + 30
        while True:  # the worker's delivery figures are shared once a few seconds
            acked = await status(with_acks)
            if acked["acknowledged_sub_seq"] == 5:
                break
            assert asyncio.get_running_loop().time() < deadline, acked
            await asyncio.sleep(0.5)
    assert acked["lag"] == total - 5
