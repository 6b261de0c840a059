"""Anomaly flags through real workers and the real broker, across a SIGKILL.

The flags a worker must set are computed here from the feed with the pure core's rules, one set
of statistics per input partition as the worker keeps them; the worker that takes over after
the kill restores the statistics from their changelog and must flag exactly the same
executions with exactly the same figures, each confirmation and each ANOMALY event once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from execdist import topics
from execdist.demo import FeedRecord
from execdist.domain.anomalies import AnomalyRules, RecentFills, observe
from execdist.topics import key_partition
from tests.integration.conftest import read_committed
from tests.integration.expectations import confirmed
from tests.integration.helpers import send_records, subscribe

pytestmark = pytest.mark.integration

PARTITIONS = 4
RULES = AnomalyRules(min_samples=5)
ENV = {"EXECDIST_ANOMALY_MIN_SAMPLES": "5"}  # the other thresholds: the defaults
T0 = datetime(2026, 11, 29, 14, 0, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def feed(first: int, orders: int) -> list[FeedRecord]:
    """Orders of 5 fills near 100 (or 400); now and then a price 30 % off or a size 40x."""
    records = []
    for n in range(first, first + orders):
        order_id = f"ANOM-{n:04d}"
        symbol, base = ("AAPL", 100) if n % 2 else ("MSFT", 400)
        order = {
            "order_id": order_id,
            "account": f"ACC-{n % 3}",
            "symbol": symbol,
            "side": "BUY",
            "quantity": "100000",
            "order_type": "MARKET",
            "limit_price": None,
            "currency": "USD",
            "version": 1,
            "event_time": stamp(T0),
        }
        records.append(FeedRecord(topics.ORDERS, order_id.encode(), orjson.dumps(order)))
        for seq in range(1, 6):
            k = n * 5 + seq
            px = Decimal(base) + Decimal(k % 7) / 10
            qty = 100 + (k % 5) * 20
            if k % 23 == 0:
                px = px * Decimal("1.3")
            if k % 31 == 0:
                qty *= 40
            execution = {
                "exec_id": f"{order_id}-E{seq}",
                "order_id": order_id,
                "seq": seq,
                "exec_type": "TRADE",
                "ref_exec_id": None,
                "last_qty": str(qty),
                "last_px": str(px),
                "venue": "XNAS",
                "exec_time": stamp(T0 + timedelta(seconds=k)),
            }
            records.append(
                FeedRecord(topics.EXECUTIONS, order_id.encode(), orjson.dumps(execution))
            )
    return records


def expected_anomalies(records: list[FeedRecord]) -> dict[str, dict[str, object] | None]:
    """exec_id -> the anomaly its confirmation must carry (None: not flagged)."""
    stats: dict[tuple[int, str], RecentFills] = {}
    result: dict[str, dict[str, object] | None] = {}
    for record, c in confirmed(records):
        partition = key_partition(record.key, PARTITIONS)
        symbol = stats.setdefault((partition, "s:" + c.symbol), RecentFills())
        account = stats.setdefault((partition, "a:" + c.account), RecentFills())
        anomaly = observe(c, symbol, account, RULES)
        result[c.exec_id] = None if anomaly is None else anomaly.to_dict()
    return result


async def test_flags_are_the_rules_answer_exactly_once_across_a_kill(cluster, producer) -> None:
    first_half, second_half = feed(0, 60), feed(60, 60)
    expected = expected_anomalies(first_half + second_half)
    flagged = {exec_id for exec_id, anomaly in expected.items() if anomaly is not None}
    rules_seen = {rule for a in expected.values() if a for rule in a["rules"]}  # type: ignore[attr-defined]
    assert len(flagged) >= 10 and rules_seen == {"PRICE_DEVIATION", "SIZE_OUTLIER"}

    first = cluster(**ENV)
    watch = await subscribe(first, expr="anomaly != null")
    await send_records(producer, first_half)
    await read_committed([topics.CONFIRMATIONS], lambda got: len(got) >= len(first_half) // 3, 90)
    first.kill()
    await send_records(producer, second_half)
    cluster(**ENV)  # restores the statistics from their changelog and goes on

    confirmations = await read_committed(
        [topics.CONFIRMATIONS], lambda got: len(got) >= len(expected), 120, settle=2.0
    )
    bodies = [orjson.loads(r.value) for r in confirmations]
    assert sorted(b["exec_id"] for b in bodies) == sorted(expected)  # each exactly once
    assert {b["exec_id"]: b["anomaly"] for b in bodies} == expected

    topic = f"execdist.sub.{watch['id']}"
    delivered = await read_committed([topic], lambda got: len(got) >= len(flagged), 60, settle=2.0)
    assert sorted(orjson.loads(r.value)["exec_id"] for r in delivered) == sorted(flagged)

    status = await read_committed(
        [topics.STATUS],
        lambda got: sum(orjson.loads(r.value)["type"] == "ANOMALY" for r in got) >= len(flagged),
        60,
        settle=2.0,
    )
    events = [orjson.loads(r.value) for r in status]
    anomaly_events = [e for e in events if e["type"] == "ANOMALY"]
    assert sorted(e["details"]["exec_id"] for e in anomaly_events) == sorted(flagged)
    for event in anomaly_events:
        details = event["details"]
        assert {k: details[k] for k in ("rules", "details")} == expected[details["exec_id"]]
