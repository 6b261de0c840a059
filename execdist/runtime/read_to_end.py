"""Which input partitions the worker has read to their end, for timeouts that wait for input.

A timeout such as "the order never came" is judged by the clock, but a clock alone cannot tell
an order that never came from one still in the backlog a worker is catching up on. The engine
therefore tells its punctuators which of a partition's input topics it has read and processed
up to the end the broker last reported; a punctuator that waits for input judges only those.

A partition is read to its end when nothing of it waits unprocessed in the engine and, against
the high watermark the consumer reports after the last poll that brought anything (its last
stable offset, ``read_committed``; it covers what is fetched and not yet polled, too), either

* the records processed reach it, give or take one offset: a transaction's commit marker follows
  its last record. This is how a partition written to all the time is seen as read: its
  fetches rarely come back empty; or
* the consumer's last end event (``enable.partition.eof``: a fetch that found nothing past its
  offset) was at that watermark: nothing has come since. This is how a quiet partition whose
  last entries are not records (markers, an aborted transaction) is seen as read: its
  processed offset stays behind the watermark for good.

The watermarks must be no older than the records processed and the end events polled: one
noted before a backlog arrived would make the backlog's first records look like the end, and
an end event polled while more is fetched behind it would too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from confluent_kafka import KafkaError, Message

from execdist.runtime.records import InputRecord

log = logging.getLogger(__name__)

InputPartition = tuple[str, int]

MARKER = 1
"""Offsets a partition read to its end may stay behind the high watermark: the commit marker
after a transaction's last record."""


class InputEnds:
    """Where the consumer last reported the end of each input partition, and which are read."""

    def __init__(self) -> None:
        self._ends: dict[InputPartition, int] = {}

    def polled(self, ends: Mapping[InputPartition, int]) -> None:
        """Note the end events one poll brought: partition -> the offset of its end."""
        self._ends.update(ends)

    def forget(self, partitions: Iterable[int] | None = None) -> None:
        """The consumer is to read ``partitions`` (all, if ``None``) again from a committed
        offset, or they left the worker: their ends are unknown until reached again."""
        if partitions is None:
            self._ends.clear()
            return
        gone = set(partitions)
        self._ends = {tp: end for tp, end in self._ends.items() if tp[1] not in gone}

    def read_to_end(
        self,
        partition: int,
        topics: Iterable[str],
        waiting: set[InputPartition],
        highs: Mapping[InputPartition, int],
        processed: Callable[[InputPartition], int | None],
    ) -> frozenset[str]:
        """Those of ``topics`` whose ``partition`` is read to its end, given the partitions
        with records ``waiting`` (polled, not processed yet), the high watermarks noted after
        the last poll and the next offset to process of each partition."""
        read = set()
        for topic in topics:
            tp = (topic, partition)
            high = highs.get(tp)
            if high is None or tp in waiting:
                continue
            if self._ends.get(tp, -1) >= high:
                read.add(topic)
                continue
            next_offset = processed(tp)
            if next_offset is not None and next_offset >= high - MARKER:
                read.add(topic)
        return frozenset(read)


def split_polled(
    messages: Iterable[Message],
) -> tuple[list[InputRecord], dict[InputPartition, int]]:
    """The records among ``messages``, in order, and the end events among them (partition ->
    the offset of its end, the last one if several), for :meth:`InputEnds.polled`. Errors
    other than an end are logged and skipped."""
    records: list[InputRecord] = []
    ends: dict[InputPartition, int] = {}
    for message in messages:
        error = message.error()
        if error is None:
            records.append(InputRecord.of(message))
        elif error.code() == KafkaError._PARTITION_EOF:
            tp = (str(message.topic()), int(message.partition() or 0))
            ends[tp] = int(message.offset() or 0)
        else:
            log.warning("the pipeline's consumer reports: %s", error.str())
    return records, ends
