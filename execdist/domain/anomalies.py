"""Anomaly flags: an execution whose price strays from its symbol's recent VWAP, or whose size
is far above its account's usual fill.

No model and no black box: two rules over two running statistics, each rule with a threshold
the operator sets (:class:`AnomalyRules`, from ``EXECDIST_ANOMALY_*``).

**The statistics.** :class:`RecentFills` keeps, for one symbol or one account, three sums in
which each fill counts with the weight ``w = 2 ** (-age / half_life)``, its age measured in
``exec_time`` back from the newest fill seen::

    samples  = sum(w)              how many recent fills, by weight
    quantity = sum(w * qty)
    notional = sum(w * qty * px)

so the recent VWAP is ``notional / quantity`` and the usual fill size is ``quantity /
samples``. The decay is applied when a fill arrives, so each statistic is three numbers and a
time whatever the rate; a fill older than the newest one seen is added with its own smaller
weight (the statistic's clock never goes back).

**The rules**, for a TRADE or a CORRECT (a BUST carries no new price or size):

* ``PRICE_DEVIATION``: ``|last_px - vwap| / vwap * 10,000 > price_band_bps``, vwap being the
  symbol's.
* ``SIZE_OUTLIER``: ``last_qty > size_factor * usual``, usual being the account's average
  fill.

A rule judges only once its statistic holds at least ``min_samples`` fills by weight, so a
symbol or account seen for the first time (or after a long quiet) is not judged against a
handful of prints. A threshold of 0 turns its rule off.

**Learning.** A fill is judged against the statistics as they were before it, then added to
them, flagged or not, but bounded: a flagged price is learnt at most ``LEARN_BANDS`` bands from
the VWAP, a flagged size at most ``size_factor * usual`` (in both statistics). One fat finger
then moves the VWAP by at most four bands times its share of the weight (a tenfold price among
twenty fills of its size: under 1 % with the default band), while a lasting move is followed
about as fast as the plain VWAP follows it (a 30 % move at one fill a second stops being
flagged after about 2.4 half-lives, against 2.3 for the plain VWAP and 6 if flagged prices were
learnt at the band's edge). A new size level is followed within a few fills.

**Decimal, like every quantity and price computation.** A decay weight has no exact decimal
form, so the statistics are rounded to 20 significant digits (:data:`STATS`), half-even, the
same on every machine: the same fills on the same stored statistics always give the same flags
(a replay after a crash flags exactly what the first attempt did). A flag never changes a
figure of the confirmation.

``details`` of an :class:`~execdist.domain.model.Anomaly`, all text:

* ``PRICE_DEVIATION``: ``symbol_vwap``, ``deviation_bps``, ``price_band_bps``,
  ``symbol_samples``;
* ``SIZE_OUTLIER``: ``account_avg_qty``, ``size_ratio``, ``size_factor``, ``account_samples``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation

from execdist.domain.model import Anomaly, AnomalyRule, Confirmation, ExecType, format_decimal

__all__ = ["AnomalyRules", "RecentFills", "anomaly_event_details", "exec_seconds", "observe"]

BPS = Decimal(10_000)
LEARN_BANDS = Decimal(4)
"""How far from the VWAP, in price bands, a flagged price is learnt (clipped to)."""

STATS = Context(prec=20, rounding=ROUND_HALF_EVEN, Emax=999_999, Emin=-999_999)
"""The arithmetic of the statistics: Decimal, as every quantity and price computation is,
rounded to 20 significant digits (a decay weight has no exact decimal form), the same on
every machine, so a replay gives the same flags."""
_LN2 = STATS.ln(Decimal(2))
_ZERO = Decimal(0)
_ONE = Decimal(1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class AnomalyRules:
    """The thresholds; see the module's text for what each one means. Numbers given as
    int, float or text are taken as the Decimal their text spells."""

    price_band_bps: Decimal = Decimal(500)
    """PRICE_DEVIATION beyond this many basis points from the symbol's recent VWAP (0: off)."""
    size_factor: Decimal = Decimal(10)
    """SIZE_OUTLIER above this multiple of the account's recent average fill (0: off)."""
    half_life_s: Decimal = Decimal(300)
    """Seconds of exec_time after which a fill counts half."""
    min_samples: Decimal = Decimal(20)
    """Fills (by weight) a statistic must hold before its rule judges."""

    def __post_init__(self) -> None:
        for name in ("price_band_bps", "size_factor", "min_samples", "half_life_s"):
            value = _decimal(getattr(self, name))
            if not value.is_finite() or value < 0 or (name == "half_life_s" and value == 0):
                bound = "> 0" if name == "half_life_s" else ">= 0"
                raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
            object.__setattr__(self, name, value)

    @property
    def enabled(self) -> bool:
        return self.price_band_bps > 0 or self.size_factor > 0


