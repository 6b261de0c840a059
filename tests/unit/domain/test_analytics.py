"""Analytics figures: exact sums, windows, and merging the workers' answers."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from execdist.domain import ExecType
from execdist.domain.analytics import (
    BUCKET_S,
    Dimension,
    Figures,
    Window,
    WindowedFigures,
    merge_windows,
)
from tests.unit.domain.test_subscriptions import make_confirmation

NOW = 1_700_000_000.0  # 22:13:20 UTC: the trading day began at 00:00 UTC

_fills = st.lists(
    st.tuples(
        st.sampled_from(["AAPL", "MSFT", "NVDA"]),
        st.sampled_from(list(ExecType)),
        st.decimals(min_value=1, max_value=10**9, places=4),
        st.decimals(min_value=Decimal("0.0001"), max_value=10**5, places=4),
        st.integers(min_value=0, max_value=3500),  # seconds ago
    ),
    max_size=40,
)


def confirmation(symbol: str, kind: ExecType, qty: Decimal, px: Decimal):  # type: ignore[no-untyped-def]
    return dataclasses.replace(
        make_confirmation(symbol=symbol, exec_type=kind), last_qty=qty, last_px=px
    )


@settings(max_examples=60, deadline=None)
@given(_fills, st.integers(min_value=0, max_value=40))
def test_two_workers_merged_equal_one_worker_with_everything(fills, split) -> None:  # type: ignore[no-untyped-def]
    whole, first, second = WindowedFigures(), WindowedFigures(), WindowedFigures()
    for index, (symbol, kind, qty, px, ago) in enumerate(sorted(fills, key=lambda f: -f[4])):
        c = confirmation(symbol, kind, qty, px)
        whole.add(NOW - ago, c, ["s-1"], 5.0)
        (first if index < split else second).add(NOW - ago, c, ["s-1"], 5.0)
    for by in Dimension:
        for window in Window:
            expected = whole.window(by, window, NOW)
            merged = merge_windows([first.window(by, window, NOW), second.window(by, window, NOW)])
            assert {k: v.to_dict() for k, v in merged.items()} == {
                k: v.to_dict() for k, v in expected.items()
            }


@settings(max_examples=60, deadline=None)
@given(_fills)
def test_the_hour_sums_trades_exactly_and_counts_busts_and_corrections(fills) -> None:  # type: ignore[no-untyped-def]
    figures = WindowedFigures()
    for symbol, kind, qty, px, ago in sorted(fills, key=lambda f: -f[4]):
        figures.add(NOW - ago, confirmation(symbol, kind, qty, px), [], 1.0)
    hour = figures.window(Dimension.SYMBOL, Window.HOUR, NOW)
    for symbol in {f[0] for f in fills}:
        mine = [f for f in fills if f[0] == symbol]
        trades = [f for f in mine if f[1] is ExecType.TRADE]
        got = hour[symbol]
        assert got.executions == len(trades)
        assert got.quantity == sum((f[2] for f in trades), Decimal(0))
        assert got.notional == sum((f[2] * f[3] for f in trades), Decimal(0))  # exact here too
        assert got.busts == sum(1 for f in mine if f[1] is ExecType.BUST)
        assert got.corrections == sum(1 for f in mine if f[1] is ExecType.CORRECT)


@settings(max_examples=80, deadline=None)
@given(_fills, st.lists(st.integers(min_value=1, max_value=12), min_size=1))
def test_commits_of_any_size_count_as_their_confirmations_one_by_one(fills, sizes) -> None:  # type: ignore[no-untyped-def]
    """A commit of a few confirmations is added directly, a larger one summed per key first:
    the figures are the same as those of its confirmations added one by one at its time."""
    rows = [
        (confirmation(symbol, kind, qty, px), ["s-1", f"s-{ago % 3}"], ago / 7)
        for symbol, kind, qty, px, ago in fills
    ]
    one_by_one, in_commits = WindowedFigures(), WindowedFigures()
    start, turn = 0, 0
    while start < len(rows):
        commit = rows[start : start + sizes[turn % len(sizes)]]
        at = NOW - 3 * turn  # commits a few seconds apart: they share buckets and the day
        in_commits.add_all(at, commit)
        for c, subscriptions, ms in commit:
            one_by_one.add(at, c, subscriptions, ms)
        start, turn = start + len(commit), turn + 1
    for by in Dimension:
        for window in Window:
            assert {k: v.to_dict() for k, v in in_commits.window(by, window, NOW).items()} == {
                k: v.to_dict() for k, v in one_by_one.window(by, window, NOW).items()
            }


def test_windows_leave_out_what_is_older() -> None:
    figures = WindowedFigures()
    figures.add(NOW - 3000, confirmation("AAPL", ExecType.TRADE, Decimal(100), Decimal(10)), [], 1)
    figures.add(NOW - 5, confirmation("AAPL", ExecType.TRADE, Decimal(300), Decimal(20)), [], 1)
    minute = figures.window(Dimension.SYMBOL, Window.MINUTE, NOW)["AAPL"]
    hour = figures.window(Dimension.SYMBOL, Window.HOUR, NOW)["AAPL"]
    assert (minute.executions, hour.executions) == (1, 2)
    item = hour.item("AAPL")
    assert item["vwap"] == "17.5" and item["notional"] == "7000"
    assert figures.window(Dimension.VENUE, Window.DAY, NOW)["XNAS"].executions == 2
    tomorrow = NOW + 86_400
    assert figures.window(Dimension.SYMBOL, Window.DAY, tomorrow) == {}


def test_figures_travel_between_workers_unchanged() -> None:
    figures = Figures()
    figures.add(confirmation("AAPL", ExecType.TRADE, Decimal("1.5"), Decimal("2.25")), 3.0)
    assert Figures.from_dict(figures.to_dict()).to_dict() == figures.to_dict()


def hour_merged_from_buckets(
    figures: WindowedFigures, by: Dimension, now: float
) -> dict[str, dict[str, object]]:
    """The hour's window as the merge of its buckets: those that began within the hour as of
    ``now`` (a commit whose clock went back counts in the newest bucket begun by then)."""
    result: dict[str, Figures] = {}
    for start, keyed in figures._buckets:
        if start <= now - 3600 - BUCKET_S:
            continue
        for (dimension, key), entry in keyed.items():
            if dimension is by:
                result.setdefault(key, Figures()).merge(entry)
    return {key: figures.to_dict() for key, figures in result.items()}


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["AAPL", "MSFT"]),
            st.sampled_from(list(ExecType)),
            st.decimals(min_value=1, max_value=10**6, places=2),
            st.integers(min_value=-30, max_value=900),  # seconds after the commit before
            st.integers(min_value=1, max_value=8),  # confirmations in the commit
            st.integers(min_value=0, max_value=50_000),  # latency, in 1/10 ms
        ),
        min_size=4,
        max_size=40,
    ),
    st.lists(st.integers(min_value=0, max_value=2000), min_size=1, max_size=6),
)
def test_the_hour_window_and_ranking_are_the_merge_of_its_buckets(commits, queries) -> None:  # type: ignore[no-untyped-def]
    """Kept as buckets come and go, over more than an hour, with commits of any size, clocks
    that go back a little, and queries in between: the hour's figures per key (sums, counts,
    latency histogram and maximum) are the merge of the hour's buckets, and the ranking's
    executions and notional are the window's."""
    figures, at, asked, now = WindowedFigures(), NOW, iter(sorted(queries)), NOW
    latest = NOW
    for symbol, kind, qty, step, size, latency in commits:
        at += step
        latest = max(latest, at)
        commit = [
            (confirmation(symbol, kind, qty, Decimal("1.5")), [f"s-{n % 3}"], (latency + n) / 10)
            for n in range(size)
        ]
        figures.add_all(at, commit)
        query = next(asked, None)
        if query is not None:
            # the clock of the queries does not go back, nor behind a commit's
            now = max(now, latest + query / 100)
            for by in Dimension:
                window = figures.window(by, Window.HOUR, now)
                assert {k: f.to_dict() for k, f in window.items()} == hour_merged_from_buckets(
                    figures, by, now
                )
                assert figures.hour_ranking(by, now) == {
                    key: (f.executions, f.notional) for key, f in window.items()
                }
    for by in Dimension:
        later = max(now, latest) + 1800
        window = figures.window(by, Window.HOUR, later)
        assert {k: f.to_dict() for k, f in window.items()} == hour_merged_from_buckets(
            figures, by, later
        )
        assert figures.hour_ranking(by, later) == {
            key: (f.executions, f.notional) for key, f in window.items()
        }


