"""The anomaly rules and the statistics they judge by (execdist.domain.anomalies)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from execdist.domain import Confirmation, ExecType, StatusType
from execdist.domain.anomalies import (
    LEARN_BANDS,
    AnomalyRules,
    RecentFills,
    _Decay,
    anomaly_event_details,
    observe,
)
from execdist.domain.model import AnomalyRule
from tests.unit.codecs.fixtures import sample_confirmation

T0 = datetime(2024, 5, 1, 13, 30, tzinfo=UTC)
RULES = AnomalyRules(price_band_bps=500, size_factor=10, half_life_s=300, min_samples=20)

fills = st.lists(
    st.tuples(
        st.decimals(min_value=1, max_value=1_000_000, places=2),  # qty
        st.decimals(min_value="0.01", max_value=100_000, places=4),  # px
        st.decimals(min_value=0, max_value=3600, places=6),  # seconds after T0
    ),
    min_size=1,
    max_size=60,
)
HALF_LIFE = Decimal(300)


def close(a: Decimal | None, b: Decimal, rel: str = "1e-15") -> bool:
    """Equal within the statistics' rounding (20 significant digits, a few operations)."""
    assert a is not None
    return abs(a - b) <= Decimal(rel) * max(abs(a), abs(b)) + Decimal("1e-30")


def fill(
    qty: str,
    px: str,
    *,
    seconds: float = 0,
    symbol: str = "AAPL",
    account: str = "ACC-1",
    exec_type: ExecType = ExecType.TRADE,
) -> Confirmation:
    return replace(
        sample_confirmation(),
        last_qty=Decimal(qty),
        last_px=Decimal(px),
        exec_time=T0 + timedelta(seconds=seconds),
        symbol=symbol,
        account=account,
        exec_type=exec_type,
        ref_exec_id=None if exec_type is ExecType.TRADE else "EX-1",
    )


def warmed(count: int = 20, qty: str = "100", px: str = "100") -> tuple[RecentFills, RecentFills]:
    symbol, account = RecentFills(), RecentFills()
    for _ in range(count):
        assert observe(fill(qty, px), symbol, account, RULES) is None
    return symbol, account


# ---- the statistics -----------------------------------------------------------------------


@given(fills)
def test_vwap_lies_between_the_lowest_and_highest_price(items) -> None:
    stats = RecentFills()
    for qty, px, at in items:
        stats.add(qty, px, at, HALF_LIFE)
    prices = [px for _, px, _ in items]
    vwap = stats.vwap()
    assert vwap is not None
    slack = Decimal("1e-15")
    assert min(prices) * (1 - slack) <= vwap <= max(prices) * (1 + slack)


@given(fills)
def test_fills_at_one_moment_give_the_plain_vwap_mean_and_count(items) -> None:
    stats = RecentFills()
    for qty, px, _ in items:
        stats.add(qty, px, Decimal(0), HALF_LIFE)
    quantity = sum(qty for qty, _, _ in items)
    assert stats.samples == len(items)
    assert close(stats.vwap(), sum(q * p for q, p, _ in items) / quantity)
    assert close(stats.average_qty(), quantity / len(items))


@given(fills, st.randoms(use_true_random=False))
def test_the_order_fills_arrive_in_does_not_matter(items, rng: random.Random) -> None:
    in_order, shuffled = RecentFills(), RecentFills()
    for qty, px, at in sorted(items, key=lambda item: item[2]):
        in_order.add(qty, px, at, HALF_LIFE)
    mixed = list(items)
    rng.shuffle(mixed)
    for qty, px, at in mixed:
        shuffled.add(qty, px, at, HALF_LIFE)
    assert in_order.as_of == shuffled.as_of
    for name in ("samples", "quantity", "notional"):
        assert close(getattr(in_order, name), getattr(shuffled, name), rel="1e-12")


@given(
    st.decimals(min_value=1, max_value=100_000, places=2),
    st.decimals(min_value=1, max_value=86_400, places=3),
)
def test_a_fill_counts_half_after_one_half_life(qty: Decimal, half_life: Decimal) -> None:
    stats = RecentFills()
    stats.add(qty, Decimal(10), Decimal(0), half_life)
    assert close(stats.samples_at(half_life, half_life), Decimal("0.5"))
    assert stats.samples_at(Decimal(0), half_life) == 1  # an earlier time does not undo decay
    stats.add(qty, Decimal(20), half_life, half_life)
    assert close(stats.samples, Decimal("1.5"))
    assert close(stats.vwap(), (Decimal("0.5") * 10 + 20) / Decimal("1.5"))


