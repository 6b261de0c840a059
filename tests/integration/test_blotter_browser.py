"""The live blotter (``GET /``) in a real browser against one real worker.

Chromium (Debian's, see scripts/install_browser.sh) is driven by Playwright for Python, without
the pytest-playwright plugin and without ``playwright install``. The page connects by itself from
``/?subscription=<id>&token=<token>&history=1``; the test checks that trades and a bust show up
(with the bust marking the trade it cancels), that a worker restart shows a reconnecting state,
and that after it the page resumes from its cursor: a new trade shows up once, nothing repeats.

Screenshots go to ``test-artifacts/`` (git-ignored) for a human to look at.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
from playwright.async_api import async_playwright, expect

from execdist import topics
from tests.integration.conftest import (
    ADMIN_TOKEN,
    BROKER,
    CONTRACT_TOPICS,
    Worker,
    delete_topics,
    start_all,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def chromium_installed() -> None:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"no {CHROMIUM}: 'make test' installs it (scripts/install_browser.sh)")


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    asyncio.run(delete_topics(CONTRACT_TOPICS))
    tmp: Path = tmp_path_factory.mktemp("blotter")
    one = Worker(
        app_id=f"execdist-blotter-{uuid.uuid4().hex[:8]}",
        data_dir=tmp / "data",
        log_path=tmp / "worker.log",
    )
    start_all([one])
    yield one
    one.stop()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def order(order_id: str, quantity: int) -> dict[str, object]:
    return {
        "order_id": order_id,
        "account": "ACC-EQ-01",
        "symbol": "AAPL",
        "side": "BUY",
        "quantity": str(quantity),
        "order_type": "LIMIT",
        "limit_price": "188.00",
        "currency": "USD",
        "version": 1,
        "event_time": _now(),
    }


def execution(
    order_id: str, seq: int, exec_type: str, qty: int, px: str, ref: str | None = None
) -> dict[str, object]:
    return {
        "exec_id": f"{order_id}-E{seq}",
        "order_id": order_id,
        "seq": seq,
        "exec_type": exec_type,
        "ref_exec_id": ref,
        "last_qty": str(qty),
        "last_px": px,
        "venue": "XNAS",
        "exec_time": _now(),
    }


async def produce(records: list[tuple[str, dict[str, object]]]) -> None:
    """JSON records to the input topics, keyed by order id, in this order."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=BROKER, enable_idempotence=True)
    await producer.start()
    try:
        for topic, value in records:
            key = str(value["order_id"]).encode()
            await producer.send(topic, orjson.dumps(value), key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def subscribe(worker: Worker) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=worker.url, headers=ADMIN) as http:
        response = await http.post(
            "/api/v1/subscriptions",
            json={"name": f"blotter-{uuid.uuid4().hex[:8]}", "filter": {}},
        )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_blotter_shows_trades_and_busts_and_resumes_after_a_worker_restart(
    worker: Worker,
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    subscription = await subscribe(worker)
    order_id = f"BLT-{uuid.uuid4().hex[:8].upper()}"
    trade1, trade2, bust, trade3 = (f"{order_id}-E{n}" for n in (1, 2, 3, 4))

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1600, "height": 420})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            try:
                await page.goto(
                    f"{worker.url}/?subscription={subscription['id']}"
                    f"&token={subscription['token']}&history=1"
                )
                status = page.locator("#status")
                await expect(status).to_have_text("live", timeout=30_000)
                await expect(status).to_have_attribute("data-state", "live")

                # --- an order, two trades, a bust of the first trade -------------------------
                await produce(
                    [
                        (topics.ORDERS, order(order_id, 1000)),
                        (topics.EXECUTIONS, execution(order_id, 1, "TRADE", 300, "187.40")),
                        (topics.EXECUTIONS, execution(order_id, 2, "TRADE", 200, "187.45")),
                        (topics.EXECUTIONS, execution(order_id, 3, "BUST", 0, "187.40", trade1)),
                    ]
                )
                row = {
                    x: page.locator(f'#rows tr[data-exec-id="{x}"]')
                    for x in (trade1, trade2, bust, trade3)
                }
                for exec_id in (trade1, trade2, bust):
                    await expect(row[exec_id]).to_have_count(1, timeout=60_000)
                await expect(page.locator("#rows tr[data-exec-id]")).to_have_count(3)
                await expect(row[bust]).to_have_class(re.compile(r"(^|\s)bust(\s|$)"))
                await expect(row[trade1]).to_have_class(re.compile(r"(^|\s)busted(\s|$)"))
                await expect(row[trade2]).not_to_have_class(re.compile(r"(^|\s)bust(ed)?(\s|$)"))
                await expect(page.locator("#count")).to_have_text("3")
                # rows are flashed as "fresh" for a moment; let that end before the picture
                await expect(page.locator("#rows tr.fresh")).to_have_count(0, timeout=10_000)
                await page.screenshot(path=str(ARTIFACTS / "blotter.png"))
                before = int(await page.locator("#count").inner_text())

                # --- the worker goes away: the page must say it is reconnecting -------------
                # (Worker.stop sends SIGTERM and falls back to SIGKILL after 30 s; either way the
                # socket is gone once it returns. NB: with a WebSocket client connected, a SIGTERM
                # alone does not end the worker today: the open stream keeps sending heartbeats,
                # so the page says "live" until the SIGKILL.)
                await asyncio.to_thread(worker.stop)
                await expect(status).to_have_attribute("data-state", "reconnecting", timeout=10_000)
                await expect(status).to_have_text(re.compile(r"^reconnecting"))
                await expect(page.locator("#status-detail")).not_to_be_empty()
                await page.screenshot(path=str(ARTIFACTS / "blotter-reconnecting.png"))
                # the rows stay on screen while it is down
                await expect(page.locator("#rows tr[data-exec-id]")).to_have_count(3)

                # --- it comes back on the same port: the page resumes after its cursor -------
                await asyncio.to_thread(worker.start)
                recovering = asyncio.create_task(asyncio.to_thread(worker.wait_ready))
                seen: list[tuple[str | None, str]] = []  # (data-state, #status-detail)
                while not recovering.done():  # it keeps retrying, never gives up with an error
                    state = await status.get_attribute("data-state")
                    detail = await page.locator("#status-detail").inner_text()
                    if not seen or seen[-1] != (state, detail):
                        seen.append((state, detail))
                    await asyncio.sleep(0.1)
                await recovering
                assert {st for st, _ in seen} <= {"reconnecting", "connecting", "live"}, seen
                assert any(st == "reconnecting" for st, _ in seen), seen
                await expect(status).to_have_text("live", timeout=60_000)
                await produce([(topics.EXECUTIONS, execution(order_id, 4, "TRADE", 100, "187.50"))])
                await expect(row[trade3]).to_have_count(1, timeout=60_000)
                await expect(row[trade3]).to_have_class(re.compile(r"(^|\s)trade(\s|$)"))
                # give a repeat (a frame before the cursor sent again) the time to show up
                await asyncio.sleep(3.0)
                assert int(await page.locator("#count").inner_text()) == before + 1
                exec_ids: list[str] = await page.locator("#rows tr[data-exec-id]").evaluate_all(
                    "rows => rows.map(r => r.getAttribute('data-exec-id'))"
                )
                assert sorted(exec_ids) == sorted([trade1, trade2, bust, trade3])
                for exec_id in exec_ids:
                    await expect(row[exec_id]).to_have_count(1)
                await expect(row[trade1]).to_have_class(re.compile(r"(^|\s)busted(\s|$)"))
                await expect(status).to_have_text("live")
                await expect(page.locator("#rows tr.fresh")).to_have_count(0, timeout=10_000)
                await page.screenshot(path=str(ARTIFACTS / "blotter-after-restart.png"))
                assert errors == [], errors
            except BaseException:
                await page.screenshot(path=str(ARTIFACTS / "blotter-failure.png"))
                print(worker.log_tail())
                raise
        finally:
            await browser.close()


