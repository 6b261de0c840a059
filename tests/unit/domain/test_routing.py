"""SubscriptionIndex agrees with scanning every subscription with Filter.matches."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from execdist.domain import Confirmation, ExecType, Side
from execdist.domain.expressions import EvaluationError, compile_expression
from execdist.domain.routing import FilterTrial, SubscriptionIndex
from execdist.domain.subscriptions import Filter, Subscription, SubscriptionStatus
from tests.unit.domain.test_subscriptions import make_confirmation, make_subscription

ACTIVE = SubscriptionStatus.ACTIVE
PAUSED = SubscriptionStatus.PAUSED

# Small pools so that random filters and confirmations actually meet; the last value of each
# confirmation pool is one no filter names.
_ACCOUNTS = ("A1", "A2", "A3", "A4")
_SYMBOLS = ("S1", "S2", "S3")
_VENUES = ("V1", "V2", "V3")
_QUANTITIES = ("0", "1", "5", "10", "100")


def expected(subscriptions: dict[str, Subscription], c: Confirmation) -> list[Subscription]:
    """The reference: every ACTIVE subscription whose filter matches, in id order (an
    expression that fails on the record does not match)."""
    return [
        s
        for _, s in sorted(subscriptions.items())
        if s.status is SubscriptionStatus.ACTIVE and _matches(s.filter, c)
    ]


def _matches(f: Filter, c: Confirmation) -> bool:
    try:
        return f.matches(c)
    except EvaluationError:
        return False


_EXPRESSIONS = [
    compile_expression(source)
    for source in (
        'symbol in ["S1", "S2"]',
        'account == "A1" && last_qty > 1',
        'side == "BUY" || venue == "V1"',
        'symbol == "S9"',
        'exec_type in ["TRADE", "BUST"] && symbol in ["S2", "S3"] && venue != "V3"',
        "last_qty / (last_qty - 5) > 0",  # fails on 5
        '"A2" == account && side in ["SELL", "SELL_SHORT"]',
    )
]


def _subset(pool: tuple[str, ...]) -> st.SearchStrategy[frozenset[str]]:
    # Empty half of the time: wildcards are where an index is most likely to go wrong.
    return st.one_of(st.just(frozenset[str]()), st.frozensets(st.sampled_from(pool), max_size=3))


_filters = st.builds(
    Filter,
    accounts=_subset(_ACCOUNTS),
    symbols=_subset(_SYMBOLS),
    venues=_subset(_VENUES),
    sides=st.one_of(st.just(frozenset[Side]()), st.frozensets(st.sampled_from(Side))),
    exec_types=st.one_of(st.just(frozenset[ExecType]()), st.frozensets(st.sampled_from(ExecType))),
    min_qty=st.sampled_from([None, None, Decimal(0), Decimal(5), Decimal("10.5")]),
    expr=st.one_of(st.none(), st.none(), st.sampled_from(_EXPRESSIONS)),
)
_ids = st.sampled_from([f"s{i:02d}" for i in range(12)])
_subscriptions = st.builds(
    make_subscription,
    subscription_id=_ids,
    filter_=_filters,
    status=st.sampled_from([ACTIVE, ACTIVE, ACTIVE, PAUSED]),
)
_confirmations = st.builds(
    make_confirmation,
    account=st.sampled_from((*_ACCOUNTS, "A-none")),
    symbol=st.sampled_from((*_SYMBOLS, "S-none")),
    venue=st.sampled_from((*_VENUES, "V-none")),
    side=st.sampled_from(Side),
    exec_type=st.sampled_from(ExecType),
    last_qty=st.sampled_from(_QUANTITIES),
)


@settings(max_examples=300)
@given(st.lists(_subscriptions, max_size=12), st.lists(_confirmations, min_size=1, max_size=8))
def test_match_equals_the_linear_scan(
    subscriptions: list[Subscription], confirmations: list[Confirmation]
) -> None:
    index = SubscriptionIndex()
    held: dict[str, Subscription] = {}
    for subscription in subscriptions:
        index.upsert(subscription)
        held[subscription.id] = subscription
    assert len(index) == len(held)
    for confirmation in confirmations:
        assert index.match(confirmation) == expected(held, confirmation)


_operations = st.lists(
    st.one_of(
        st.tuples(st.just("upsert"), _subscriptions),
        st.tuples(st.just("remove"), _ids),
    ),
    max_size=30,
)


@settings(max_examples=200)
@given(_operations, st.lists(_confirmations, min_size=1, max_size=4))
def test_match_equals_the_linear_scan_after_any_changes(
    operations: list[tuple[str, Subscription | str]], confirmations: list[Confirmation]
) -> None:
    index = SubscriptionIndex()
    held: dict[str, Subscription] = {}
    for kind, argument in operations:
        if kind == "upsert":
            assert isinstance(argument, Subscription)
            index.upsert(argument)
            held[argument.id] = argument
        else:
            assert isinstance(argument, str)
            assert index.remove(argument) == held.pop(argument, None)
        assert len(index) == len(held)
        for confirmation in confirmations:
            assert index.match(confirmation) == expected(held, confirmation)
    assert list(index) == [held[key] for key in sorted(held)]
    for key, subscription in held.items():
        assert index.get(key) == subscription


def test_an_empty_filter_matches_every_confirmation() -> None:
    index = SubscriptionIndex()
    everything = make_subscription("all")
    index.upsert(everything)
    assert index.match(make_confirmation()) == [everything]
    assert index.match(make_confirmation("X", "Y", "Z", Side.SELL, ExecType.BUST, "0")) == [
        everything
    ]


def test_an_empty_index_matches_nothing() -> None:
    index = SubscriptionIndex()
    assert index.match(make_confirmation()) == []
    assert len(index) == 0 and index.get("nope") is None and "nope" not in index


def test_a_paused_subscription_is_kept_but_never_matched() -> None:
    index = SubscriptionIndex()
    paused = make_subscription("p", Filter(accounts=frozenset({"ACC-1"})), PAUSED)
    index.upsert(paused)
    assert index.match(make_confirmation("ACC-1")) == []
    assert index.get("p") == paused and len(index) == 1 and "p" in index
    resumed = dataclasses.replace(paused, status=ACTIVE)
    index.upsert(resumed)
    assert index.match(make_confirmation("ACC-1")) == [resumed]
    index.upsert(paused)
    assert index.match(make_confirmation("ACC-1")) == []


def test_a_filter_change_takes_effect_on_the_next_match() -> None:
    index = SubscriptionIndex()
    before = make_subscription("s", Filter(accounts=frozenset({"ACC-1"})))
    index.upsert(before)
    after = dataclasses.replace(before, filter=Filter(symbols=frozenset({"MSFT"})), version=2)
    index.upsert(after)
    assert index.match(make_confirmation("ACC-1", "AAPL")) == []
    assert index.match(make_confirmation("ACC-9", "MSFT")) == [after]
    assert len(index) == 1


def test_remove_forgets_the_subscription_and_is_idempotent() -> None:
    index = SubscriptionIndex()
    kept = make_subscription("a", Filter(venues=frozenset({"XNAS"})))
    gone = make_subscription("b", Filter(venues=frozenset({"XNAS"})))
    index.upsert(kept)
    index.upsert(gone)
    assert index.remove("b") == gone
    assert index.remove("b") is None
    assert index.match(make_confirmation(venue="XNAS")) == [kept]
    assert index.get("b") is None and len(index) == 1


def test_matches_come_in_id_order_whichever_dimension_found_them() -> None:
    index = SubscriptionIndex()
    by_side = make_subscription("a", Filter(sides=frozenset({Side.BUY})))
    by_account = make_subscription("c", Filter(accounts=frozenset({"ACC-1"})))
    everything = make_subscription("b", Filter(min_qty=Decimal(1)))
    by_venue = make_subscription(
        "d", Filter(venues=frozenset({"XNAS"}), sides=frozenset({Side.BUY}))
    )
    for subscription in (by_account, by_venue, everything, by_side):
        index.upsert(subscription)
    assert index.match(make_confirmation()) == [by_side, everything, by_account, by_venue]
    assert index.match(make_confirmation(side=Side.SELL, last_qty="0.5")) == [by_account]


def test_checks_after_the_anchor_still_apply() -> None:
    index = SubscriptionIndex()
    narrow = make_subscription(
        "n",
        Filter(
            accounts=frozenset({"ACC-1"}),
            symbols=frozenset({"AAPL"}),
            venues=frozenset({"XNAS"}),
            sides=frozenset({Side.BUY}),
            exec_types=frozenset({ExecType.TRADE}),
            min_qty=Decimal(50),
        ),
    )
    index.upsert(narrow)
    assert index.match(make_confirmation()) == [narrow]
    for miss in (
        make_confirmation(symbol="MSFT"),
        make_confirmation(venue="XNYS"),
        make_confirmation(side=Side.SELL),
        make_confirmation(exec_type=ExecType.CORRECT),
        make_confirmation(last_qty="49.99"),
    ):
        assert index.match(miss) == []


def test_an_expression_narrows_by_its_equality_terms() -> None:
    index = SubscriptionIndex()
    notional = make_subscription(
        "n",
        Filter(expr=compile_expression('symbol in ["AAPL", "MSFT"] && last_qty * last_px >= 1e4')),
    )
    index.upsert(notional)
    # filed under its two symbols, not among the subscriptions every confirmation visits
    assert not index._unanchored
    assert set(index._postings[1]) == {"AAPL", "MSFT"}
    assert index.match(make_confirmation(symbol="AAPL", last_qty="100")) == [notional]
    assert index.match(make_confirmation(symbol="AAPL", last_qty="10")) == []
    assert index.match(make_confirmation(symbol="IBM", last_qty="100")) == []


def test_terms_intersect_with_the_lists_and_a_contradiction_is_filed_nowhere() -> None:
    index = SubscriptionIndex()
    both = make_subscription(
        "b",
        Filter(
            symbols=frozenset({"AAPL", "IBM"}),
            expr=compile_expression('symbol in ["AAPL", "MSFT"]'),
        ),
    )
    never = make_subscription(
        "x", Filter(symbols=frozenset({"IBM"}), expr=compile_expression('symbol == "AAPL"'))
    )
    index.upsert(both)
    index.upsert(never)
    assert set(index._postings[1]) == {"AAPL"}
    assert index.match(make_confirmation(symbol="AAPL")) == [both]
    assert index.match(make_confirmation(symbol="IBM")) == []
    index.remove("x")
    index.remove("b")
    assert not index._postings[1]


def test_a_failing_expression_is_reported_and_does_not_match() -> None:
    index = SubscriptionIndex()
    failing = make_subscription("f", Filter(expr=compile_expression("seq / (seq - 1) > 0")))
    plain = make_subscription("p")
    index.upsert(failing)
    index.upsert(plain)
    errors: list[tuple[str, str]] = []
    found = index.match(make_confirmation(), lambda s, e: errors.append((s.id, str(e))))
    assert found == [plain]
    assert errors == [("f", "'/' by zero")]


def test_a_filter_trial_counts_matches_errors_and_keeps_a_bounded_sample() -> None:
    trial = FilterTrial(
        Filter(symbols=frozenset({"AAPL"}), expr=compile_expression("100 / (last_qty - 5) > 0"))
    )
    records = [make_confirmation(symbol="AAPL", last_qty=str(q)) for q in range(1, 40)]
    records.append(make_confirmation(symbol="MSFT", last_qty="100"))
    for record in records:
        trial.add(record, record.to_dict())
    assert trial.scanned == 40
    assert trial.evaluation_errors == 1  # last_qty 5
    assert trial.matched == 34  # 6 to 39
    assert len(trial.sample) == FilterTrial.SAMPLE_SIZE
    assert trial.sample[0]["last_qty"] == "6"
