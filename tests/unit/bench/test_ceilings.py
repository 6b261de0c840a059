"""Sizing a ceiling's next backlog from the drain before it (``bench.ceilings``)."""

from __future__ import annotations

from bench.ceilings import next_backlog
from bench.load import CheckResult, LoadResult, Measurement


def drained(unique: int, written_at: float, first: float, last: float) -> Measurement:
    load = LoadResult(sent=unique, first_stamp=written_at - 1.0, last_stamp=written_at)
    check = CheckResult(delivered=unique, unique=unique, first_arrival=first, last_arrival=last)
    return Measurement(load, check, complete=True)


def test_a_backlog_that_arrived_in_one_clump_is_sized_by_the_pace_since_the_relay_started() -> None:
    # 5,000 records in one committed clump 1.6 s after the relay started: the clump's own
    # span says 289,780/s, the relay managed about 3,000/s
    clump = drained(5_000, written_at=100.0, first=101.6, last=101.617)
    # (5,000 / 1.617 s) x 20 s, not the cap that 289,780/s x 20 s would reach
    assert next_backlog(clump, 289_780.0, 20.0, 2_000_000) == 61_842


def test_a_steady_drain_is_sized_by_its_rate_and_the_cap_holds() -> None:
    steady = drained(100_000, written_at=100.0, first=100.2, last=104.2)
    assert next_backlog(steady, 20_000.0, 20.0, 2_000_000) == 400_000
    assert next_backlog(steady, 20_000.0, 20.0, 300_000) == 300_000


def test_a_drain_with_no_time_since_the_start_falls_back_to_its_rate() -> None:
    instant = drained(1_000, written_at=100.0, first=100.0, last=100.0)
    assert next_backlog(instant, 5_000.0, 10.0, 1_000_000) == 50_000
