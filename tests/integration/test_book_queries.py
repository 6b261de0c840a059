"""Queries across the book on two real workers, each holding some of the partitions.

A known book (orders in every partition: unfilled, partially filled, filled and overfilled,
over three accounts and two symbols) is queried on either worker by account, symbol and
status, page by page: every selected order comes exactly once, in order_id order, the same
from both workers, as ``GET /api/v1/orders/{order_id}`` shows it. Positions across accounts
for a symbol equal the per-account endpoint's figures and the book's own sums. A worker that
is stopped (SIGSTOP) makes the other's answer partial within the deadline, naming its
partitions; a killed one too, until its partitions move and the answer is whole again.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import httpx
import orjson
import pytest

from execdist import topics
from execdist.demo import FeedRecord
from execdist.topics import key_partition
from tests.integration.conftest import ADMIN_TOKEN, Worker
from tests.integration.helpers import produce, worker_pair

pytestmark = pytest.mark.integration

PARTITIONS = 4
DEADLINE_S = 2.0
ACCOUNTS = ("BKQ-ACC-A", "BKQ-ACC-B", "BKQ-ACC-C")
SYMBOLS = ("AAPL", "MSFT")
FILLS = {  # by order number modulo 4: the trades and the status they leave
    0: ((), "UNFILLED"),
    1: ((40,), "PARTIALLY_FILLED"),
    2: ((40, 60), "FILLED"),
    3: ((60, 60), "OVERFILLED"),
}
ORDERS = 48
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass(frozen=True)
class BookOrder:
    order_id: str
    account: str
    symbol: str
    side: str
    fills: tuple[int, ...]
    status: str
    px: Decimal

    @property
    def partition(self) -> int:
        return key_partition(self.order_id.encode(), PARTITIONS)


BOOK = [
    BookOrder(
        order_id=f"BKQ-{n:03d}",
        account=ACCOUNTS[n % 3],
        symbol=SYMBOLS[(n // 3) % 2],
        side="BUY" if n % 5 else "SELL",
        fills=FILLS[n % 4][0],
        status=FILLS[n % 4][1],
        px=Decimal("100.25") + n,
    )
    for n in range(ORDERS)
]


def records() -> list[FeedRecord]:
    out = []
    for order in BOOK:
        key = order.order_id.encode()
        body = {
            "order_id": order.order_id,
            "account": order.account,
            "symbol": order.symbol,
            "side": order.side,
            "quantity": "100",
            "order_type": "MARKET",
            "limit_price": None,
            "currency": "USD",
            "version": 1,
            "event_time": "2026-01-05T14:00:00.000000Z",
        }
        out.append(FeedRecord(topics.ORDERS, key, orjson.dumps(body)))
        for seq, qty in enumerate(order.fills, start=1):
            execution = {
                "exec_id": f"{order.order_id}-E{seq}",
                "order_id": order.order_id,
                "seq": seq,
                "exec_type": "TRADE",
                "ref_exec_id": None,
                "last_qty": str(qty),
                "last_px": str(order.px),
                "venue": "XNAS",
                "exec_time": "2026-01-05T14:00:01.000000Z",
            }
            out.append(FeedRecord(topics.EXECUTIONS, key, orjson.dumps(execution)))
    return out


def get(worker: Worker, path: str, **params: str) -> httpx.Response:
    return httpx.get(worker.url + path, params=params, headers=ADMIN, timeout=15)


def read_pages(worker: Worker, path: str, **params: str) -> tuple[list[dict[str, object]], int]:
    """Every item of a query, page by page; fails on a partial page. Returns items, pages."""
    items: list[dict[str, object]] = []
    pages = 0
    cursor = ""
    while True:
        response = get(worker, path, **params, cursor=cursor)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["partial"] is False and page["missing_partitions"] == [], page
        assert len(page["items"]) <= int(params.get("limit", "100"))
        items.extend(page["items"])
        pages += 1
        if page["next_cursor"] is None:
            return items, pages
        cursor = page["next_cursor"]


def wait_for_book(worker: Worker, timeout: float = 90) -> None:
    want = {order.order_id: order.status for order in BOOK}
    deadline = time.monotonic() + timeout
    got: dict[str, object] = {}
    while time.monotonic() < deadline:
        response = get(worker, "/api/v1/orders", status="all", limit="1000")
        if response.status_code == 200 and not response.json()["partial"]:
            got = {item["order_id"]: item["order_status"] for item in response.json()["items"]}
            if got == want:
                return
        time.sleep(0.5)
    pytest.fail(f"the book was not complete within {timeout}s: {got}")


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Worker]]:
    pair = worker_pair(
        tmp_path_factory,
        "book",
        extra_topics=(topics.SUBSCRIPTIONS, topics.WORKERS, topics.SUBSCRIPTION_AUDIT),
    )
    workers = next(pair)
    try:
        asyncio.run(produce(records()))
        for worker in workers:
            wait_for_book(worker)
        yield workers
    finally:
        next(pair, None)  # stops both


def holdings(worker: Worker) -> dict[str, list[int]]:
    status = get(worker, "/api/v1/status").json()
    return {str(w["url"]): list(w["partitions"]) for w in status["workers"]}


def test_each_worker_holds_some_partitions(workers: list[Worker]) -> None:
    held = holdings(workers[0])
    assert sorted(p for parts in held.values() for p in parts) == list(range(PARTITIONS))
    assert all(held.get(worker.url) for worker in workers), held
    assert {order.partition for order in BOOK} == set(range(PARTITIONS))


QUERIES = [
    ({}, lambda o: o.status in ("UNFILLED", "PARTIALLY_FILLED")),
    ({"status": "all"}, lambda o: True),
    ({"status": "FILLED,OVERFILLED"}, lambda o: o.status in ("FILLED", "OVERFILLED")),
    ({"account": "BKQ-ACC-B"}, lambda o: o.account == "BKQ-ACC-B" and o.status != "FILLED"
     and o.status != "OVERFILLED"),
    ({"symbol": "MSFT", "status": "PARTIALLY_FILLED"},
     lambda o: o.symbol == "MSFT" and o.status == "PARTIALLY_FILLED"),
    ({"account": "BKQ-ACC-C", "symbol": "AAPL", "status": "all"},
     lambda o: o.account == "BKQ-ACC-C" and o.symbol == "AAPL"),
    ({"account": "nobody", "status": "all"}, lambda o: False),
    ({"since": "2099-01-01T00:00:00Z", "status": "all"}, lambda o: False),
    ({"since": "2020-01-01T00:00:00+01:00", "status": "all"}, lambda o: True),
]  # fmt: skip


@pytest.mark.parametrize(("params", "selects"), QUERIES, ids=[str(p) for p, _ in QUERIES])
def test_pages_list_every_selected_order_exactly_once_on_either_worker(
    workers: list[Worker], params: dict[str, str], selects: object
) -> None:
    expected = sorted(order.order_id for order in BOOK if selects(order))  # type: ignore[operator]
    answers = []
    for worker in workers:
        items, pages = read_pages(worker, "/api/v1/orders", **params, limit="5")
        ids = [str(item["order_id"]) for item in items]
        assert ids == expected  # each exactly once, in order_id order
        assert pages == max(1, -(-len(expected) // 5))
        answers.append(items)
    assert answers[0] == answers[1]


def test_items_are_the_per_order_view(workers: list[Worker]) -> None:
    first, second = workers
    items = get(second, "/api/v1/orders", status="all", limit="1000").json()["items"]
    assert len(items) == ORDERS
    for item in items:
        assert get(first, f"/api/v1/orders/{item['order_id']}").json() == item


def test_an_analyst_may_query_and_a_bad_cursor_is_refused(workers: list[Worker]) -> None:
    first, second = workers
    issued = httpx.post(
        first.url + "/api/v1/tokens", json={"scope": "analyst", "name": "book"}, headers=ADMIN
    ).json()
    analyst = {"Authorization": f"Bearer {issued['token']}"}
    response = httpx.get(second.url + "/api/v1/orders", params={"limit": "2"}, headers=analyst)
    assert response.status_code == 200 and len(response.json()["items"]) == 2
    cursor = response.json()["next_cursor"]
    other = httpx.get(
        second.url + "/api/v1/orders", params={"status": "all", "cursor": cursor}, headers=analyst
    )
    assert other.status_code == 400 and other.json()["error"]["field"] == "cursor"
    assert get(second, "/api/v1/orders", limit="1001").status_code == 400
    # the workers' own endpoint is authorised like the rest
    internal = second.url + "/internal/v1/book/orders"
    assert httpx.get(internal, params={"partitions": "0"}).status_code == 401
    subscription = httpx.post(
        first.url + "/api/v1/subscriptions", json={"name": "book-sub"}, headers=ADMIN
    ).json()
    own = {"Authorization": f"Bearer {subscription['token']}"}
    assert httpx.get(internal, params={"partitions": "0"}, headers=own).status_code == 403
    assert httpx.get(second.url + "/api/v1/orders", headers=own).status_code == 403


def expected_positions(symbol: str) -> dict[str, dict[str, str]]:
    sums: dict[str, dict[str, Decimal]] = {}
    for order in BOOK:
        if order.symbol != symbol or not order.fills:
            continue
        figures = sums.setdefault(
            order.account,
            {k: Decimal(0) for k in ("bought_qty", "bought_notional", "sold_qty", "sold_notional")},
        )
        side = "bought" if order.side == "BUY" else "sold"
        figures[f"{side}_qty"] += sum(order.fills)
        figures[f"{side}_notional"] += sum(order.fills) * order.px
    return {account: {k: str(v) for k, v in f.items()} for account, f in sums.items()}


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_positions_across_accounts_equal_the_per_account_figures(
    workers: list[Worker], symbol: str
) -> None:
    want = expected_positions(symbol)
    answers = []
    for worker in workers:
        items, _ = read_pages(worker, "/api/v1/positions", symbol=symbol, limit="2")
        assert [item["account"] for item in items] == sorted(want)
        for item in items:
            account = str(item["account"])
            [position] = item["positions"]  # type: ignore[misc]
            assert position["symbol"] == symbol
            per_account = get(worker, f"/api/v1/positions/{account}").json()
            assert position in per_account["positions"]
            for name, value in want[account].items():
                assert Decimal(position[name]) == Decimal(value), (account, name)
        answers.append(items)
    assert answers[0] == answers[1]


def test_a_stopped_worker_makes_the_answer_partial_within_the_deadline(
    workers: list[Worker],
) -> None:
    first, second = workers
    theirs = sorted(holdings(first)[second.url])
    second.signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        response = get(first, "/api/v1/orders", status="all", limit="1000")
        elapsed = time.monotonic() - started
        positions = get(first, "/api/v1/positions")
    finally:
        second.signal(signal.SIGCONT)
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["partial"] is True
    assert page["missing_partitions"] == theirs
    assert DEADLINE_S - 0.2 <= elapsed <= DEADLINE_S + 1.5
    # never silently short: what is listed is exactly the book of the partitions that answered
    assert [item["order_id"] for item in page["items"]] == sorted(
        order.order_id for order in BOOK if order.partition not in theirs
    )
    assert positions.json()["partial"] is True
    assert positions.json()["missing_partitions"] == theirs
    # resumed, the answer is whole again
    deadline = time.monotonic() + 10
    while get(first, "/api/v1/orders", limit="1").json()["partial"]:
        assert time.monotonic() < deadline, "the resumed worker's partitions stayed missing"
        time.sleep(0.2)


def test_a_killed_worker_is_missing_until_its_partitions_move(workers: list[Worker]) -> None:
    first, second = workers
    theirs = sorted(holdings(first)[second.url])
    second.kill()
    page = get(first, "/api/v1/orders", status="all", limit="1000").json()
    assert page["partial"] is True and page["missing_partitions"] == theirs
    wait_for_book(first, timeout=60)
