"""Analytics on the real broker: two workers, figures gathered from both, exact against what
the pure core says the flows confirm."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

import httpx
import pytest

from execdist import topics
from tests.integration.conftest import ADMIN_TOKEN, Worker, read_committed
from tests.integration.expectations import expected_confirmations
from tests.integration.helpers import flows, send_records

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def test_analytics_per_symbol_and_subscription_over_the_hour_from_both_workers(
    cluster: Callable[..., Worker], producer
) -> None:
    first, second = cluster(), cluster()
    async with httpx.AsyncClient(base_url=first.url, headers=ADMIN, timeout=30) as http:
        created = await http.post(
            "/api/v1/subscriptions", json={"name": "aapl", "filter": {"symbols": ["AAPL"]}}
        )
        assert created.status_code == 201, created.text
        subscription = created.json()
        analyst = await http.post("/api/v1/tokens", json={"scope": "analyst", "name": "desk"})
        assert analyst.status_code == 201, analyst.text
    await asyncio.sleep(1.0)
    records = flows("ANL", 60, seed=61)
    expected = expected_confirmations(records)
    total = sum(len(items) for items in expected.values())
    await send_records(producer, records)
    await read_committed([topics.CONFIRMATIONS], lambda got: len(got) >= total, timeout=90)

    trades = [c for items in expected.values() for c in items if c["exec_type"] == "TRADE"]
    by_symbol: dict[str, tuple[int, Decimal, Decimal]] = {}
    for trade in trades:
        count, quantity, notional = by_symbol.get(str(trade["symbol"]), (0, Decimal(0), Decimal(0)))
        qty, px = Decimal(str(trade["last_qty"])), Decimal(str(trade["last_px"]))
        by_symbol[str(trade["symbol"])] = (count + 1, quantity + qty, notional + qty * px)

    token = {"Authorization": f"Bearer {analyst.json()['token']}"}
    async with httpx.AsyncClient(base_url=second.url, headers=token, timeout=30) as http:
        deadline = asyncio.get_running_loop().time() + 30
        while True:  # both workers report themselves within a few seconds
            answer = (await http.get("/api/v1/analytics", params={"by": "symbol"})).json()
            got = {
                item["key"]: (
                    item["executions"],
                    Decimal(item["quantity"]),
                    Decimal(item["notional"]),
                )
                for item in answer["items"]
            }
            if got == by_symbol or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.5)
        assert (answer["window"], answer["by"], answer["partial"]) == ("1h", "symbol", False)
        assert got == by_symbol
        for item in answer["items"]:
            quantity, notional = Decimal(item["quantity"]), Decimal(item["notional"])
            assert abs(Decimal(item["vwap"]) - notional / quantity) < Decimal("0.00000001")
            assert item["latency_ms"]["p50"] is not None

        per_subscription = (
            await http.get("/api/v1/analytics", params={"by": "subscription", "window": "1d"})
        ).json()
        mine = [i for i in per_subscription["items"] if i["key"] == subscription["id"]]
        assert [m["executions"] for m in mine] == [by_symbol.get("AAPL", (0,))[0]]

        for params, field in (({"by": "desk"}, "by"), ({"window": "5m"}, "window")):
            refused = await http.get("/api/v1/analytics", params=params)
            assert refused.status_code == 400
            assert refused.json()["error"]["field"] == field