def test_the_hours_largest_latency_falls_when_the_bucket_that_held_it_leaves() -> None:
    figures = WindowedFigures()
    trade = confirmation("AAPL", ExecType.TRADE, Decimal(100), Decimal(10))
    figures.add(NOW - 3000, trade, ["s-1"], 900.0)
    figures.add(NOW - 2000, trade, ["s-1"], 40.0)
    figures.add(NOW - 1000, trade, ["s-1"], 70.0)
    assert figures.window(Dimension.SYMBOL, Window.HOUR, NOW)["AAPL"].latency.max_ms == 900.0
    hour = figures.window(Dimension.SYMBOL, Window.HOUR, NOW + 700)["AAPL"]
    assert (hour.executions, hour.latency.max_ms) == (2, 70.0)
    hour = figures.window(Dimension.SYMBOL, Window.HOUR, NOW + 2500)["AAPL"]
    assert (hour.executions, hour.latency.max_ms) == (1, 70.0)
    assert figures.window(Dimension.SYMBOL, Window.HOUR, NOW + 3700) == {}


def test_the_hours_figures_are_the_callers_to_change() -> None:
    """What the hour's window returns is a copy: merging other workers' answers into it
    changes nothing kept."""
    figures = WindowedFigures()
    trade = confirmation("AAPL", ExecType.TRADE, Decimal(100), Decimal(10))
    figures.add(NOW, trade, ["s-1"], 5.0)
    answer = figures.window(Dimension.SYMBOL, Window.HOUR, NOW)["AAPL"]
    answer.merge(answer)
    assert figures.window(Dimension.SYMBOL, Window.HOUR, NOW)["AAPL"].executions == 1


def test_a_commit_older_than_the_hour_ranked_already_stays_out_of_the_ranking() -> None:
    """A commit whose clock went back past the hour of the last ranking is in no window."""
    figures = WindowedFigures()
    trade = confirmation("AAPL", ExecType.TRADE, Decimal(100), Decimal(10))
    figures.add(NOW, trade, ["s-1"], 1.0)
    assert figures.hour_ranking(Dimension.SYMBOL, NOW) == {"AAPL": (1, Decimal(1000))}
    figures.add(NOW - 4000, trade, ["s-1"], 1.0)
    later = NOW + 5
    for by in Dimension:
        expected = {
            key: (f.executions, f.notional)
            for key, f in figures.window(by, Window.HOUR, later).items()
        }
        assert figures.hour_ranking(by, later) == expected
    assert figures.hour_ranking(Dimension.SYMBOL, later) == {"AAPL": (1, Decimal(1000))}
