"""Restoring a partition's tables from their committed changelogs.

A partition newly owned by this worker starts from empty databases filled from the tables'
changelog, read ``read_committed`` from the start to its end (the last stable offset), the way
Kafka Streams restores a task after an unclean stop; each record goes to the table its key's tag
names (:data:`~execdist.tables.declarations.TAGS`). Blocking: the engine runs it in a thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import rocksdict
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from execdist.infra import clients
from execdist.settings import Settings
from execdist.tables.declarations import TableSpec
from execdist.tables.store import RocksTables

log = logging.getLogger(__name__)

RESTORE_TIMEOUT_S = 600.0
BATCH = 10_000
SLOW_RESTORE_S = 15.0
"""A restore still running after this long says how far it got, and again as often."""


class RestoreFailed(Exception):
    """A changelog could not be read to its end."""


def restore(
    settings: Settings,
    tables: RocksTables,
    specs: list[TableSpec],
    partitions: list[int],
    *,
    progress: Callable[[str], None] = log.info,
) -> int:
    """Fill the (empty) databases of ``partitions`` from the tables' committed changelogs;
    returns the number of records applied."""
    if not partitions:
        return 0
    by_topic: dict[str, dict[bytes, str]] = {}
    for spec in specs:
        by_topic.setdefault(spec.changelog_topic, {})[spec.changelog_tag] = spec.name
    tag_length = {topic: len(next(iter(tags))) for topic, tags in by_topic.items()}
    wanted = [TopicPartition(topic, p, OFFSET_BEGINNING) for topic in by_topic for p in partitions]
    consumer = clients.restore_consumer(settings)
    started = time.monotonic()
    applied = unknown = 0
    try:
        consumer.assign(wanted)
        pending = {(tp.topic, tp.partition) for tp in wanted}
        deadline = started + RESTORE_TIMEOUT_S
        next_report = started + SLOW_RESTORE_S
        while pending:
            now = time.monotonic()
            if now > next_report:
                next_report = now + SLOW_RESTORE_S
                log.warning(
                    "restoring for %.0f s, %d records so far; not at the end yet: %s",
                    now - started,
                    applied,
                    sorted(pending),
                )
            if now > deadline:
                raise RestoreFailed(f"restoring {sorted(pending)} took over {RESTORE_TIMEOUT_S} s")
            writes: dict[tuple[str, int], rocksdict.WriteBatch] = {}
            for message in clients.take_fetched(consumer, BATCH, 0.5):
                topic, partition = str(message.topic()), int(message.partition() or 0)
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard((topic, partition))
                        continue
                    raise RestoreFailed(f"reading changelog {topic}:{partition}: {error.str()}")
                key, value = message.key(), message.value()
                if key is None:
                    continue  # table changelogs are always keyed
                cut = tag_length[topic]
                table = by_topic[topic].get(key[:cut])
                if table is None:
                    unknown += 1  # a table this version does not have
                    continue
                batch = writes.get((table, partition))
                if batch is None:
                    batch = writes[table, partition] = rocksdict.WriteBatch(raw_mode=True)
                if value is None:
                    batch.delete(key[cut:])
                else:
                    batch.put(key[cut:], value)
                applied += 1
            for (table, partition), batch in writes.items():
                tables.db(table, partition).write(batch)
    finally:
        consumer.close()
    if unknown:
        log.warning(
            "skipped %d changelog records of tables this version does not know (written by "
            "a newer version?)",
            unknown,
        )
    progress(
        f"restored {applied} changelog records for partitions {sorted(partitions)} "
        f"in {time.monotonic() - started:.2f} s from {', '.join(sorted(by_topic))}"
    )
    return applied
