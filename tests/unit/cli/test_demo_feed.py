"""The demo feed: deterministic for a seed, and with fat fingers the anomaly rules catch."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import orjson

from execdist import topics
from execdist.demo import SYMBOLS, order_flow
from execdist.domain import Confirmed, OrderState, apply_execution, apply_order
from execdist.domain.anomalies import AnomalyRules, RecentFills, observe
from execdist.domain.validation import parse_execution, parse_order


def flows(seed: int, orders: int, **options: float) -> list[bytes]:
    rng = random.Random(seed)
    return [
        record.value
        for n in range(orders)
        for record in order_flow(rng, f"D-{n:04d}", allow_amend=False, **options)  # type: ignore[arg-type]
    ]


def without_times(values: list[bytes]) -> list[dict[str, object]]:
    out = []
    for value in values:
        data = orjson.loads(value)
        data.pop("exec_time", None)
        data.pop("event_time", None)
        out.append(data)
    return out


def test_no_fat_fingers_leaves_the_flow_as_it_was() -> None:
    assert without_times(flows(3, 50)) == without_times(flows(3, 50, fat_finger=0.0))


def test_fat_fingers_are_flagged_and_nothing_else_is() -> None:
    rng = random.Random(5)
    states: dict[str, OrderState] = {}
    stats: dict[str, RecentFills] = {}
    account = RecentFills()
    flagged, fat = set(), set()
    now = datetime.now(UTC)
    for n in range(400):
        for record in order_flow(rng, f"F-{n:04d}", allow_amend=False, fat_finger=0.02):
            data = orjson.loads(record.value)
            state = states.setdefault(data["order_id"], OrderState.new(data["order_id"], now))
            if record.topic == topics.ORDERS:
                step = apply_order(state, parse_order(data), now)
                continue
            execution = parse_execution(data)
            if execution.last_px > Decimal(SYMBOLS[state.order.symbol]) * Decimal("1.05"):  # type: ignore[union-attr]
                fat.add(execution.exec_id)
            step = apply_execution(state, execution, {}, now)
            for output in step.outputs:
                if isinstance(output, Confirmed):
                    c = output.confirmation
                    symbol = stats.setdefault(c.symbol, RecentFills())
                    if observe(c, symbol, account, AnomalyRules()) is not None:
                        flagged.add(c.exec_id)
    assert flagged, "the demo shows anomalies"
    assert flagged <= fat, "only the fat-fingered prices are flagged"
