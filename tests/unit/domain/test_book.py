"""Queries across the book without a broker: selection of orders and positions, parameters,
cursors, and the merge of several workers' answers into pages that list every key once."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from execdist.domain import OrderState, OrderStatus, apply_execution, apply_order, order_view
from execdist.domain.book import (
    MAX_LIMIT,
    OPEN_STATUSES,
    BookQuery,
    InvalidBookQuery,
    PartialPage,
    decode_cursor,
    encode_cursor,
    merge_pages,
    order_item,
    parse_order_query,
    parse_partitions,
    parse_position_query,
    position_item,
)
from execdist.domain.model import Order
from tests.unit.domain.fixtures import T0, at, make_order, trade

RETENTION = timedelta(days=7)


def stored(order: Order | None, *fills: str, order_id: str = "ORD-1") -> bytes:
    """An order's stored state with trades of the given quantities."""
    state = OrderState.new(order_id, T0)
    if order is not None:
        apply_order(state, order, T0)
    for seq, qty in enumerate(fills, start=1):
        apply_execution(state, trade(f"EX-{seq}", seq, qty, "10", order_id), None, at(seq))
    return orjson.dumps(state.to_dict())


def the_order(**changes: object) -> Order:
    return dataclasses.replace(make_order("100"), **changes)  # type: ignore[arg-type]


# ---- selection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fills", "status"),
    [
        ((), OrderStatus.UNFILLED),
        (("40",), OrderStatus.PARTIALLY_FILLED),
        (("40", "60"), OrderStatus.FILLED),
        (("40", "80"), OrderStatus.OVERFILLED),
    ],
)
def test_open_orders_are_the_unfilled_and_partially_filled(
    fills: tuple[str, ...], status: OrderStatus
) -> None:
    raw = stored(the_order(), *fills)
    item = order_item(parse_order_query({}), raw, at(10), RETENTION)
    if status in OPEN_STATUSES:
        assert item == order_view(OrderState.from_dict(orjson.loads(raw)))
        assert item["order_status"] == status.value
    else:
        assert item is None
    chosen = parse_order_query({"status": status.value})
    assert order_item(chosen, raw, at(10), RETENTION) is not None
    assert order_item(parse_order_query({"status": "all"}), raw, at(10), RETENTION) is not None


def test_account_symbol_and_since_filter() -> None:
    raw = stored(the_order(), "10")  # last activity at(1)
    now = at(10)
    for params, selected in [
        ({"account": "ACC-7"}, True),
        ({"account": "ACC-8"}, False),
        ({"symbol": "AAPL"}, True),
        ({"symbol": "MSFT"}, False),
        ({"account": "ACC-7", "symbol": "MSFT"}, False),
        ({"since": at(1).isoformat()}, True),
        ({"since": "2024-05-01T13:30:02Z"}, False),
        ({"since": "2024-05-01T15:30:00+02:00"}, True),  # T0, in another zone
    ]:
        item = order_item(parse_order_query(params), raw, now, RETENTION)
        assert (item is not None) is selected, params


def test_orders_without_an_order_and_expired_orders_are_not_listed() -> None:
    waiting = stored(None, "10")
    assert order_item(parse_order_query({"status": "all"}), waiting, at(10), RETENTION) is None
    raw = stored(the_order())
    query = parse_order_query({"status": "all"})
    assert order_item(query, raw, T0 + RETENTION - timedelta(seconds=1), RETENTION) is not None
    assert order_item(query, raw, T0 + RETENTION, RETENTION) is None


def test_positions_for_one_symbol_or_all() -> None:
    figures = {"bought_qty": "10", "bought_notional": "100", "sold_qty": "4", "sold_notional": "44"}
    raw = orjson.dumps({"AAPL": figures, "MSFT": figures})
    every = position_item(parse_position_query({}), "ACC-1", raw)
    assert every is not None and [p["symbol"] for p in every["positions"]] == ["AAPL", "MSFT"]  # type: ignore[index]
    aapl = position_item(parse_position_query({"symbol": "AAPL"}), "ACC-1", raw)
    assert aapl == {
        "account": "ACC-1",
        "positions": [{"symbol": "AAPL", "net_qty": "6", **figures}],
    }
    assert position_item(parse_position_query({"symbol": "SAP"}), "ACC-1", raw) is None


# ---- parameters and cursors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "OPENED"}, "status"),
        ({"status": "FILLED,nope"}, "status"),
        ({"since": "yesterday"}, "since"),
        ({"since": ""}, "since"),
        ({"limit": ""}, "limit"),
        ({"since": "2024-05-01T13:30:00"}, "since"),
        ({"limit": "0"}, "limit"),
        ({"limit": str(MAX_LIMIT + 1)}, "limit"),
        ({"limit": "²"}, "limit"),
        ({"account": "x" * 300}, "account"),
        ({"cursor": "!!"}, "cursor"),
        ({"cursor": "eyJ2IjoxfQ"}, "cursor"),  # {"v":1}
    ],
)
def test_bad_parameters_name_their_field(params: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidBookQuery) as refused:
        parse_order_query(params)
    assert refused.value.field == field


