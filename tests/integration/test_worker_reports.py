"""A worker's own records outside any transaction: its report on the workers topic every
second, the last one saying it stopped, and HEALTH, PERFORMANCE and DISTRIBUTION_STATUS events
on the status topic every ten seconds."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from execdist import topics
from tests.integration.conftest import Worker, read_committed
from tests.integration.helpers import flows, produce, subscribe


async def test_a_worker_reports_itself_and_its_subscriptions_and_says_when_it_stopped(
    cluster: Callable[..., Worker],
) -> None:
    worker = cluster()
    worker_id = f"worker-{worker.web_port}"
    subscription = await subscribe(worker)  # everything
    await produce(flows("RPT", 5, seed=7))

    def events(records: list) -> dict[str, list[dict[str, object]]]:  # type: ignore[type-arg]
        by_type: dict[str, list[dict[str, object]]] = {}
        for record in records:
            event = orjson.loads(record.value)
            if event["source"] == worker_id:
                by_type.setdefault(str(event["type"]), []).append(event)
        return by_type

    def distribution_with_deliveries(records: list) -> list[dict[str, object]]:  # type: ignore[type-arg]
        return [
            event
            for event in events(records).get("DISTRIBUTION_STATUS", [])
            if event["subscription_id"] == subscription["id"]
            and int(event["details"]["delivered"]) > 0  # type: ignore[index]
        ]

    # the first periodic events come ten seconds after the start; the deliveries must be in
    # an interval's figures, so allow three intervals
    status = await read_committed(
        [topics.STATUS],
        lambda got: (
            bool(distribution_with_deliveries(got))
            and {"HEALTH", "PERFORMANCE"} <= events(got).keys()
        ),
        timeout=40,
    )
    by_type = events(status)
    assert {"HEALTH", "PERFORMANCE"} <= by_type.keys(), by_type.keys()
    health = by_type["HEALTH"][-1]["details"]
    assert health["worker_id"] == worker_id  # type: ignore[index]
    assert sorted(health["partitions"]) == [0, 1, 2, 3]  # type: ignore[index]
    assert "distribution_latency_ms" in by_type["PERFORMANCE"][-1]["details"]  # type: ignore[operator]
    assert distribution_with_deliveries(status), "no DISTRIBUTION_STATUS with the deliveries"

    assert worker.stop() == 0

    def reports(records: list) -> list[dict[str, object]]:  # type: ignore[type-arg]
        written = [orjson.loads(record.value) for record in records if record.value is not None]
        return [report for report in written if report["worker_id"] == worker_id]

    written = await read_committed(
        [topics.WORKERS], lambda got: any(r["stopped"] for r in reports(got)), timeout=20
    )
    mine = reports(written)
    assert len(mine) >= 2, "a report every second while the worker ran"
    assert not mine[0]["stopped"]
    assert mine[-1]["stopped"], "the last report says the worker stopped"
    delivery = mine[-1]["delivery"]
    assert isinstance(delivery, dict) and subscription["id"] in delivery
