"""Outputs that commit atomically with the input they came from.

Under ``processing_guarantee="exactly_once"`` Faust keeps one transactional producer per
assigned source partition (transactional id ``{app_id}-{group}-{partition}``), and commits the
input offsets of that partition through it. Faust's own ``TransactionManager.send`` picks the
producer from the *destination* partition, which is only right when the destination is a
co-partitioned topic at the same partition number (the tables' changelogs); it is wrong for
``execdist.confirmations`` (the key may hash elsewhere), and fails for topics outside the
assignor's groups (``execdist.sub.*``, ``execdist.status``, ``execdist.dlq``).

:class:`TransactionalPublisher` therefore sends every output with the producer of the *source*
partition being processed, so outputs, table changelog writes and the input offset commit in
one Kafka transaction, or not at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

import faust
from faust.types import TP
from faust.types.tuples import RecordMetadata


class TransactionalPublisher:
    """Sends records inside the transaction of a given source partition."""

    def __init__(self, app: faust.App) -> None:
        self._app = app

    def transactional_id(self, source: TP) -> str | None:
        """The transactional id Faust uses for ``source``, or ``None`` without transactions."""
        if not self._app.in_transaction:
            return None
        group = self._app.assignor.group_for_topic(source.topic)
        return f"{self._app.conf.id}-{group}-{source.partition}"

    async def send(
        self,
        source: TP,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: Sequence[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> Awaitable[RecordMetadata]:
        """Queue one record; it becomes visible when the source partition's transaction commits.

        Returns the delivery future; callers need not await it, since the commit flushes first.
        """
        producer = self._app.producer
        return await producer.send(
            topic,
            key,
            value,
            partition,
            None,
            list(headers) if headers is not None else None,
            transactional_id=self.transactional_id(source),
        )
