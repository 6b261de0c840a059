"""The punctuators' schedule: when they are due, what they are called for, and a failure."""

from __future__ import annotations

import pytest

from execdist.runtime.punctuation import Punctuation, PunctuationFailed
from execdist.runtime.topology import PunctuationContext, Punctuator


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def contexts(*partitions: int) -> list[PunctuationContext]:
    return [PunctuationContext(p) for p in partitions]


class Calls:
    """Punctuators that record (name, partition) in one list, in the order called."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def punctuator(self, name: str, fail_on: int | None = None) -> Punctuator:
        async def punctuate(context: PunctuationContext) -> None:
            partition = context.partition
            self.calls.append((name, partition))
            if partition == fail_on:
                raise ValueError(f"{name} fails on {partition}")

        return punctuate


async def test_due_once_an_interval_has_passed_and_every_punctuator_runs_per_partition() -> None:
    clock, calls = Clock(), Calls()
    punctuation = Punctuation(
        [calls.punctuator("join"), calls.punctuator("backfill")], interval_s=1.0, clock=clock
    )
    assert not punctuation.due() and punctuation.until_due() == 1.0
    clock.now += 0.4
    assert not punctuation.due() and punctuation.until_due() == pytest.approx(0.6)
    clock.now += 0.6
    assert punctuation.due() and punctuation.until_due() == 0.0

    await punctuation.run(contexts(0, 2))

    assert calls.calls == [("join", 0), ("backfill", 0), ("join", 2), ("backfill", 2)]
    assert not punctuation.due() and punctuation.until_due() == 1.0


async def test_a_run_without_partitions_still_waits_a_whole_interval_for_the_next() -> None:
    """While partitions change hands the engine runs it with none: the next run must still be
    an interval away, or the engine's loop would poll without waiting until they are back."""
    clock, calls = Clock(), Calls()
    punctuation = Punctuation([calls.punctuator("join")], interval_s=1.0, clock=clock)
    clock.now += 5.0
    assert punctuation.until_due() == 0.0

    await punctuation.run([])

    assert calls.calls == []
    assert punctuation.until_due() == 1.0


async def test_a_failing_punctuator_names_its_partition_and_stops_the_run() -> None:
    clock, calls = Clock(), Calls()
    punctuation = Punctuation(
        [calls.punctuator("join", fail_on=1), calls.punctuator("backfill")],
        interval_s=1.0,
        clock=clock,
    )
    clock.now += 1.0

    with pytest.raises(PunctuationFailed) as raised:
        await punctuation.run(contexts(0, 1, 2))

    assert raised.value.partition == 1
    assert isinstance(raised.value.__cause__, ValueError)
    assert calls.calls == [("join", 0), ("backfill", 0), ("join", 1)]
    assert punctuation.until_due() == 1.0, "tried again at the next tick, not at once"
