"""Delivery figures count what committed, as a read_committed reader sees it."""

from __future__ import annotations

from execdist.domain.delivery import DeliveryStats, bucket_of


def test_a_delivery_counts_only_once_its_transaction_committed() -> None:
    stats = DeliveryStats()
    stats.record(100.0, ("s-1",))
    assert stats.by_subscription == {}, "nothing before the commit"
    stats.seal()
    stats.record(100.5, ("s-1",))  # the next batch, built while the first one commits
    stats.committed(now=100.25)
    delivery = stats.by_subscription["s-1"]
    assert delivery.delivered == 1, "only the sealed transaction's"
    assert delivery.latency.max_ms == 250.0, "from the input's timestamp to the commit"
    assert stats.overall.total == 1
    stats.seal()
    stats.committed(now=101.0)
    assert stats.by_subscription["s-1"].delivered == 2


def test_a_confirmation_counts_once_overall_and_once_per_subscription_it_went_to() -> None:
    stats = DeliveryStats()
    stats.record(100.0, ("s-1", "s-2"))
    stats.record(100.2, ())  # matched no subscription
    stats.record(None, ("s-2",))
    stats.seal()
    stats.committed(now=100.25)
    assert stats.overall.total == 3
    assert stats.overall.max_ms == 250.0
    assert stats.overall.counts[0] == 1, "no input timestamp: no latency"
    s1, s2 = stats.by_subscription["s-1"], stats.by_subscription["s-2"]
    assert (s1.delivered, s2.delivered) == (1, 2)
    assert s1.latency.counts[bucket_of(250.0)] == s1.latency.total == 1
    assert s2.latency.counts[bucket_of(250.0)] == s2.latency.counts[bucket_of(0.0)] == 1
    assert s2.latency.max_ms == 250.0
    assert s1.last_delivery == s2.last_delivery is not None


def test_an_aborted_transaction_counts_nothing() -> None:
    stats = DeliveryStats()
    stats.record(None, ("s-1",))
    stats.seal()
    stats.record(None, ("s-1",))
    stats.aborted()
    stats.committed(now=5.0)
    stats.seal()
    stats.committed(now=6.0)
    assert stats.by_subscription == {}
    assert stats.overall.total == 0
