"""How far behind its input partitions the worker is, for timeouts that wait for input.

A timeout such as "the order never came" is judged by the clock, but a clock alone cannot tell
an order that never came from one still in the backlog a worker is catching up on. The engine
therefore tells its punctuators, for each of a partition's input topics, how far behind it the
worker is in time; a punctuator that waits for input judges its timeouts that much later, so
an input written before its timeout ran out is always read first.

A partition is **read to its end**, 0 seconds behind, when nothing of it waits unprocessed in the
engine and, against the high watermark the consumer reports after the last poll that brought
anything (its last stable offset, ``read_committed``; it covers what is fetched and not yet
polled, too), either

* the records processed reach it; or
* the consumer's last end event (``enable.partition.eof``: a fetch that found nothing past its
  offset) was at that watermark: nothing has come since. This is how a partition whose last
  entries are not records (a transaction's commit marker, an aborted transaction) is seen as
  read: its processed offset stays behind the watermark for good. The processed offset is given
  no tolerance for a marker: one offset short of the watermark may as well be a last record
  not polled yet (written alone, it often comes in a fetch of its own), and taking it for read
  would judge a timeout before the record that settles it.

The watermarks must be no older than the records processed and the end events polled: one
noted before a backlog arrived would make the backlog's first records look like the end, and
an end event polled while more is fetched behind it would too. For the same reason the first
rule waits, after the partition is assigned (or read again from its last commit), for a record
of it processed or an end event: until the consumer's first fetch of it returns, the watermark
it reports may be one cached from an earlier time the worker owned the partition.

Otherwise it is behind by the **age of the newest record processed** of it: whatever is not
processed yet was written after that one. Under a steady flow a tick mostly finds more fetched
than processed, and this is how far behind the worker then is: its own latency, a fraction of a
second, so a timeout is judged that much late rather than put off until the flow stops. In a
backlog it is the backlog's age. (The time is the record's timestamp, the producer's clock
unless the topic stamps its own; a producer clock running ahead makes the worker look less far
behind, at most as if the clock alone decided.) With no record processed since the partition
was assigned or rolled back, how far behind is unknown until it is read to its end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from confluent_kafka import KafkaError, Message

from execdist.runtime.records import InputRecord

log = logging.getLogger(__name__)

InputPartition = tuple[str, int]


class InputEnds:
    """Where the consumer last reported the end of each input partition, and when the newest
    record processed of each was written: how far behind them the worker is."""

    def __init__(self) -> None:
        self._ends: dict[InputPartition, int] = {}
        self._newest: dict[InputPartition, float] = {}

    def polled(self, ends: Mapping[InputPartition, int]) -> None:
        """Note the end events one poll brought: partition -> the offset of its end."""
        self._ends.update(ends)

    def processed(self, newest: Mapping[InputPartition, float]) -> None:
        """Note the timestamps (seconds since the epoch) of the newest records one batch
        processed: partition -> the last one's."""
        self._newest.update(newest)

    def forget(self, partitions: Iterable[int] | None = None) -> None:
        """The consumer is to read ``partitions`` (all, if ``None``) again from a committed
        offset, or they left the worker: how far behind them it is is unknown until their
        end is reached or a record of them is processed again."""
        if partitions is None:
            self._ends.clear()
            self._newest.clear()
            return
        gone = set(partitions)
        self._ends = {tp: end for tp, end in self._ends.items() if tp[1] not in gone}
        self._newest = {tp: at for tp, at in self._newest.items() if tp[1] not in gone}

    def behind(
        self,
        partition: int,
        topics: Iterable[str],
        waiting: set[InputPartition],
        highs: Mapping[InputPartition, int],
        processed: Callable[[InputPartition], int | None],
        now: float,
    ) -> dict[str, float]:
        """How many seconds behind ``partition`` of each of ``topics`` the worker is at ``now``
        (seconds since the epoch): 0 for those read to their end, the age of the newest record
        processed for the others; those of which nothing is known are left out. Given the
        partitions with records ``waiting`` (polled, not processed yet), the high watermarks
        noted after the last poll and the next offset to process of each partition."""
        behind = {}
        for topic in topics:
            tp = (topic, partition)
            if self._read_to_end(tp, waiting, highs, processed):
                behind[topic] = 0.0
                continue
            newest = self._newest.get(tp)
            if newest is not None:
                behind[topic] = max(now - newest, 0.0)
        return behind

    def fetched_to_end(
        self, tp: InputPartition, fetched: int | None, highs: Mapping[InputPartition, int]
    ) -> bool:
        """Whether the consumer has nothing more of ``tp`` to give now, given the offset after
        the last record polled of it since it was last forgotten (``fetched``): an end event
        at or past that offset, or the high watermark noted after the last poll there. (A
        commit marker after the last record leaves the watermark one past it; the end event
        that follows it says so.) With nothing polled of it since, only an end event tells:
        the watermark may be one cached from an earlier time the worker owned it."""
        end = self._ends.get(tp)
        if fetched is None:
            return end is not None
        if end is not None and end >= fetched:
            return True
        high = highs.get(tp)
        return high is not None and fetched >= high

    def _read_to_end(
        self,
        tp: InputPartition,
        waiting: set[InputPartition],
        highs: Mapping[InputPartition, int],
        processed: Callable[[InputPartition], int | None],
    ) -> bool:
        high = highs.get(tp)
        if high is None or tp in waiting:
            return False
        end = self._ends.get(tp)
        if end is not None and end >= high:
            return True
        if end is None and tp not in self._newest:
            return False  # nothing fetched of it since it was (re)assigned: high may be stale
        next_offset = processed(tp)
        return next_offset is not None and next_offset >= high


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