def test_statuses_are_a_comma_separated_list() -> None:
    query = parse_order_query({"status": "filled, OVERFILLED"})
    assert query.statuses == {OrderStatus.FILLED, OrderStatus.OVERFILLED}
    assert parse_order_query({"status": "open"}).statuses == OPEN_STATUSES
    assert parse_order_query({}).statuses == OPEN_STATUSES


def test_a_cursor_is_good_for_its_own_filters_only() -> None:
    query = parse_order_query({"account": "ACC-1", "limit": "5"})
    cursor = encode_cursor(query, "ORD-9")
    assert decode_cursor(query, cursor) == "ORD-9"
    again = parse_order_query({"account": "ACC-1", "limit": "50", "cursor": cursor})
    assert again.after == "ORD-9"  # the page size may change between pages
    with pytest.raises(InvalidBookQuery, match="other filters"):
        parse_order_query({"account": "ACC-2", "cursor": cursor})
    with pytest.raises(InvalidBookQuery):
        parse_position_query({"account": "ACC-1", "cursor": cursor})


def test_to_params_asks_another_worker_the_same_question() -> None:
    query = parse_order_query(
        {"account": "A", "symbol": "S", "status": "FILLED", "since": "2024-05-01T13:30:00Z"}
    )
    query = dataclasses.replace(query, after="ORD-3")
    assert parse_order_query(query.to_params()) == query
    positions = dataclasses.replace(parse_position_query({"symbol": "S"}), after="ACC-1")
    assert parse_position_query(positions.to_params()) == positions


def test_partitions_parameter() -> None:
    assert parse_partitions("0,3, 1", 4) == {0, 1, 3}
    for bad in ("", "4", "-1", "a", "1,,2"):
        with pytest.raises(InvalidBookQuery):
            parse_partitions(bad, 4)


def test_a_partial_page_survives_the_wire() -> None:
    page = PartialPage([("A", {"order_id": "A"})], True, frozenset({1, 2}))
    assert PartialPage.from_dict(orjson.loads(orjson.dumps(page.to_dict()))) == page


# ---- merging answers into pages -------------------------------------------------------------


def answer(query: BookQuery, keys: list[str], partitions: set[int]) -> PartialPage:
    """What an owner of ``partitions`` holding ``keys`` answers (the reference behaviour)."""
    after = [key for key in sorted(keys) if query.after is None or key > query.after]
    page = after[: query.limit]
    return PartialPage(
        [(key, {"key": key}) for key in page], len(after) > query.limit, frozenset(partitions)
    )


def read_all(
    book: dict[int, list[str]], owners: list[set[int]], limit: int
) -> tuple[list[str], int, list[list[int]]]:
    """Page through the book as a client does; returns the keys, pages and missing lists."""
    query = dataclasses.replace(parse_order_query({}), limit=limit)
    keys: list[str] = []
    missing: list[list[int]] = []
    pages = 0
    while True:
        answers = [
            answer(query, [k for p in parts for k in book.get(p, [])], parts) for parts in owners
        ]
        page = merge_pages(query, answers, range(4))
        pages += 1
        keys.extend(str(item["key"]) for item in page.items)
        missing.append(page.missing_partitions)
        assert len(page.items) <= limit
        if page.next_cursor is None:
            return keys, pages, missing
        query = parse_order_query({"limit": str(limit), "cursor": page.next_cursor})


@given(
    placed=st.dictionaries(
        st.text("ABCDEFGH-0123456789", min_size=1, max_size=6), st.integers(0, 3), max_size=30
    ),
    split=st.sampled_from([[{0, 1, 2, 3}], [{0, 2}, {1, 3}], [{3}, {0}, {1, 2}], [{0}, {1}]]),
    limit=st.integers(1, 7),
)
def test_paging_lists_every_key_exactly_once_in_order(
    placed: dict[str, int], split: list[set[int]], limit: int
) -> None:
    book: dict[int, list[str]] = {}
    for key, partition in placed.items():  # each key lives in one partition
        book.setdefault(partition, []).append(key)
    keys, pages, missing = read_all(book, split, limit)
    answered = set().union(*split)
    expected = sorted(k for p, ks in book.items() if p in answered for k in ks)
    assert keys == expected
    assert pages == max(1, -(-len(expected) // limit))
    assert all(m == sorted({0, 1, 2, 3} - answered) for m in missing)


def test_a_silent_worker_makes_the_page_partial() -> None:
    query = parse_order_query({})
    page = merge_pages(query, [answer(query, ["A", "C"], {0, 1})], range(4))
    assert page.partial and page.missing_partitions == [2, 3]
    assert page.to_dict() == {
        "items": [{"key": "A"}, {"key": "C"}],
        "next_cursor": None,
        "partial": True,
        "missing_partitions": [2, 3],
    }
    whole = merge_pages(query, [answer(query, ["A"], {0, 1}), answer(query, [], {2, 3})], range(4))
    assert not whole.partial and whole.to_dict()["partial"] is False


def test_an_answer_overlapping_an_earlier_one_is_left_out() -> None:
    query = parse_order_query({})
    first = answer(query, ["A"], {0, 1})
    stray = answer(query, ["A", "B"], {1, 2})
    page = merge_pages(query, [first, stray], range(3))
    assert [item["key"] for item in page.items] == ["A"]
    assert page.missing_partitions == [2]
