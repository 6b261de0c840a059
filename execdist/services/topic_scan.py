"""Reading a topic's committed records once, up to where it ended when a request came.

The request-time scans (a filter's dry-run, a subscription's reconcile) read with a librdkafka
consumer in a thread (:func:`execdist.infra.clients.scan_consumer`: ``read_committed``,
assigned partitions, ``enable.partition.eof``), each partition from a start offset to its end
at the scan's start, within a time budget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, Message

from execdist.codecs.output import SUB_SEQ_HEADER
from execdist.infra import clients

log = logging.getLogger(__name__)

BATCH = 1000
POLL_S = 0.2


def read_to_end(consumer: Consumer, ends: dict[int, int], deadline: float) -> Iterator[Message]:
    """Every committed record of the assigned partitions below its end in ``ends``
    (partition -> end offset), which is emptied as each end is reached. Stops at
    ``deadline`` (a ``time.monotonic()`` value) with ``ends`` not empty, and early when the
    caller stops iterating. A fatal Kafka error raises :class:`KafkaException`."""
    while ends:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        for message in clients.take_fetched(consumer, BATCH, min(left, POLL_S)):
            partition = message.partition()
            error = message.error()
            if partition is None or partition not in ends:
                if error is not None and error.fatal():
                    raise KafkaException(error)
                continue
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    del ends[partition]  # its committed end is reached
                elif error.fatal():
                    raise KafkaException(error)
                else:  # transient (a broker reconnecting): the deadline bounds the wait
                    log.info("scan of %s: %s", message.topic(), error)
                continue
            offset = message.offset()
            if offset is None or offset >= ends[partition]:
                del ends[partition]  # written after the scan began
                continue
            if offset >= ends[partition] - 1:
                del ends[partition]
            yield message


def header_sub_seq(headers: object) -> int | None:
    """A subscriber record's ``execdist.sub_seq`` header (librdkafka gives headers as a list
    of pairs); ``None`` for a record written before subscriptions were numbered."""
    if isinstance(headers, list):
        for name, value in headers:
            if name == SUB_SEQ_HEADER and value is not None:
                return int(value)
    return None