@given(fills)
def test_stored_statistics_read_back_exactly(items) -> None:
    stats = RecentFills()
    for qty, px, at in items:
        stats.add(qty, px, at, HALF_LIFE)
    assert RecentFills.from_dict(orjson.loads(orjson.dumps(stats.to_dict()))) == stats


@given(
    st.decimals(min_value="0.000001", max_value=10**9, places=6),
    st.integers(min_value=0, max_value=6),
    st.sampled_from([Decimal("0.5"), Decimal(300), Decimal("300.000"), Decimal(86_400)]),
)
def test_a_decay_factor_has_the_same_digits_for_every_spelling_of_its_age(
    age: Decimal, extra_places: int, half_life: Decimal
) -> None:
    # the last factor is remembered by the age's value, so it must not depend on its spelling
    respelled = age.quantize(Decimal(1).scaleb(-6 - extra_places))  # more trailing zeros
    assert respelled == age

    def computed(value: Decimal) -> tuple[object, ...]:
        return tuple(_Decay()(value, half_life).as_tuple())  # a new one remembers nothing

    assert computed(respelled) == computed(age) == computed(age.normalize())
    remembering = _Decay()
    remembering(age, half_life)
    assert tuple(remembering(respelled, half_life).as_tuple()) == computed(respelled)


# ---- the rules ----------------------------------------------------------------------------


def test_nothing_is_judged_before_min_samples() -> None:
    symbol, account = warmed(19)
    assert observe(fill("100000", "500"), symbol, account, RULES) is None
    symbol, account = warmed(20)
    anomaly = observe(fill("100000", "500"), symbol, account, RULES)
    assert anomaly is not None
    assert anomaly.rules == (AnomalyRule.PRICE_DEVIATION, AnomalyRule.SIZE_OUTLIER)


@pytest.mark.parametrize(
    ("px", "flagged"),
    [("105", False), ("94.99", True), ("105.01", True), ("95", False), ("250", True)],
)
def test_price_deviation_is_beyond_the_band_either_side(px: str, flagged: bool) -> None:
    symbol, account = warmed()
    anomaly = observe(fill("100", px), symbol, account, RULES)
    assert (anomaly is not None) is flagged
    if flagged:
        assert anomaly is not None and anomaly.rules == (AnomalyRule.PRICE_DEVIATION,)
        deviation = abs(Decimal(px) - 100) / 100 * 10_000
        assert anomaly.details == {
            "symbol_vwap": "100",
            "deviation_bps": f"{deviation:.1f}".rstrip("0").rstrip("."),
            "price_band_bps": "500",
            "symbol_samples": "20",
        }


@pytest.mark.parametrize(("qty", "flagged"), [("1000", False), ("1001", True), ("50", False)])
def test_size_outlier_is_above_the_factor_times_the_accounts_average(
    qty: str, flagged: bool
) -> None:
    symbol, account = warmed(qty="100")
    anomaly = observe(fill(qty, "100"), symbol, account, RULES)
    assert (anomaly is not None) is flagged
    if anomaly is not None:
        assert anomaly.rules == (AnomalyRule.SIZE_OUTLIER,)
        assert anomaly.details == {
            "account_avg_qty": "100",
            "size_ratio": "10.01",
            "size_factor": "10",
            "account_samples": "20",
        }


def test_statistics_belong_to_their_symbol_and_account() -> None:
    aapl, acc1 = warmed(px="100")
    msft, acc2 = RecentFills(), RecentFills()
    # a different symbol and account know nothing yet: not judged
    assert observe(fill("5000", "300", symbol="MSFT", account="ACC-2"), msft, acc2, RULES) is None
    assert aapl.vwap() == 100.0 and acc1.average_qty() == 100.0


def test_a_threshold_of_zero_turns_its_rule_off() -> None:
    price_off = replace(RULES, price_band_bps=0)
    size_off = replace(RULES, size_factor=0)
    symbol, account = warmed()
    anomaly = observe(fill("100000", "500"), symbol, account, price_off)
    assert anomaly is not None and anomaly.rules == (AnomalyRule.SIZE_OUTLIER,)
    symbol, account = warmed()
    anomaly = observe(fill("100000", "500"), symbol, account, size_off)
    assert anomaly is not None and anomaly.rules == (AnomalyRule.PRICE_DEVIATION,)
    assert not replace(RULES, price_band_bps=0, size_factor=0).enabled


