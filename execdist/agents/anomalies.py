"""The anomaly flags: each confirmation judged against its partition's recent fills.

The statistics (:class:`~execdist.domain.anomalies.RecentFills`) live in the changelogged
``execdist-anomaly-stats`` table under ``symbol:<symbol>`` and ``account:<account>``, in the
partition of the order, and are updated in the transaction that publishes the confirmation: a
replay after a crash starts from the statistics the last commit left and flags exactly what
the first attempt did. Each partition learns from the executions it processes; orders are
spread over partitions by a hash of their id, so each partition sees a fair sample of every
symbol's and account's fills.

Kept decoded between records (a few symbols and accounts take most fills) and encoded once
per commit, as the join does with order states.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import orjson

from execdist.domain import Confirmation
from execdist.domain.anomalies import AnomalyRules, RecentFills, observe
from execdist.metrics import LabelledChildren, Metrics
from execdist.tables.store import PartitionedState


class _Kept:
    """One statistic kept decoded: its table key, the value, and the encoder handed to the
    table (one per statistic, so writing it again in a transaction costs a lookup)."""

    __slots__ = ("encode", "key", "stats")

    def __init__(self, key: bytes, stats: RecentFills) -> None:
        self.key = key
        self.stats = stats
        self.encode = partial(_encoded, stats)


class _PartitionStats:
    """The statistics of one partition kept decoded, by symbol and by account."""

    __slots__ = ("accounts", "symbols")

    def __init__(self) -> None:
        self.symbols: dict[str, _Kept] = {}
        self.accounts: dict[str, _Kept] = {}


class AnomalyFlags:
    """Sets ``anomaly`` on the confirmations whose execution broke a rule."""

    def __init__(self, stats: PartitionedState, rules: AnomalyRules, metrics: Metrics) -> None:
        self._stats = stats
        self._rules = rules
        self._enabled = rules.enabled
        self._partitions: dict[int, _PartitionStats] = {}
        self._flagged = LabelledChildren(metrics.anomalies)

    def flag(self, partition: int, confirmation: Confirmation) -> Confirmation:
        """``confirmation``, with ``anomaly`` set if it broke a rule; learns from its fill."""
        if not self._enabled:
            return confirmation
        kept = self._partitions.get(partition)
        if kept is None:
            kept = self._partitions[partition] = _PartitionStats()
        symbol = kept.symbols.get(confirmation.symbol) or self._load(
            partition, kept.symbols, b"symbol:", confirmation.symbol
        )
        account = kept.accounts.get(confirmation.account) or self._load(
            partition, kept.accounts, b"account:", confirmation.account
        )
        anomaly = observe(confirmation, symbol.stats, account.stats, self._rules)
        self._stats.put_encoded_later(partition, symbol.key, symbol.encode)
        self._stats.put_encoded_later(partition, account.key, account.encode)
        if anomaly is None:
            return confirmation
        for rule in anomaly.rules:
            self._flagged[rule.value].inc()
        return replace(confirmation, anomaly=anomaly)

    def release(self, partition: int) -> None:
        """Forget the decoded statistics of ``partition``: its uncommitted work is gone."""
        self._partitions.pop(partition, None)

    def _load(self, partition: int, kept: dict[str, _Kept], prefix: bytes, name: str) -> _Kept:
        """The statistic ``prefix + name`` of ``partition`` as the table has it, kept."""
        key = prefix + name.encode()
        raw = self._stats.get(partition, key)
        stats = RecentFills() if raw is None else RecentFills.from_dict(orjson.loads(raw))
        entry = kept[name] = _Kept(key, stats)
        return entry


def _encoded(stats: RecentFills) -> bytes:
    return orjson.dumps(stats.to_dict())
