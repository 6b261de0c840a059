"""Webhook delivery on the real broker, to a real aiohttp receiver that fails, stalls and
restarts, while the dispatching worker is SIGKILLed: every record arrives, in sub_seq order,
signed; a batch comes again only whole and identical; the status shows what the webhook
acknowledged and its last error."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable

import httpx
import orjson
import pytest
from aiohttp import web

from tests.integration.conftest import ADMIN_TOKEN, Worker, free_port, read_committed
from tests.integration.expectations import expected_confirmations
from tests.integration.helpers import flows, send_records

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SECRET = "webhook-secret-0123456789"


class Receiver:
    """An HTTP endpoint that records what it is sent; it can fail, stall and restart."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.batches: list[list[dict[str, object]]] = []
        self.bad_signatures = 0
        self.fail_next = 0
        self.stall_next = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        if request.headers.get("X-Execdist-Signature") != expected:
            self.bad_signatures += 1
            return web.Response(status=401)
        if self.stall_next:
            self.stall_next -= 1
            await asyncio.sleep(8)  # longer than the dispatcher waits: it retries
            return web.Response(status=200)
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=503)
        self.batches.append(orjson.loads(body))
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def sub_seqs(self) -> list[int]:
        return [int(record["sub_seq"]) for batch in self.batches for record in batch]  # type: ignore[call-overload]


async def status(worker: Worker, subscription_id: str) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=worker.url, headers=ADMIN, timeout=30) as http:
        response = await http.get(f"/api/v1/subscriptions/{subscription_id}/status")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.2)


async def test_webhook_gets_every_record_in_order_through_failures_stalls_restarts_and_a_kill(
    cluster: Callable[..., Worker], producer
) -> None:
    receiver = Receiver(free_port())
    await receiver.start()
    first = cluster()
    async with httpx.AsyncClient(base_url=first.url, headers=ADMIN) as http:
        response = await http.post(
            "/api/v1/subscriptions",
            json={
                "name": "hooked",
                "filter": {},
                "delivery": {"type": "webhook", "url": receiver.url, "secret": SECRET},
            },
        )
    assert response.status_code == 201, response.text
    subscription = response.json()
    assert subscription["delivery"] == {"type": "webhook", "url": receiver.url}
    await asyncio.sleep(1.5)  # in force, dispatchers started

    try:
        # a receiver that fails twice, then stalls once
        receiver.fail_next, receiver.stall_next = 2, 1
        part_one = flows("HOOKA", 30, seed=51)
        await send_records(producer, part_one)
        await wait_for(lambda: len(receiver.batches) > 0, 60, "a first batch after the failures")
        failing = await status(first, subscription["id"])
        assert failing["webhook"] is not None

        # the receiver goes away and comes back
        await receiver.stop()
        part_two = flows("HOOKB", 30, seed=52)
        await send_records(producer, part_two)
        await asyncio.sleep(2.0)
        down = await status(first, subscription["id"])
        assert down["webhook"]["last_error"], "a refused connection shows as the last error"  # type: ignore[index]
        await receiver.start()

        # a second worker joins, then the first one (the dispatcher until then) dies: the
        # webhook goes on from the last commit on the second
        second = cluster()
        first.kill()
        part_three = flows("HOOKC", 30, seed=53)
        await send_records(producer, part_three)

        records = part_one + part_two + part_three
        total = sum(len(items) for items in expected_confirmations(records).values())
        await read_committed([str(subscription["topic"])], lambda got: len(got) >= total, 90)
        await wait_for(lambda: max(receiver.sub_seqs(), default=0) >= total, 90, "all records")
        await asyncio.sleep(2.0)  # a late repeat would show now
    finally:
        await receiver.stop()

    assert receiver.bad_signatures == 0
    assert (receiver.fail_next, receiver.stall_next) == (0, 0), "it failed and stalled"
    content: dict[int, dict[str, object]] = {}
    highest = 0
    for batch in receiver.batches:
        numbers = [int(record["sub_seq"]) for record in batch]  # type: ignore[call-overload]
        assert numbers == list(range(numbers[0], numbers[-1] + 1)), "a batch is consecutive"
        assert numbers[0] <= highest + 1, f"no gap: {numbers[0]} after {highest}"
        for number, record in zip(numbers, batch, strict=True):
            # at least once: a batch may overlap what came before, with the same records
            assert content.setdefault(number, record) == record, f"{number} came back changed"
        highest = max(highest, numbers[-1])
    seen = set(content)
    assert sorted(seen) == list(range(1, total + 1))

    async def settled() -> dict[str, object]:
        deadline = asyncio.get_running_loop().time() + 30
        while True:  # the last error is shared with the workers' delivery figures
            report = await status(second, subscription["id"])
            if report["webhook"] == {"acknowledged_sub_seq": total, "last_error": None}:
                return report
            assert asyncio.get_running_loop().time() < deadline, report
            await asyncio.sleep(0.5)

    final = await settled()
    assert final["acknowledged_sub_seq"] == total and final["lag"] == 0