@dataclass(slots=True)
class RecentFills:
    """Decayed sums over the recent fills of one symbol or one account."""

    samples: Decimal = _ZERO
    quantity: Decimal = _ZERO
    notional: Decimal = _ZERO
    as_of: Decimal | None = None
    """exec_time of the newest fill added, in seconds since the epoch; ``None``: none yet."""

    def samples_at(self, at: Decimal, half_life_s: Decimal) -> Decimal:
        """``samples`` as it stands at time ``at`` (decayed, if ``at`` is later)."""
        if self.as_of is None or at <= self.as_of:
            return self.samples
        return STATS.multiply(self.samples, _decay(at - self.as_of, half_life_s))

    def vwap(self) -> Decimal | None:
        return STATS.divide(self.notional, self.quantity) if self.quantity > 0 else None

    def average_qty(self) -> Decimal | None:
        return STATS.divide(self.quantity, self.samples) if self.samples > 0 else None

    def add(self, qty: Decimal, px: Decimal, at: Decimal, half_life_s: Decimal) -> None:
        """Count one fill of ``qty`` at ``px`` whose exec_time is ``at``."""
        if self.as_of is None or at >= self.as_of:
            if self.as_of is not None and at > self.as_of:
                factor = _decay(at - self.as_of, half_life_s)
                self.samples = STATS.multiply(self.samples, factor)
                self.quantity = STATS.multiply(self.quantity, factor)
                self.notional = STATS.multiply(self.notional, factor)
            self.as_of = at
            weight = _ONE
        else:
            weight = _decay(self.as_of - at, half_life_s)
        weighted_qty = STATS.multiply(weight, qty)
        self.samples = STATS.add(self.samples, weight)
        self.quantity = STATS.add(self.quantity, weighted_qty)
        self.notional = STATS.add(self.notional, STATS.multiply(weighted_qty, px))

    def to_dict(self) -> dict[str, object]:
        return {
            "n": str(self.samples),
            "q": str(self.quantity),
            "v": str(self.notional),
            "t": None if self.as_of is None else str(self.as_of),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> RecentFills:
        as_of = data.get("t")
        return cls(
            samples=_stored_decimal(data, "n"),
            quantity=_stored_decimal(data, "q"),
            notional=_stored_decimal(data, "v"),
            as_of=None if as_of is None else _stored_decimal(data, "t"),
        )


def exec_seconds(moment: datetime) -> Decimal:
    """``moment`` in seconds since the epoch, exactly (to the microsecond)."""
    return Decimal((moment - _EPOCH) // _MICROSECOND).scaleb(-6)


def observe(
    confirmation: Confirmation, symbol: RecentFills, account: RecentFills, rules: AnomalyRules
) -> Anomaly | None:
    """Judge ``confirmation``'s fill against its symbol's and account's statistics, then add
    it to both (updated in place); the :class:`Anomaly` if it broke a rule, else ``None``."""
    if confirmation.exec_type is ExecType.BUST:
        return None
    qty = confirmation.last_qty
    px = confirmation.last_px
    at = exec_seconds(confirmation.exec_time)
    half_life = rules.half_life_s
    broken: list[AnomalyRule] | None = None
    details: dict[str, str] = {}
    learned_px, learned_qty = px, qty
    # each rule's cheap test first: the weight of the statistic is looked at only when the
    # fill is out of line, which almost every fill is not

    band_bps = rules.price_band_bps
    if band_bps > 0 and symbol.quantity > 0:
        vwap = STATS.divide(symbol.notional, symbol.quantity)
        deviation = STATS.divide(STATS.multiply(abs(px - vwap), BPS), vwap)
        if deviation > band_bps:
            samples = symbol.samples_at(at, half_life)
            if samples >= rules.min_samples:
                broken = [AnomalyRule.PRICE_DEVIATION]
                details.update(
                    symbol_vwap=_text(vwap, 8),
                    deviation_bps=_text(deviation, 1),
                    price_band_bps=_text(band_bps, 4),
                    symbol_samples=_text(samples, 1),
                )
                band = STATS.divide(STATS.multiply(vwap, band_bps * LEARN_BANDS), BPS)
                learned_px = min(max(px, vwap - band), vwap + band)

    factor = rules.size_factor
    if factor > 0 and account.samples > 0:
        usual = STATS.divide(account.quantity, account.samples)
        if qty > STATS.multiply(factor, usual):
            samples = account.samples_at(at, half_life)
            if samples >= rules.min_samples:
                broken = [*(broken or ()), AnomalyRule.SIZE_OUTLIER]
                details.update(
                    account_avg_qty=_text(usual, 4),
                    size_ratio=_text(STATS.divide(qty, usual), 2),
                    size_factor=_text(factor, 4),
                    account_samples=_text(samples, 1),
                )
                learned_qty = STATS.multiply(factor, usual)

    symbol.add(learned_qty, learned_px, at, half_life)
    account.add(learned_qty, px, at, half_life)
    return None if broken is None else Anomaly(tuple(broken), details)


def anomaly_event_details(confirmation: Confirmation) -> dict[str, object]:
    """The ``details`` of the ANOMALY status event about a flagged confirmation."""
    anomaly = confirmation.anomaly
    if anomaly is None:
        raise ValueError(f"confirmation {confirmation.confirmation_id!r} is not flagged")
    return {
        "order_id": confirmation.order_id,
        "exec_id": confirmation.exec_id,
        "account": confirmation.account,
        "symbol": confirmation.symbol,
        "venue": confirmation.venue,
        "last_qty": format_decimal(confirmation.last_qty),
        "last_px": format_decimal(confirmation.last_px),
        **anomaly.to_dict(),
    }


class _Decay:
    """2 ** (-age / half_life), as exp(-age * ln 2 / half_life), remembering the last one.

    A fill usually finds its symbol's statistic and its account's last moved by the same
    earlier fill (consecutive fills of one order), so the second of its two additions needs
    the factor the first one worked out: an exp, the dearest step of a fill's bookkeeping.
    The last age is compared by value rather than hashed, as hashing a new decimal costs
    half as much as the exp. Sound, because the factor's digits depend on the values only:
    exp of a non-zero argument is inexact, so always rounded to all twenty digits."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[Decimal, Decimal, Decimal] | None = None

    def __call__(self, age_s: Decimal, half_life_s: Decimal) -> Decimal:
        last = self._last  # one read: the age, half-life and factor always go together
        if last is not None and last[0] == age_s and last[1] == half_life_s:
            return last[2]
        factor = STATS.exp(STATS.divide(STATS.multiply(-age_s, _LN2), half_life_s))
        self._last = (age_s, half_life_s, factor)
        return factor


_decay = _Decay()


def _text(value: Decimal, places: int) -> str:
    """``value`` rounded half-even to ``places`` decimals, without trailing zeros."""
    return format_decimal(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN))


def _decimal(value: object) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a number, got {value!r}")
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"expected a number, got {value!r}") from None


def _stored_decimal(data: Mapping[str, object], key: str) -> Decimal:
    value = data[key]
    if not isinstance(value, str):
        raise TypeError(f"{key}: expected a decimal string, got {type(value).__name__}")
    return Decimal(value)