async def test_blotter_starts_from_a_snapshot_and_resynchronises_after_a_gap(
    worker: Worker,
) -> None:
    """Orders confirmed before the page opened are there at once (snapshot); a confirmation
    lost on the way (dropped here between the worker and the page) shows as a gap, and the
    page resynchronises from a new snapshot, so the order still shows its true state."""
    ARTIFACTS.mkdir(exist_ok=True)
    subscription = await subscribe(worker)
    earlier, later = (f"SNP-{uuid.uuid4().hex[:6].upper()}-{n}" for n in (1, 2))
    await produce(
        [
            (topics.ORDERS, order(earlier, 1000)),
            (topics.EXECUTIONS, execution(earlier, 1, "TRADE", 300, "187.40")),
            (topics.EXECUTIONS, execution(earlier, 2, "TRADE", 200, "187.45")),
        ]
    )
    await _wait_for_records(subscription, 2)
    lost = f"{later}-E2"

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1600, "height": 420})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            dropped: list[str] = []

            async def between(route) -> None:  # type: ignore[no-untyped-def]
                server = route.connect_to_server()

                def to_page(message: str | bytes) -> None:
                    if (
                        isinstance(message, str)
                        and f'"exec_id":"{lost}"' in message
                        and not dropped
                    ):
                        dropped.append(message)  # lost once, on the first connection only
                        return
                    route.send(message)

                server.on_message(to_page)

            await page.route_web_socket(re.compile(r".*/stream\?.*"), between)
            try:
                await page.goto(
                    f"{worker.url}/?subscription={subscription['id']}&token={subscription['token']}"
                )
                await expect(page.locator("#status")).to_have_text("live", timeout=30_000)
                await expect(page.locator("#snapshot")).to_have_text("snapshot: 1 orders")
                earlier_row = page.locator(f'#orders tr[data-order-id="{earlier}"]')
                await expect(earlier_row).to_have_count(1)
                await expect(earlier_row.locator("td:nth-child(6)")).to_have_text("500")
                await expect(page.locator("#sub-seq")).to_have_text("2")

                await produce(
                    [
                        (topics.ORDERS, order(later, 1000)),
                        (topics.EXECUTIONS, execution(later, 1, "TRADE", 100, "187.50")),
                        (topics.EXECUTIONS, execution(later, 2, "TRADE", 100, "187.50")),
                        (topics.EXECUTIONS, execution(later, 3, "TRADE", 100, "187.50")),
                    ]
                )
                await expect(page.locator("#gap")).to_be_visible(timeout=30_000)
                await expect(page.locator("#gap")).to_contain_text("sub_seq 4 never arrived")
                await expect(page.locator("#gaps")).to_have_text("1")
                assert dropped, "the confirmation was dropped on the way"
                later_row = page.locator(f'#orders tr[data-order-id="{later}"]')
                # resynchronised: the snapshot carries the order's latest state, lost fill included
                await expect(later_row.locator("td:nth-child(6)")).to_have_text(
                    "300", timeout=30_000
                )
                await expect(page.locator("#snapshot")).to_have_text("snapshot: 2 orders")
                await expect(page.locator("#sub-seq")).to_have_text("5")
                await expect(page.locator("#status")).to_have_text("live")
                await page.locator("#tab-orders").click()
                await expect(page.locator("#orders tr.fresh")).to_have_count(0, timeout=10_000)
                await page.screenshot(path=str(ARTIFACTS / "blotter-gap-resync.png"))
                assert errors == [], errors
            except BaseException:
                await page.screenshot(path=str(ARTIFACTS / "blotter-gap-failure.png"))
                print(worker.log_tail())
                raise
        finally:
            await browser.close()


async def _wait_for_records(subscription: dict[str, object], count: int) -> None:
    from tests.integration.conftest import read_committed

    await read_committed([str(subscription["topic"])], lambda got: len(got) >= count, 60)
