"""AnomalyFlags: the rules applied in a partition's transaction, over the changelogged table.

Real RocksDB tables in a temporary folder; the whole path, with a worker and the broker, is in
tests/integration/test_anomalies.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from execdist.agents.anomalies import AnomalyFlags
from execdist.domain import Confirmation
from execdist.domain.anomalies import AnomalyRules
from execdist.domain.model import AnomalyRule
from execdist.metrics import Metrics
from execdist.tables.declarations import ANOMALY_STATS, table_specs
from execdist.tables.store import PartitionedState, RocksTables
from tests.unit.codecs.fixtures import sample_confirmation

T0 = datetime(2024, 5, 1, 13, 30, tzinfo=UTC)
RULES = AnomalyRules(min_samples=4)  # five fills a second apart weigh a little over 4


def fill(n: int, px: str = "100", qty: str = "100", account: str = "ACC-1") -> Confirmation:
    return replace(
        sample_confirmation(),
        exec_id=f"EX-{n}",
        confirmation_id=f"EX-{n}",
        last_px=Decimal(px),
        last_qty=Decimal(qty),
        account=account,
        exec_time=T0 + timedelta(seconds=n),
    )


@pytest.fixture
def stats(tmp_path: Path) -> Iterator[PartitionedState]:
    tables = RocksTables(tmp_path, table_specs("anomaly-test"), 8 * 1024 * 1024)
    tables.open(ANOMALY_STATS, 0, fresh=True)
    yield PartitionedState(tables, tables.specs[ANOMALY_STATS])
    tables.close_all()


def commit(stats: PartitionedState) -> None:
    stats.pending()
    stats.committed()


def test_flags_an_outlier_and_counts_it(stats: PartitionedState) -> None:
    metrics = Metrics()
    flags = AnomalyFlags(stats, RULES, metrics)
    assert all(flags.flag(0, fill(n)).anomaly is None for n in range(5))
    flagged = flags.flag(0, fill(5, px="150", qty="5000"))
    assert flagged.anomaly is not None
    assert flagged.anomaly.rules == (AnomalyRule.PRICE_DEVIATION, AnomalyRule.SIZE_OUTLIER)
    assert replace(flagged, anomaly=None) == fill(5, px="150", qty="5000")  # nothing else moved
    sample = metrics.registry.get_sample_value
    assert sample("execdist_anomalies_total", {"rule": "PRICE_DEVIATION"}) == 1
    assert sample("execdist_anomalies_total", {"rule": "SIZE_OUTLIER"}) == 1


def test_a_new_worker_judges_from_the_committed_statistics(stats: PartitionedState) -> None:
    first = AnomalyFlags(stats, RULES, Metrics())
    for n in range(5):
        first.flag(0, fill(n))
    commit(stats)
    after_restore = AnomalyFlags(stats, RULES, Metrics())  # decodes from the table
    assert (
        after_restore.flag(0, fill(6, px="150")).anomaly == first.flag(0, fill(6, px="150")).anomaly
    )
    assert stats.get(0, b"symbol:AAPL") is not None
    assert stats.get(0, b"account:ACC-1") is not None


def test_uncommitted_learning_is_forgotten_with_the_transaction(stats: PartitionedState) -> None:
    flags = AnomalyFlags(stats, RULES, Metrics())
    for n in range(5):
        flags.flag(0, fill(n))
    commit(stats)
    for n in range(5, 60):  # a new level, learnt but never committed
        flags.flag(0, fill(n, px="150"))
    stats.aborted(0)
    flags.release(0)
    again = flags.flag(0, fill(61, px="150"))
    assert again.anomaly is not None and again.anomaly.rules == (AnomalyRule.PRICE_DEVIATION,)


def test_turned_off_it_neither_flags_nor_writes(stats: PartitionedState) -> None:
    flags = AnomalyFlags(stats, AnomalyRules(price_band_bps=0, size_factor=0), Metrics())
    for n in range(30):
        assert flags.flag(0, fill(n, px=str(100 + 50 * (n % 2)))).anomaly is None
    assert stats.pending() == []
