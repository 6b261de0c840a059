"""What SREs get from a real worker process: the metrics the dashboard and alert rules read, on
its /metrics, and its log as JSON lines."""

from __future__ import annotations

import asyncio
import json
import random
import time

import httpx
import orjson
import pytest
import yaml

from execdist import topics
from execdist.demo import order_flow
from tests.integration.conftest import read_committed
from tests.unit.monitoring.fixtures import (
    ALERTS,
    DASHBOARD,
    PROMETHEUS_OWN,
    metric_names,
)

pytestmark = pytest.mark.integration


def _scraped_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            suffixes = ("_bucket", "_count", "_sum") if kind == "histogram" else ("",)
            names.update(name + suffix for suffix in suffixes)
    return names


def _sample(text: str, prefix: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_a_worker_exports_what_the_dashboard_and_rules_read_and_logs_json(
    cluster, producer
) -> None:
    worker = cluster()
    await producer.send(topics.EXECUTIONS, b"\xff not json", key=b"OBS-BAD")
    records = list(order_flow(random.Random(8), "OBS-1", allow_amend=False))
    for record in records:
        await producer.send(record.topic, record.value, key=record.key)
    await producer.flush()
    await read_committed([topics.DLQ], lambda got: any(r.key == b"OBS-BAD" for r in got))

    async with httpx.AsyncClient(base_url=worker.url) as http:
        deadline = time.monotonic() + 15
        while True:
            text = (await http.get("/metrics")).text
            # the lag gauge is set once a second, from the first commit of the partition on
            if "execdist_input_lag_records{" in text or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)

    exported = _scraped_names(text) | PROMETHEUS_OWN
    used = {name for rule in _rule_exprs() for name in metric_names(rule)}
    used |= {name for expr in _dashboard_exprs() for name in metric_names(expr)}
    assert used <= exported, f"not on /metrics: {sorted(used - exported)}"
    assert (_sample(text, 'execdist_rebalances_total{event="assigned"}') or 0) >= 1
    assert "execdist_input_lag_records{" in text
    assert (_sample(text, 'execdist_dlq_records_total{reason="DECODE_ERROR"}') or 0) >= 1

    lines = [
        orjson.loads(line)
        for line in worker.log_path.read_text(errors="replace").splitlines()
        if line.startswith("{")
    ]
    assert lines, worker.log_tail()
    assert all(line["worker_id"] == f"worker-{worker.web_port}" for line in lines)
    (dead,) = [line for line in lines if line.get("reason") == "DECODE_ERROR"]
    assert dead["topic"] == topics.EXECUTIONS
    assert dead["order_id"] == "OBS-BAD"
    assert isinstance(dead["partition"], int)
    assert dead["level"] == "info"


def _rule_exprs() -> list[str]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in document["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        target["expr"]
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]
