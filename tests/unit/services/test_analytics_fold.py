"""Committed confirmations are added to the analytics' figures when they are read, many
commits at once: the figures are the same as if each commit had been added as it was applied."""

from __future__ import annotations

import dataclasses
import itertools
from decimal import Decimal

from execdist.domain import ExecType
from execdist.domain.analytics import BUCKET_S, Dimension, Window, WindowedFigures
from execdist.metrics import Metrics
from execdist.services.analytics import FOLD_AT, Analytics
from tests.unit.domain.test_subscriptions import make_confirmation

START = 1_800_000_000.0 + BUCKET_S - 4  # 4 s before a bucket begins


def commits() -> list[tuple[float, list[tuple[object, tuple[str, ...], float | None]]]]:
    """Commits 4.7 s apart over ten buckets (the clock going back once), of 1 to 7
    confirmations of a few symbols, venues, accounts and subscriptions, each kind."""
    kinds = itertools.cycle([ExecType.TRADE, ExecType.TRADE, ExecType.CORRECT, ExecType.BUST])
    made = []
    at = START
    for n in range(20):
        at += -2.0 if n == 11 else 4.7
        batch: list[tuple[object, tuple[str, ...], float | None]] = []
        for i in range(1 + n % 7):
            confirmation = dataclasses.replace(
                make_confirmation(
                    account=f"ACC-{(n + i) % 3}",
                    symbol=("AAPL", "MSFT")[i % 2],
                    venue=("XNAS", "ARCX", "BATS")[n % 3],
                    exec_type=next(kinds),
                    last_qty=str(10 * (i + 1)),
                ),
                last_px=Decimal("187.45") + Decimal(n) / 100,
            )
            subscriptions = tuple(f"sub-{s}" for s in range((n + i) % 3))
            timestamp = None if i == 3 else at - 0.001 * (n + i)
            batch.append((confirmation, subscriptions, timestamp))
        made.append((at, batch))
    return made


def test_figures_folded_when_read_equal_those_added_commit_by_commit() -> None:
    made = commits()
    expected = WindowedFigures()
    for at, batch in made:
        expected.add_all(
            at,
            [  # type: ignore[misc]
                (c, subscriptions, 0.0 if ts is None else max(at - ts, 0) * 1000)
                for c, subscriptions, ts in batch
            ],
        )
    clock = iter([at for at, _ in made])
    now = made[-1][0]
    analytics = Analytics(Metrics(), clock=lambda: next(clock, now))
    for _, batch in made:
        for confirmation, subscriptions, timestamp in batch:
            analytics.record(confirmation, subscriptions, timestamp)  # type: ignore[arg-type]
        analytics.seal()
        analytics.committed()

    compared = 0
    for by in Dimension:
        for window in Window:
            got = analytics.local(by, window)
            want = expected.window(by, window, now)
            assert {k: f.to_dict() for k, f in got.items()} == {
                k: f.to_dict() for k, f in want.items()
            }, (by, window)
            compared += len(want)
    # every key in the hour and the day (2 symbols, 3 venues, 3 accounts, 2 subscriptions),
    # and in the last minute's buckets only the keys of the commits applied then
    assert compared > 2 * (2 + 3 + 3 + 2)


def test_an_aborted_transaction_adds_nothing_and_a_large_backlog_is_added_at_once() -> None:
    analytics = Analytics(Metrics(), clock=lambda: START)
    confirmation = make_confirmation(exec_type=ExecType.TRADE, last_qty="1")
    analytics.record(confirmation, ("sub-1",), None)
    analytics.aborted()
    analytics.seal()
    analytics.committed()
    assert analytics.local(Dimension.SUBSCRIPTION, Window.DAY) == {}

    for _ in range(FOLD_AT):
        analytics.record(confirmation, ("sub-1",), None)
    analytics.seal()
    analytics.committed()
    # added at the commit, not when read: what waits to be added stays bounded
    assert analytics.figures_waiting == 0
    figures = analytics.local(Dimension.SUBSCRIPTION, Window.DAY)["sub-1"]
    assert figures.executions == FOLD_AT
    assert figures.quantity == FOLD_AT
