"""Every subscription's audit trail, kept on every worker from the audit topic.

``execdist-internal.subscription-audit`` (one partition, never compacted, kept forever) holds
one :class:`~execdist.domain.audit.AuditEntry` per change, keyed by subscription id, written
by the subscription store in the change's own transaction. Every worker reads the topic from
the start (``read_committed``: an aborted change leaves no entry) and keeps the entries by
subscription, so any worker answers ``GET /api/v1/subscriptions/{id}/audit``, also for a
subscription that has been deleted. A read first waits until this worker has read everything
committed when it was asked, so a change is in its audit as soon as the change's request has
been answered, whichever worker is asked.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service

from execdist import topics
from execdist.domain.audit import AuditEntry
from execdist.services.follower import EndOffsets, follow_from_start
from execdist.services.subscription_store import Companion, NotLoaded
from execdist.settings import Settings

log = logging.getLogger(__name__)


def audit_record(entry: AuditEntry) -> Companion:
    """The entry as a record of the audit topic, for the change's transaction."""
    return Companion(
        topics.SUBSCRIPTION_AUDIT, entry.subscription_id.encode(), orjson.dumps(entry.to_stored())
    )


class SubscriptionAudit(Service):
    """The audit entries of every subscription, by subscription id, in log order."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._settings = settings
        self._entries: dict[str, list[tuple[int, AuditEntry]]] = {}
        self._position = 0
        """The offset this worker has read up to (the next one to read)."""
        self._moved = asyncio.Condition()
        self._consumer: AIOKafkaConsumer | None = None
        self._ends = EndOffsets(settings, read_committed=True)
        self._tp = TopicPartition(topics.SUBSCRIPTION_AUDIT, 0)

    async def on_start(self) -> None:
        await self._ends.start()
        self._consumer, self._tp = await follow_from_start(
            self._settings, topics.SUBSCRIPTION_AUDIT, read_committed=True
        )
        self.add_future(self._follow())

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        await self._ends.stop()

    async def _follow(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self.should_stop:
            batch = await consumer.getmany(self._tp, timeout_ms=200)
            for record in batch.get(self._tp, []):
                self._apply(record.offset, record.value)
            position = await consumer.position(self._tp)
            if position != self._position:
                async with self._moved:
                    self._position = position
                    self._moved.notify_all()

    def _apply(self, offset: int, value: bytes | None) -> None:
        if value is None:
            return
        try:
            entry = AuditEntry.from_stored(orjson.loads(value))
        except (ValueError, TypeError, KeyError) as exc:
            # written only by the store; a record that is not an entry is someone else's
            log.warning("skipping audit record at offset %d: %r", offset, exc)
            return
        self._entries.setdefault(entry.subscription_id, []).append((offset, entry))

    async def entries(
        self, subscription_id: str, timeout: float = 10.0
    ) -> list[tuple[int, AuditEntry]]:
        """(log position, entry) of every change of the subscription, oldest first, including
        every change committed before the call. :class:`NotLoaded` if this worker cannot catch
        up within ``timeout`` (it has only started, or the broker is slow)."""
        if self._consumer is None:
            raise NotLoaded("the worker is still starting; retry in a moment")
        # read_committed: the end offsets are the last stable offset, so an open transaction
        # (a change being written) is not waited for
        end = await self._ends.of(self._tp)
        try:
            async with self._moved:
                await asyncio.wait_for(self._moved.wait_for(lambda: self._position >= end), timeout)
        except TimeoutError:
            raise NotLoaded("the worker is still reading the audit; retry in a moment") from None
        return list(self._entries.get(subscription_id, ()))
