"""The analytics' Prometheus series: the hour's top keys of each dimension, and 'other'."""

from __future__ import annotations

import dataclasses
import time
from decimal import Decimal

from execdist.domain import ExecType
from execdist.metrics import Metrics
from execdist.services.analytics import TOP_N, Analytics
from tests.unit.domain.test_subscriptions import make_confirmation


def sample(metrics: Metrics, name: str, by: str, key: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"by": by, "key": key})


def test_the_top_accounts_by_notional_and_the_rest_as_other() -> None:
    metrics = Metrics()
    analytics = Analytics(metrics)
    accounts = TOP_N + 5
    for n in range(accounts):  # account n: n + 1 fills of 10 at n + 1
        for _ in range(n + 1):
            confirmation = dataclasses.replace(
                make_confirmation(exec_type=ExecType.TRADE),
                account=f"ACC-{n:02d}",
                last_qty=Decimal(10),
                last_px=Decimal(n + 1),
            )
            analytics.record(confirmation, (), time.time())
    analytics.seal()
    analytics.committed()
    analytics.export()

    for n in range(accounts - TOP_N, accounts):
        key = f"ACC-{n:02d}"
        assert sample(metrics, "execdist_window_executions", "account", key) == n + 1
        assert sample(metrics, "execdist_window_notional", "account", key) == 10 * (n + 1) ** 2
    rest = range(accounts - TOP_N)
    assert sample(metrics, "execdist_window_executions", "account", "other") == sum(
        n + 1 for n in rest
    )
    assert sample(metrics, "execdist_window_notional", "account", "other") == sum(
        10 * (n + 1) ** 2 for n in rest
    )
    assert sample(metrics, "execdist_window_executions", "account", "ACC-00") is None
    series = [
        labels["key"]
        for family in metrics.registry.collect()
        if family.name == "execdist_window_executions"
        for labels in (s.labels for s in family.samples)
        if labels["by"] == "account"
    ]
    assert len(series) == TOP_N + 1, series  # the top keys and 'other', nothing else
