"""Delivery figures count what committed, as a read_committed reader sees it."""

from __future__ import annotations

from execdist.domain.delivery import DeliveryStats


def test_a_delivery_counts_only_once_its_transaction_committed() -> None:
    stats = DeliveryStats()
    stats.record("s-1", 100.0)
    stats.record_confirmation(100.0)
    assert stats.by_subscription == {}, "nothing before the commit"
    stats.seal()
    stats.record("s-1", 100.5)  # the next batch, built while the first one commits
    stats.committed(now=100.25)
    delivery = stats.by_subscription["s-1"]
    assert delivery.delivered == 1, "only the sealed transaction's"
    assert delivery.latency.max_ms == 250.0, "from the input's timestamp to the commit"
    assert stats.overall.total == 1
    stats.seal()
    stats.committed(now=101.0)
    assert stats.by_subscription["s-1"].delivered == 2


def test_an_aborted_transaction_counts_nothing() -> None:
    stats = DeliveryStats()
    stats.record("s-1", None)
    stats.seal()
    stats.record("s-1", None)
    stats.aborted()
    stats.committed(now=5.0)
    stats.seal()
    stats.committed(now=6.0)
    assert stats.by_subscription == {}
    assert stats.overall.total == 0
