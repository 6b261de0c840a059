"""The order a partition's records are processed in across the topics one processor reads:
by timestamp, as Kafka Streams does.

The join reads two topics, ``orders`` and ``executions``. The consumer fetches each partition
of each on its own, so which of an order's amendment and an execution written before it a
poll brings first depends on timing, and so would what the confirmation says (the order's
quantity, what is left of it). Kafka Streams' ``PartitionGroup`` makes it deterministic: of a
task's partitions, the buffered record with the earliest timestamp goes next, and while one
partition has nothing buffered but may still bring an earlier record, the task waits for its
fetch (``max.task.idle.ms`` 0, KIP-695). :class:`SourceOrder` does the same for each partition
number and each processor that reads more than one topic (other sources pass straight through,
in the order polled):

* The records fetched of the processor's topics are held per partition; while each topic has
  one, the one with the earliest timestamp goes next (on equal timestamps, the topology's
  source order: an order before an execution). Each topic's own records keep their offset
  order whatever their timestamps.
* A topic with nothing held holds the others back only while it may still bring something: not
  once it is fetched to its end (``fetched_to_end``: the consumer's end event, or the high
  watermark it reports, is at the next offset to fetch).
* Nor for longer than :data:`MAX_HOLD_S` (a last resort), nor beyond :data:`MAX_HELD` records of one
  partition: then what is held goes in timestamp order as far as it is known (Kafka Streams'
  enforced processing), so a topic that is slow to fetch delays the others, never stops them.

For the same backlog a worker therefore confirms the same things, whatever the timing. Records
arriving while it runs are ordered as far as the fetches show, as in Kafka Streams: one
written just before another may be fetched just after it has been processed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from execdist.runtime.records import InputRecord

InputPartition = tuple[str, int]

MAX_HOLD_S = 5.0
"""Longest a partition's records wait for a fetch of the processor's other topics that does not
come. They wait only while more of it is known to be there, which a fetch brings within
``fetch.wait.max.ms`` (100 ms) once the worker polls again; the worker may be processing the
records polled before for a second or more first, so this is a last resort, not a bound that
a backlog reaches."""
MAX_HELD = 20_000
"""Most records of one partition held waiting for the others: ten polls' worth."""


@dataclass(slots=True)
class _Held:
    queues: dict[str, deque[InputRecord]]
    """Each topic's records, the topics in the topology's source order: the order that breaks a
    tie of timestamps."""
    count: int = 0
    since: float | None = None
    """When the wait for a fetch of an empty topic began (``time.monotonic``)."""


class SourceOrder:
    """Holds the records of the topics a processor shares with others until it is their turn
    by timestamp (module docs)."""

    def __init__(self, sources: Mapping[str, object]) -> None:
        """``sources``: input topic -> its processor, in the order that breaks a tie of
        timestamps."""
        by_processor: dict[int, list[str]] = {}  # each in source order
        for topic, processor in sources.items():
            by_processor.setdefault(id(processor), []).append(topic)
        self._groups = {
            topic: tuple(group)
            for group in by_processor.values()
            if len(group) > 1
            for topic in group
        }
        self._held: dict[tuple[tuple[str, ...], int], _Held] = {}
        self._fetched: dict[InputPartition, int] = {}

    def fetched(self, tp: InputPartition) -> int | None:
        """The offset after the last record polled of ``tp`` since it was last forgotten."""
        return self._fetched.get(tp)

    def held(self) -> set[InputPartition]:
        """The partitions with records held here, polled and not processed yet."""
        return {
            (topic, partition)
            for (_, partition), held in self._held.items()
            for topic, queue in held.queues.items()
            if queue
        }

    def arrange(
        self,
        polled: Iterable[InputRecord],
        fetched_to_end: Callable[[InputPartition], bool],
        now: float,
    ) -> list[InputRecord]:
        """Take ``polled`` (each partition's records in offset order) and return, partition by
        partition, those whose turn it is, with any held before that now may go."""
        ready: list[InputRecord] = []
        groups, fetched, held_by = self._groups, self._fetched, self._held
        for record in polled:
            fetched[(record.topic, record.partition)] = record.offset + 1
            group = groups.get(record.topic)
            if group is None:
                ready.append(record)
                continue
            key = (group, record.partition)
            held = held_by.get(key)
            if held is None:
                held = held_by[key] = _Held({topic: deque() for topic in group})
            held.queues[record.topic].append(record)
            held.count += 1
        for key in list(held_by):
            held = held_by[key]
            self._release(key[0], key[1], held, fetched_to_end, now, ready)
            if not held.count:
                del held_by[key]
        ready.sort(key=_partition)
        return ready

    def _release(
        self,
        group: tuple[str, ...],
        partition: int,
        held: _Held,
        fetched_to_end: Callable[[InputPartition], bool],
        now: float,
        ready: list[InputRecord],
    ) -> None:
        queues = held.queues
        while held.count:
            filled = [queue for queue in queues.values() if queue]
            if len(filled) < len(queues) and any(
                not queue and not fetched_to_end((topic, partition))
                for topic, queue in queues.items()
            ):
                if held.since is None:
                    held.since = now
                if held.count < MAX_HELD and now - held.since < MAX_HOLD_S:
                    return
                # waited long enough for that fetch: go on without it, one record at a time
                # (the count of those held decides too)
                ready.append(_earliest(filled).popleft())
                held.count -= 1
                continue
            held.since = None
            # Nothing is awaited, and nothing can change that until one of the topics' records
            # run out (fetched_to_end does not change meanwhile): take them in turn until then.
            held.count -= _take_in_turn(filled, ready)

    def forget(self, partitions: Iterable[int] | None = None) -> None:
        """Drop what is held of ``partitions`` (all, if ``None``) and where their fetches
        were: they are read again from a commit, or left the worker."""
        if partitions is None:
            self._held.clear()
            self._fetched.clear()
            return
        gone = set(partitions)
        self._held = {key: held for key, held in self._held.items() if key[1] not in gone}
        self._fetched = {tp: at for tp, at in self._fetched.items() if tp[1] not in gone}


def _partition(record: InputRecord) -> int:
    return record.partition


def _earliest(queues: list[deque[InputRecord]]) -> deque[InputRecord]:
    """Of ``queues`` (none empty, in source order), the one whose next record goes first: the
    earliest timestamp, the first in source order on a tie."""
    first = queues[0]
    for queue in queues[1:]:
        if (queue[0].timestamp or 0.0) < (first[0].timestamp or 0.0):
            first = queue
    return first


def _take_in_turn(queues: list[deque[InputRecord]], ready: list[InputRecord]) -> int:
    """Move the records of ``queues`` (none empty, in source order) to ``ready`` by timestamp
    (:func:`_earliest`) until one of them is empty; how many it moved."""
    if len(queues) == 1:  # the others are fetched to their end: this one goes whole
        (queue,) = queues
        moved = len(queue)
        ready.extend(queue)
        queue.clear()
        return moved
    moved = 0
    while True:
        first = _earliest(queues)
        ready.append(first.popleft())
        moved += 1
        if not first:  # only the queue taken from can have run out
            return moved
