"""The topology: which processor reads which input topic, and which tables the engine keeps.

Declared once, in the composition root (:func:`execdist.app.create_app`), and handed to the
engine whole, the way a Kafka Streams ``Topology`` is: sources, and which processor reads
each (the records of one processor's topics are processed in timestamp order); the
punctuators the engine calls for each owned partition once per tick interval, inside the
transaction (Kafka Streams' wall-clock ``schedule``); the tables (stores) whose changes the
commit sends to their changelogs; and what must hold before the first record is processed.
Processors forward their outputs to the worker's transaction
(:class:`~execdist.runtime.transaction.RecordSink`), which they are given when they are built.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from execdist.agents.continuity import InputContinuity
from execdist.runtime.commit import CommitFollower
from execdist.runtime.records import InputRecord
from execdist.tables.store import PartitionedState


class Processor(Protocol):
    """Processes input records inside the worker's open transaction."""

    async def process(self, record: InputRecord) -> None:
        """Apply one record: read and write tables, forward outputs."""

    async def set_aside(self, record: InputRecord, error: str) -> None:
        """Move past a record whose processing kept failing (the dead-letter path)."""

    def release(self, partition: int) -> None:
        """Drop what is cached for ``partition``: its uncommitted work was thrown away or
        the partition left this worker."""


@dataclass(frozen=True, slots=True)
class PunctuationContext:
    """What a punctuator is told about the partition it is called for."""

    partition: int
    behind: Mapping[str, float] = field(default_factory=dict)
    """How many seconds behind this partition of each source topic the worker is: 0 where it
    has read and processed everything the broker last reported, else the age of the newest
    record it processed; a topic of which nothing is known yet is missing
    (:mod:`execdist.runtime.read_to_end`). A timeout that waits for input is judged that much
    later: while the worker catches up on a backlog, what it waits for may be in it."""

    def behind_by(self, *topics: str) -> float:
        """How far behind the furthest behind of ``topics`` the worker is, in seconds;
        ``math.inf`` if that is not known for one of them."""
        return max((self.behind.get(topic, math.inf) for topic in topics), default=0.0)


Punctuator = Callable[[PunctuationContext], Awaitable[None]]
"""Time-driven work on one partition (timeouts, expiry, backfills): reads and writes its tables
and forwards outputs, like a processor, inside the worker's open transaction."""


async def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Topology:
    sources: dict[str, Processor]
    """Input topic -> its processor. The records of the topics one processor reads are
    processed in timestamp order, partition by partition (:mod:`execdist.runtime.ordering`);
    on equal timestamps, in this order (an order before an execution)."""
    tables: list[PartitionedState]
    continuity: InputContinuity
    """Admits each input record once and records the next offsets in the state."""
    punctuators: list[Punctuator] = field(default_factory=list)
    """Called in this order for each owned partition once per tick interval."""
    ready: Callable[[], Awaitable[object]] = field(default=_nothing)
    """Awaited before the first batch (every subscription in force is known)."""
    commit_followers: list[CommitFollower] = field(default_factory=list)
    """What else counts only once its transaction committed (delivery figures)."""

    @property
    def topics(self) -> list[str]:
        return list(self.sources)

    @property
    def processors(self) -> list[Processor]:
        unique: dict[int, Processor] = {}
        for processor in self.sources.values():
            unique.setdefault(id(processor), processor)
        return list(unique.values())
