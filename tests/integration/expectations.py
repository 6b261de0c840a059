"""What the pipeline must output for a given input, computed with the pure core."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import orjson

from execdist import topics
from execdist.demo import FeedRecord
from execdist.domain import (
    Confirmation,
    Confirmed,
    OrderState,
    apply_execution,
    apply_order,
    parse_execution,
    parse_order,
)


def confirmed(records: list[FeedRecord]) -> Iterator[tuple[FeedRecord, Confirmation]]:
    """Each confirmation the pure core makes of ``records``, with the record that caused it,
    in the order they come."""
    states: dict[str, OrderState] = {}
    now = datetime.now(UTC)
    for record in records:
        data = orjson.loads(record.value)
        order_id = str(data["order_id"])
        state = states.setdefault(order_id, OrderState.new(order_id, now))
        if record.topic == topics.ORDERS:
            step = apply_order(state, parse_order(data), now)
        else:
            step = apply_execution(state, parse_execution(data), {}, now)
        for output in step.outputs:
            if isinstance(output, Confirmed):
                yield record, output.confirmation


def expected_confirmations(records: list[FeedRecord]) -> dict[str, list[dict[str, object]]]:
    """Per order_id, the confirmations (without ``confirmed_at``) in the order they must come."""
    result: dict[str, list[dict[str, object]]] = {}
    for _, confirmation in confirmed(records):
        body = confirmation.to_dict()
        body.pop("confirmed_at")
        result.setdefault(confirmation.order_id, []).append(body)
    return result


def actual_confirmations(values: list[bytes]) -> dict[str, list[dict[str, object]]]:
    result: dict[str, list[dict[str, object]]] = {}
    for value in values:
        body = orjson.loads(value)
        body.pop("confirmed_at")
        result.setdefault(str(body["order_id"]), []).append(body)
    return result
