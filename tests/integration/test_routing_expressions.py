"""filter.expr, fields and the dry-run through two real workers and the real broker.

The expectations are computed here with plain Python Decimal arithmetic from the feed, not with
the service's expression code, so a mistake there cannot hide behind itself.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import orjson
import pytest

from execdist import topics
from execdist.demo import FeedRecord, order_flow
from tests.integration.conftest import ADMIN_TOKEN, Worker, read_committed
from tests.integration.expectations import expected_confirmations
from tests.integration.helpers import send_records, worker_pair

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
Item = dict[str, object]


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Worker]]:
    yield from worker_pair(
        tmp_path_factory, "expr", extra_topics=(topics.SUBSCRIPTIONS, topics.WORKERS)
    )


def feed(prefix: str, seed: int, orders: int) -> list[FeedRecord]:
    rng = random.Random(seed)
    return [
        r for n in range(orders) for r in order_flow(rng, f"{prefix}-{n:03d}", allow_amend=False)
    ]


def flat(expected: dict[str, list[Item]]) -> list[Item]:
    return [item for items in expected.values() for item in items]


def notional(item: Item) -> Decimal:
    return Decimal(str(item["last_qty"])) * Decimal(str(item["last_px"]))


def by_order(items: list[Item], keep: Callable[[Item], bool]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for item in items:
        if keep(item):
            result.setdefault(str(item["order_id"]), []).append(str(item["exec_id"]))
    return result


async def wait_for_confirmations(records: list[FeedRecord], count: int) -> None:
    keys = {r.key for r in records}
    await read_committed(
        [topics.CONFIRMATIONS], lambda got: sum(r.key in keys for r in got) >= count, 90
    )


async def test_expr_and_fields_deliver_exactly_the_matching_projection(workers, producer) -> None:
    first, second = workers
    records = feed("EXPR", 21, 120)
    items = flat(expected_confirmations(records))
    buys = sorted(notional(i) for i in items if i["side"] == "BUY")
    threshold = buys[len(buys) // 2]  # about half of the BUY executions
    fields = ["exec_id", "order_id", "symbol", "side", "last_qty", "last_px"]

    async with httpx.AsyncClient(base_url=first.url, headers=ADMIN) as http:
        projected = await http.post(
            "/api/v1/subscriptions",
            json={
                "name": f"notional-{uuid.uuid4().hex[:6]}",
                "filter": {"expr": f'side == "BUY" && last_qty * last_px >= {threshold}'},
                "fields": list(reversed(fields)),  # any order; records follow the contract's
            },
        )
        assert projected.status_code == 201, projected.text
        assert projected.json()["fields"] == fields
        combined = await http.post(
            "/api/v1/subscriptions",
            json={
                "name": f"combined-{uuid.uuid4().hex[:6]}",
                "filter": {
                    "symbols": ["AAPL", "MSFT", "NVDA"],
                    "expr": 'exec_type != "TRADE" || last_qty >= 300',
                },
            },
        )
        assert combined.status_code == 201, combined.text
        # refusals name the field
        bad_expr = await http.post(
            "/api/v1/subscriptions",
            json={"name": "bad", "filter": {"expr": "last_qty * >= 5"}},
        )
        assert bad_expr.status_code == 400
        assert bad_expr.json()["error"]["field"] == "filter.expr"
        avro_projection = await http.post(
            "/api/v1/subscriptions", json={"name": "bad", "format": "avro", "fields": ["seq"]}
        )
        assert avro_projection.status_code == 400
        assert avro_projection.json()["error"]["field"] == "fields"
    await asyncio.sleep(1.0)  # in force on every worker
    await send_records(producer, records)

    want_projected = by_order(items, lambda i: i["side"] == "BUY" and notional(i) >= threshold)
    want_combined = by_order(
        items,
        lambda i: (
            i["symbol"] in ("AAPL", "MSFT", "NVDA")
            and (i["exec_type"] != "TRADE" or Decimal(str(i["last_qty"])) >= 300)
        ),
    )
    assert want_projected and want_combined
    by_exec = {str(i["exec_id"]): i for i in items}

    for subscription, want, projection in (
        (projected.json(), want_projected, fields),
        (combined.json(), want_combined, None),
    ):
        count = sum(map(len, want.values()))
        out = await read_committed(
            [str(subscription["topic"])], lambda got, n=count: len(got) >= n, 90, settle=1.5
        )
        got: dict[str, list[str]] = {}
        for record in out:
            body = orjson.loads(record.value)
            got.setdefault(body["order_id"], []).append(body["exec_id"])
            source = by_exec[body["exec_id"]]
            if projection is not None:
                assert list(body) == [*projection, "sub_seq"], "sub_seq is always there, last"
                assert all(body[name] == source[name] for name in projection)
            else:
                assert "cum_qty" in body and "confirmed_at" in body
        assert got == want, subscription["name"]

    # the same records through the other worker's view of the subscription
    async with httpx.AsyncClient(base_url=second.url, headers=ADMIN) as http:
        shown = (await http.get(f"/api/v1/subscriptions/{projected.json()['id']}")).json()
    assert shown["filter"]["expr"] == f'side == "BUY" && last_qty * last_px >= {threshold}'
    assert shown["fields"] == fields


async def test_dry_run_counts_a_known_backlog(workers, producer) -> None:
    _, second = workers
    since = datetime.now(UTC)
    await asyncio.sleep(0.05)
    records = feed("DRY", 77, 80)
    items = flat(expected_confirmations(records))
    await send_records(producer, records)
    await wait_for_confirmations(records, len(items))

    big = [i for i in items if i["symbol"] in ("AAPL", "MSFT") and notional(i) >= 20000]
    assert big, "the feed must give the filter something to match"
    body = {
        "filter": {
            "symbols": ["AAPL", "MSFT", "IBM"],
            "expr": 'symbol in ["AAPL", "MSFT"] && last_qty * last_px >= 20000',
        },
        "since": since.isoformat(),
    }
    async with httpx.AsyncClient(base_url=second.url, headers=ADMIN, timeout=30) as http:
        full = (await http.post("/api/v1/subscriptions/dry-run", json=body)).json()
        few = (
            await http.post("/api/v1/subscriptions/dry-run", json={**body, "max_records": 5})
        ).json()
        failing = (
            await http.post(
                "/api/v1/subscriptions/dry-run",
                json={"since": since.isoformat(), "filter": {"expr": "seq / (seq - 1) >= 0"}},
            )
        ).json()
        future = (
            await http.post("/api/v1/subscriptions/dry-run", json={"since": "2999-01-01T00:00:00Z"})
        ).json()
        missing_since = await http.post("/api/v1/subscriptions/dry-run", json={"filter": None})
        bad_expr = await http.post(
            "/api/v1/subscriptions/dry-run",
            json={"since": since.isoformat(), "filter": {"expr": "nope > 1"}},
        )
        no_token = await http.post(
            "/api/v1/subscriptions/dry-run", json=body, headers={"Authorization": ""}
        )

    assert full["scanned"] == len(items)
    assert full["matched"] == len(big)
    assert full["truncated"] is False and full["stopped_by"] is None
    assert full["evaluation_errors"] == 0
    assert len(full["sample"]) == min(20, len(big))
    wanted_ids = {str(i["exec_id"]) for i in big}
    assert all(s["exec_id"] in wanted_ids for s in full["sample"])

    assert few["scanned"] == 5
    assert few["truncated"] is True and few["stopped_by"] == "max_records"
    assert few["matched"] <= 5

    first_seqs = sum(1 for i in items if i["seq"] == 1)
    assert failing["scanned"] == len(items)
    assert failing["evaluation_errors"] == first_seqs  # division by zero: no match, counted
    assert failing["matched"] == len(items) - first_seqs

    assert future == {
        "matched": 0,
        "scanned": 0,
        "truncated": False,
        "stopped_by": None,
        "evaluation_errors": 0,
        "sample": [],
    }
    assert missing_since.status_code == 400
    assert missing_since.json()["error"]["field"] == "since"
    assert bad_expr.status_code == 400
    assert bad_expr.json()["error"]["field"] == "filter.expr"
    assert no_token.status_code == 401
