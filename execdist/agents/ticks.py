"""Tick requests: a timer asks each owned partition to check its timeouts.

A timer runs outside any event, so it may not change state itself. It only sends a small tick
record, with the plain (non-transactional) producer so it is visible at once, to each partition
of the co-partitioned tick topic that this worker owns; the join agent then handles the tick
inside that partition's transaction.
"""

from __future__ import annotations

import logging

import faust
from faust.exceptions import ProducerSendError

from execdist import topics
from execdist.agents.join import utc_now
from execdist.domain import format_time

log = logging.getLogger(__name__)


async def request_ticks(app: faust.App) -> int:
    """Send one tick to every tick partition assigned to this worker; returns how many."""
    if app.rebalancing:
        return 0
    owned = sorted(
        tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topics.TICKS
    )
    value = format_time(utc_now()).encode()
    for partition in owned:
        try:
            await app.producer.send(topics.TICKS, None, value, partition, None, None)
        except ProducerSendError as exc:  # the producer is restarting; the next tick will do
            log.warning("could not request tick for partition %s: %s", partition, exc)
    return len(owned)
