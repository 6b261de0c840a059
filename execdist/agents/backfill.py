"""Backfill: a new subscription's matching confirmations since its ``backfill_from``, then live.

The join keeps every confirmation of an order, as published, in the
``execdist-confirmation-history`` table of the order's partition. Each worker backfills its own
partitions from there, inside the engine's transactions, a slice per tick (each partition's
tick once a second), walking the history in key order (order by order, each order's
confirmations in seq order) and delivering what the subscription's filter matches and was
confirmed at or after ``backfill_from``. Where it got to is kept, per subscription and
partition, in the timers table (``backfill:<subscription id>``: the key after the last order
done, or ``done``), committed with what it delivered: a worker that dies mid-way leaves
nothing half-done, and the next owner goes on from the last commit.

Live confirmations do not overtake their order's backfill: until the walk has passed an order,
the router leaves that order's live confirmations to it (they are in the history already, and
the walk delivers them in their place). So each order's records come in seq order, and the
sequencer numbers them all, backfilled and live, in one run of ``sub_seq``.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

import orjson

from execdist.agents.subscriber_output import Encodings, SubscriberOutput
from execdist.domain.model import Confirmation
from execdist.domain.routing import SubscriptionIndex
from execdist.domain.subscriptions import Subscription
from execdist.metrics import Metrics
from execdist.runtime.topology import PunctuationContext
from execdist.tables.declarations import history_prefix
from execdist.tables.store import PartitionedState

log = logging.getLogger(__name__)

READ_AHEAD = 500
"""History entries read at once."""
DONE = b"done"
_PAST = b"\xff"
"""Appended to an order's history prefix: sorts after all of that order's entries and before
the next order's."""


def progress_key(subscription_id: str) -> bytes:
    return b"backfill:" + subscription_id.encode()


class SubscriptionBackfill:
    """Backfills subscriptions that ask for it, a slice per tick (see the module's text)."""

    def __init__(
        self,
        history: PartitionedState,
        progress: PartitionedState,
        index: SubscriptionIndex,
        output: SubscriberOutput,
        metrics: Metrics,
        slice_s: float = 0.05,
    ) -> None:
        self._history = history
        self._slice_s = slice_s
        """Time a tick spends on backfills per partition (``EXECDIST_BACKFILL_SLICE_S``); more
        ticks finish the rest, so a large backfill does not hold up the partition's live
        confirmations."""
        self._turn: dict[int, int] = {}
        """Per partition, which unfinished backfill goes first at the next tick (in turn)."""
        self._progress = progress
        self._index = index
        self._output = output
        self._metrics = metrics
        self._alone: dict[tuple[str, int], SubscriptionIndex] = {}
        """Per subscription version, an index holding only it: the router's own matching."""

    def admits(self, partition: int, subscription: Subscription, order_id: str) -> bool:
        """Whether a live confirmation of ``order_id`` goes to ``subscription`` now: its
        backfill of this partition is done or has passed the order."""
        reached = self._progress.get(partition, progress_key(subscription.id))
        if reached == DONE:
            return True
        return reached is not None and history_prefix(order_id) < reached

    async def punctuate(self, context: PunctuationContext) -> None:
        """Go on with every unfinished backfill of the partition for a slice of time (the
        engine calls this once per tick interval, inside the partition's transaction)."""
        partition = context.partition
        deadline = time.perf_counter() + self._slice_s
        waiting = [
            subscription
            for subscription in self._index
            if subscription.backfill_from is not None
            and subscription.is_active
            and self._progress.get(partition, progress_key(subscription.id)) != DONE
        ]
        if not waiting:
            return
        first = self._turn.get(partition, 0) % len(waiting)
        for turn in range(len(waiting)):
            subscription = waiting[(first + turn) % len(waiting)]
            await self._slice(partition, subscription, deadline)
            if time.perf_counter() > deadline:
                self._turn[partition] = first + turn + 1  # the others go first next time
                return

    async def _slice(self, partition: int, subscription: Subscription, deadline: float) -> None:
        key = progress_key(subscription.id)
        done_until = self._progress.get(partition, key) or b""
        """Every order before this history key is walked: where the slice resumes."""
        read_after = done_until
        alone = self._alone_index(subscription)
        since = subscription.backfill_from
        delivered = 0
        current: bytes | None = None  # the history prefix of the order being walked
        try:
            while True:
                items = self._history.current_items_after(partition, read_after or None, READ_AHEAD)
                if not items:  # the whole history is walked
                    self._progress.put(partition, key, DONE)
                    log.info(
                        "subscription %s: backfill of partition %d done",
                        subscription.id,
                        partition,
                        extra={"subscription_id": subscription.id, "partition": partition},
                    )
                    return
                for history_key, value in items:
                    order = _order_prefix(history_key)
                    if order != current:
                        if current is not None:
                            done_until = current + _PAST
                            if time.perf_counter() > deadline:
                                self._progress.put(partition, key, done_until)
                                return
                        current = order
                    delivered += await self._deliver(alone, subscription, since, value)
                read_after = items[-1][0]
        finally:
            self._metrics.backfilled.inc(delivered)

    async def _deliver(
        self,
        alone: SubscriptionIndex,
        subscription: Subscription,
        since: datetime | None,
        value: bytes,
    ) -> int:
        body = orjson.loads(value)
        confirmation = Confirmation.from_dict(body)
        if since is not None and confirmation.confirmed_at < since:
            return 0
        if not alone.match(confirmation):
            return 0
        await self._output.deliver(
            subscription, confirmation.order_id.encode(), body, Encodings(value)
        )
        return 1

    def _alone_index(self, subscription: Subscription) -> SubscriptionIndex:
        key = (subscription.id, subscription.version)
        alone = self._alone.get(key)
        if alone is None:
            if len(self._alone) > 1000:
                self._alone.clear()
            alone = self._alone[key] = SubscriptionIndex()
            alone.upsert(subscription)
        return alone


def _order_prefix(history_key: bytes) -> bytes:
    """The order part of a history key (:func:`~execdist.tables.declarations.history_key`):
    five digits of length, then the order id."""
    return history_key[: 5 + int(history_key[:5])]
