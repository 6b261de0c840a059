"""PlainCounter and PlainHistogram expose exactly what prometheus-client's own would."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from execdist.metrics import LATENCY_BUCKETS, LabelledChildren, PlainCounter, PlainHistogram


def exposition(registry: CollectorRegistry) -> list[str]:
    """The samples of a scrape, without prometheus-client's ``_created`` timestamps."""
    return [
        line for line in generate_latest(registry).decode().splitlines() if "_created" not in line
    ]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["orders", "executions"]),
            st.one_of(st.floats(0, 10), st.sampled_from(LATENCY_BUCKETS)),
        ),
        max_size=200,
    )
)
def test_the_scrape_is_the_same_as_prometheus_clients(observations) -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    histograms = (
        Histogram("wait_seconds", "Waits.", ["topic"], buckets=LATENCY_BUCKETS, registry=theirs),
        PlainHistogram("wait_seconds", "Waits.", ["topic"], buckets=LATENCY_BUCKETS, registry=ours),
    )
    unlabelled = (
        Histogram("run_seconds", "Runs.", buckets=LATENCY_BUCKETS, registry=theirs),
        PlainHistogram("run_seconds", "Runs.", buckets=LATENCY_BUCKETS, registry=ours),
    )
    counters = (
        Counter("records_total", "Records.", ["topic"], registry=theirs),
        PlainCounter("records_total", "Records.", ["topic"], registry=ours),
    )
    for topic, value in observations:
        for histogram in histograms:
            histogram.labels(topic).observe(value)
        for histogram in unlabelled:
            histogram.observe(value)
        for counter in counters:
            counter.labels(topic).inc()
            counter.labels(topic).inc(2)
    assert exposition(ours) == exposition(theirs)


def test_a_value_on_a_bucket_bound_counts_in_that_bucket() -> None:
    registry = CollectorRegistry()
    histogram = PlainHistogram("x_seconds", "X.", buckets=(0.1, 1.0), registry=registry)
    histogram.observe(0.1)
    histogram.observe(1.5)
    assert registry.get_sample_value("x_seconds_bucket", {"le": "0.1"}) == 1
    assert registry.get_sample_value("x_seconds_bucket", {"le": "1.0"}) == 1
    assert registry.get_sample_value("x_seconds_bucket", {"le": "+Inf"}) == 2
    assert registry.get_sample_value("x_seconds_sum") == 1.6
    assert registry.get_sample_value("x_seconds_count") == 2


def test_a_name_registered_twice_is_refused() -> None:
    registry = CollectorRegistry()
    PlainCounter("dup_total", "Dup.", registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        PlainCounter("dup_total", "Dup.", registry=registry)


def test_labelled_children_look_each_child_up_once() -> None:
    registry = CollectorRegistry()
    counter = PlainCounter("sent_total", "Sent.", ["subscription"], registry=registry)
    asked: list[str] = []
    labels = counter.labels

    def counted_labels(*values: str) -> object:
        asked.extend(values)
        return labels(*values)

    counter.labels = counted_labels  # type: ignore[method-assign]
    children = LabelledChildren(counter)
    children["s-1"].inc()
    children["s-1"].inc()
    children["s-2"].inc()
    assert children["s-1"] is labels("s-1")
    assert asked == ["s-1", "s-2"]
    assert registry.get_sample_value("sent_total", {"subscription": "s-1"}) == 2
