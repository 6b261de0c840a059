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

**Binary floating point, not Decimal.** These are estimates with exponential weights; a flag
never changes a figure of the confirmation; and the arithmetic is deterministic, so the same
fills on the same stored statistics always give the same flags (a replay after a crash flags
exactly what the first attempt did).

``details`` of an :class:`~execdist.domain.model.Anomaly`, all text:

* ``PRICE_DEVIATION``: ``symbol_vwap``, ``deviation_bps``, ``price_band_bps``,
  ``symbol_samples``;
* ``SIZE_OUTLIER``: ``account_avg_qty``, ``size_ratio``, ``size_factor``, ``account_samples``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from execdist.domain.model import Anomaly, AnomalyRule, Confirmation, ExecType, format_decimal

__all__ = ["AnomalyRules", "RecentFills", "anomaly_event_details", "observe"]

BPS = 10_000.0
LEARN_BANDS = 4.0
"""How far from the VWAP, in price bands, a flagged price is learnt (clipped to)."""


@dataclass(frozen=True, slots=True)
class AnomalyRules:
    """The thresholds; see the module's text for what each one means."""

    price_band_bps: float = 500.0
    """PRICE_DEVIATION beyond this many basis points from the symbol's recent VWAP (0: off)."""
    size_factor: float = 10.0
    """SIZE_OUTLIER above this multiple of the account's recent average fill (0: off)."""
    half_life_s: float = 300.0
    """Seconds of exec_time after which a fill counts half."""
    min_samples: float = 20.0
    """Fills (by weight) a statistic must hold before its rule judges."""

    def __post_init__(self) -> None:
        for name in ("price_band_bps", "size_factor", "min_samples"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not math.isfinite(self.half_life_s) or self.half_life_s <= 0:
            raise ValueError(f"half_life_s must be a finite number > 0, got {self.half_life_s!r}")

    @property
    def enabled(self) -> bool:
        return self.price_band_bps > 0 or self.size_factor > 0


@dataclass(slots=True)
class RecentFills:
    """Decayed sums over the recent fills of one symbol or one account."""

    samples: float = 0.0
    quantity: float = 0.0
    notional: float = 0.0
    as_of: float | None = None
    """exec_time of the newest fill added, in seconds since the epoch; ``None``: none yet."""

    def samples_at(self, at: float, half_life_s: float) -> float:
        """``samples`` as it stands at time ``at`` (decayed, if ``at`` is later)."""
        if self.as_of is None or at <= self.as_of:
            return self.samples
        return self.samples * _decay(at - self.as_of, half_life_s)

    def vwap(self) -> float | None:
        return self.notional / self.quantity if self.quantity > 0 else None

    def average_qty(self) -> float | None:
        return self.quantity / self.samples if self.samples > 0 else None

    def add(self, qty: float, px: float, at: float, half_life_s: float) -> None:
        """Count one fill of ``qty`` at ``px`` whose exec_time is ``at``."""
        if self.as_of is None or at >= self.as_of:
            if self.as_of is not None and at > self.as_of:
                factor = _decay(at - self.as_of, half_life_s)
                self.samples *= factor
                self.quantity *= factor
                self.notional *= factor
            self.as_of = at
            weight = 1.0
        else:
            weight = _decay(self.as_of - at, half_life_s)
        self.samples += weight
        self.quantity += weight * qty
        self.notional += weight * qty * px

    def to_dict(self) -> dict[str, object]:
        return {"n": self.samples, "q": self.quantity, "v": self.notional, "t": self.as_of}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> RecentFills:
        as_of = data.get("t")
        return cls(
            samples=_stored_float(data, "n"),
            quantity=_stored_float(data, "q"),
            notional=_stored_float(data, "v"),
            as_of=None if as_of is None else _stored_float(data, "t"),
        )


def observe(
    confirmation: Confirmation, symbol: RecentFills, account: RecentFills, rules: AnomalyRules
) -> Anomaly | None:
    """Judge ``confirmation``'s fill against its symbol's and account's statistics, then add
    it to both (updated in place); the :class:`Anomaly` if it broke a rule, else ``None``."""
    if confirmation.exec_type is ExecType.BUST:
        return None
    qty = _float(confirmation.last_qty)
    px = _float(confirmation.last_px)
    at = confirmation.exec_time.timestamp()
    half_life = rules.half_life_s
    broken: list[AnomalyRule] | None = None
    details: dict[str, str] = {}
    learned_px, learned_qty = px, qty
    # each rule's cheap test first: the weight of the statistic is looked at only when the
    # fill is out of line, which almost every fill is not

    band_bps = rules.price_band_bps
    if band_bps > 0 and symbol.quantity > 0:
        vwap = symbol.notional / symbol.quantity
        deviation = abs(px - vwap) / vwap * BPS
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
                band = vwap * band_bps / BPS * LEARN_BANDS
                learned_px = min(max(px, vwap - band), vwap + band)

    factor = rules.size_factor
    if factor > 0 and account.samples > 0:
        usual = account.quantity / account.samples
        if qty > factor * usual:
            samples = account.samples_at(at, half_life)
            if samples >= rules.min_samples:
                broken = [*(broken or ()), AnomalyRule.SIZE_OUTLIER]
                details.update(
                    account_avg_qty=_text(usual, 4),
                    size_ratio=_text(qty / usual, 2),
                    size_factor=_text(factor, 4),
                    account_samples=_text(samples, 1),
                )
                learned_qty = factor * usual

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


_FLOATS: dict[Decimal, float] = {}
"""Recent Decimal -> float conversions (Decimal's goes through its text): prices and sizes
repeat, so most are a lookup. Emptied when it reaches ``_FLOATS_MAX``."""
_FLOATS_MAX = 8192


def _float(value: Decimal) -> float:
    converted = _FLOATS.get(value)
    if converted is None:
        if len(_FLOATS) >= _FLOATS_MAX:
            _FLOATS.clear()
        converted = _FLOATS[value] = float(value)
    return converted


def _decay(age_s: float, half_life_s: float) -> float:
    return math.exp2(-age_s / half_life_s)


def _text(value: float, places: int) -> str:
    """``value`` rounded to ``places`` decimals, without trailing zeros ("187.45", "12")."""
    text = f"{value:.{places}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _stored_float(data: Mapping[str, object], key: str) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{key}: expected a number, got {type(value).__name__}")
    return float(value)