def test_a_bust_is_neither_judged_nor_learned() -> None:
    symbol, account = warmed()
    before = (replace(symbol), replace(account))
    assert observe(fill("0", "0", exec_type=ExecType.BUST), symbol, account, RULES) is None
    assert (symbol, account) == before


def test_a_correction_is_judged_like_a_trade() -> None:
    symbol, account = warmed()
    anomaly = observe(fill("100", "150", exec_type=ExecType.CORRECT), symbol, account, RULES)
    assert anomaly is not None and anomaly.rules == (AnomalyRule.PRICE_DEVIATION,)


@given(
    st.decimals(min_value="0.0001", max_value=1_000_000, places=4),
    st.decimals(min_value=1, max_value=1_000_000, places=2),
    st.integers(min_value=20, max_value=200),
)
@settings(max_examples=200)
def test_one_fat_finger_moves_the_vwap_at_most_four_bands_times_its_share(
    px: Decimal, qty: Decimal, count: int
) -> None:
    symbol, account = warmed(count)
    vwap_before = symbol.vwap() or Decimal(0)
    observe(fill(str(qty), str(px)), symbol, account, RULES)
    learned_qty = min(qty, RULES.size_factor * 100)
    share = learned_qty / (count * 100 + learned_qty)
    moved = abs((symbol.vwap() or Decimal(0)) - vwap_before)
    bound = vwap_before * RULES.price_band_bps / 10_000 * LEARN_BANDS * share
    assert moved <= bound + vwap_before * Decimal("1e-17")  # the statistics' rounding


def test_a_lasting_price_move_stops_being_flagged_within_two_and_a_half_half_lives() -> None:
    symbol, account = RecentFills(), RecentFills()
    for second in range(1800):  # six half-lives at one fill a second: the weights are settled
        assert observe(fill("100", "100", seconds=second), symbol, account, RULES) is None
    flags = [
        observe(fill("100", "130", seconds=1800 + n), symbol, account, RULES) is not None
        for n in range(1200)
    ]
    first_clear = flags.index(False)
    assert RULES.half_life_s < first_clear < Decimal("2.5") * RULES.half_life_s, first_clear
    assert not any(flags[first_clear:])


def test_a_lasting_size_change_is_followed_within_a_few_fills() -> None:
    symbol, account = warmed(40, qty="100")
    flags = [observe(fill("5000", "100"), symbol, account, RULES) is not None for _ in range(40)]
    assert flags[0] and not any(flags[10:]), flags


def test_old_statistics_fade_and_are_judged_again_only_when_refilled() -> None:
    symbol, account = warmed(20)  # all at T0
    # a day later the old fills weigh nothing: a new level is not judged against them
    a_day = 86_400
    assert observe(fill("100", "300", seconds=a_day), symbol, account, RULES) is None
    assert symbol.samples < 2


@given(st.lists(st.tuples(st.integers(1, 2000), st.integers(50, 200)), min_size=1, max_size=80))
def test_a_replay_from_the_stored_statistics_flags_the_same(items) -> None:
    symbol, account = warmed(25)
    stored = (orjson.dumps(symbol.to_dict()), orjson.dumps(account.to_dict()))
    feed = [fill(str(qty), str(px), seconds=n) for n, (qty, px) in enumerate(items)]
    first = [observe(c, symbol, account, RULES) for c in feed]
    symbol = RecentFills.from_dict(orjson.loads(stored[0]))
    account = RecentFills.from_dict(orjson.loads(stored[1]))
    assert [observe(c, symbol, account, RULES) for c in feed] == first


def test_rules_refuse_thresholds_that_mean_nothing() -> None:
    with pytest.raises(ValueError, match="half_life_s"):
        AnomalyRules(half_life_s=0)
    with pytest.raises(ValueError, match="price_band_bps"):
        AnomalyRules(price_band_bps=-1)
    with pytest.raises(ValueError, match="min_samples"):
        AnomalyRules(min_samples=float("nan"))


def test_the_status_event_names_the_execution_and_carries_the_anomaly() -> None:
    symbol, account = warmed()
    confirmation = fill("100", "200")
    anomaly = observe(confirmation, symbol, account, RULES)
    assert anomaly is not None
    flagged = replace(confirmation, anomaly=anomaly)
    details = anomaly_event_details(flagged)
    assert details["exec_id"] == flagged.exec_id and details["last_px"] == "200"
    assert details["rules"] == ["PRICE_DEVIATION"]
    assert details["details"] == dict(anomaly.details)
    assert StatusType.ANOMALY.value == "ANOMALY"
    with pytest.raises(ValueError, match="not flagged"):
        anomaly_event_details(confirmation)
