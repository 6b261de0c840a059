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


class AnomalyFlags:
    """Sets ``anomaly`` on the confirmations whose execution broke a rule."""

    def __init__(self, stats: PartitionedState, rules: AnomalyRules, metrics: Metrics) -> None:
        self._stats = stats
        self._rules = rules
        self._symbols: dict[int, dict[str, _Kept]] = {}
        self._accounts: dict[int, dict[str, _Kept]] = {}
        self._flagged = LabelledChildren(metrics.anomalies)

    def flag(self, partition: int, confirmation: Confirmation) -> Confirmation:
        """``confirmation``, with ``anomaly`` set if it broke a rule; learns from its fill."""
        if not self._rules.enabled:
            return confirmation
        symbol = self._kept(self._symbols, partition, b"symbol:", confirmation.symbol)
        account = self._kept(self._accounts, partition, b"account:", confirmation.account)
        anomaly = observe(confirmation, symbol.stats, account.stats, self._rules)
        self._stats.put_encoded_later(partition, symbol.key, symbol.encode)
        self._stats.put_encoded_later(partition, account.key, account.encode)
        if anomaly is None:
            return confirmation
        for rule in anomaly.rules:
            self._flagged(rule.value).inc()
        return replace(confirmation, anomaly=anomaly)

    def release(self, partition: int) -> None:
        """Forget the decoded statistics of ``partition``: its uncommitted work is gone."""
        self._symbols.pop(partition, None)
        self._accounts.pop(partition, None)

    def _kept(
        self, kept: dict[int, dict[str, _Kept]], partition: int, prefix: bytes, name: str
    ) -> _Kept:
        in_partition = kept.get(partition)
        if in_partition is None:
            in_partition = kept[partition] = {}
        entry = in_partition.get(name)
        if entry is None:
            key = prefix + name.encode()
            raw = self._stats.get(partition, key)
            stats = RecentFills() if raw is None else RecentFills.from_dict(orjson.loads(raw))
            entry = in_partition[name] = _Kept(key, stats)
        return entry


def _encoded(stats: RecentFills) -> bytes:
    return orjson.dumps(stats.to_dict())
