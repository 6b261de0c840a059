"""Which input partitions the worker has read to their end, for timeouts that wait for input.

A timeout such as "the order never came" is judged by the clock, but a clock alone cannot tell
an order that never came from one still in the backlog a worker is catching up on. The engine
therefore tells its punctuators which of a partition's input topics it has read and processed
up to the end the broker last reported; a punctuator that waits for input judges only those.

A partition is read to its end when nothing of it waits unprocessed in the engine and either

* the records processed reach the high watermark the consumer last reported (its last stable
  offset, ``read_committed``), give or take one offset: a transaction's commit marker follows
  its last record. This is how a partition written to all the time is seen as read: its fetches
  rarely come back empty. The engine notes the watermarks every half second or so (they feed
  its lag gauge too), so what reached the broker within that last moment may still be
  unread when a timeout is judged, as it may be with the wall clock alone; what a worker
  catching up has not read is further back than that; or
* the consumer's last word on it was its end event (``enable.partition.eof``: a fetch that found
  nothing past its offset). This is how a quiet partition whose last entries are not records
  (markers, an aborted transaction) is seen as read: its processed offset stays behind the
  watermark for good. A record polled after that event means more has come.
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
    """The input partitions whose end event the consumer gave last, and which are read."""

    def __init__(self) -> None:
        self._at_end: set[InputPartition] = set()

    def polled(self, changes: dict[InputPartition, bool]) -> None:
        """Note what one poll showed, per partition: ``True`` if its end event came after its
        last record, ``False`` if a record did (see :func:`split_polled`)."""
        for tp, at_end in changes.items():
            if at_end:
                self._at_end.add(tp)
            else:
                self._at_end.discard(tp)

    def forget(self, partitions: Iterable[int] | None = None) -> None:
        """The consumer is to read ``partitions`` (all, if ``None``) again from a committed
        offset, or they left the worker: their ends are unknown until reached again."""
        if partitions is None:
            self._at_end.clear()
            return
        gone = set(partitions)
        self._at_end = {tp for tp in self._at_end if tp[1] not in gone}

    def read_to_end(
        self,
        partition: int,
        topics: Iterable[str],
        waiting: set[InputPartition],
        highs: Mapping[InputPartition, int],
        processed: Callable[[InputPartition], int | None],
    ) -> frozenset[str]:
        """Those of ``topics`` whose ``partition`` is read to its end, given the partitions
        with records ``waiting`` (polled, not processed yet), the high watermarks of the last
        fetches and the next offset to process of each partition."""
        read = set()
        for topic in topics:
            tp = (topic, partition)
            if tp in waiting:
                continue
            if tp in self._at_end:
                read.add(topic)
                continue
            high = highs.get(tp)
            next_offset = None if high is None else processed(tp)
            if high is not None and next_offset is not None and next_offset >= high - MARKER:
                read.add(topic)
        return frozenset(read)


def split_polled(
    messages: Iterable[Message],
) -> tuple[list[InputRecord], dict[InputPartition, bool]]:
    """The records among ``messages``, in order, and per partition they name, whether what
    came last about it was its end event (``True``) or a record (``False``), for
    :meth:`InputEnds.polled`. Errors other than an end are logged and skipped."""
    records: list[InputRecord] = []
    ends: dict[InputPartition, int] = {}
    """Per partition, the number of records before its last end event."""
    for message in messages:
        error = message.error()
        if error is None:
            records.append(InputRecord.of(message))
        elif error.code() == KafkaError._PARTITION_EOF:
            ends[(str(message.topic()), int(message.partition() or 0))] = len(records)
        else:
            log.warning("the pipeline's consumer reports: %s", error.str())
    changes = {(record.topic, record.partition): False for record in records}
    for (topic, partition), before in ends.items():
        changes[(topic, partition)] = not any(
            record.partition == partition and record.topic == topic for record in records[before:]
        )
    return records, changes
