"""The dead-letter path and status events: what every processor sends when it cannot use a
record, in the open transaction like its other outputs.

A dead-lettered record keeps its original key and value; its headers say why and where it came
from (``error.reason``, ``error.message``, ``error.topic``, ``error.partition``,
``error.offset``). A record set aside after repeated processing failures is dead-lettered the
same way and reported with an ERROR status event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from execdist import topics
from execdist.codecs.output import encode_json
from execdist.domain import RecordOrigin, Rejected, RejectReason, StatusType, format_time
from execdist.metrics import Metrics
from execdist.runtime.records import InputRecord
from execdist.runtime.transaction import RecordSink
from execdist.settings import Settings

log = logging.getLogger(__name__)


class DeadLetters:
    """Sends dead-lettered records and status events to the worker's transaction."""

    def __init__(
        self,
        settings: Settings,
        out: RecordSink,
        metrics: Metrics,
        clock: Callable[[], datetime],
    ) -> None:
        self._settings = settings
        self._out = out
        self._metrics = metrics
        self._clock = clock

    async def set_aside(self, record: InputRecord, error: str) -> None:
        """Move on past an input record whose processing keeps failing: dead-letter it and
        report an ERROR status event for the operators."""
        tp, offset, key, value = record.tp, record.offset, record.key, record.value
        details: dict[str, object] = {
            "topic": tp.topic,
            "partition": tp.partition,
            "offset": offset,
            "error": error,
        }
        origin = RecordOrigin(tp.topic, tp.partition, offset, key, value)
        message = (
            f"the record could not be processed ({error}); it was set aside so that the "
            "records behind it go on. Check the worker's log for the traceback, then "
            "resend the record once the cause is fixed"
        )
        await self.reject(Rejected(RejectReason.VALIDATION_ERROR, message, origin))
        await self.publish_status(
            StatusType.ERROR,
            {"what": "input record set aside after repeated processing failures", **details},
            event_id=f"{tp.topic}:{tp.partition}:{offset}:set-aside",
        )

    async def reject(self, rejected: Rejected) -> None:
        """Dead-letter an input record: its original bytes, with the reason in headers."""
        origin = rejected.origin
        if not isinstance(origin, RecordOrigin):
            # a held execution's origin read back from its stored state
            assert isinstance(origin, dict)
            origin = RecordOrigin.from_dict(origin)
        key, value = origin.key, origin.value
        headers = [
            ("error.reason", rejected.reason.value.encode()),
            ("error.message", rejected.message.encode()),
            ("error.topic", origin.topic.encode()),
            ("error.partition", str(origin.partition).encode()),
            ("error.offset", str(origin.offset).encode()),
        ]
        self._out.send(topics.DLQ, key, value, headers=headers)
        self._metrics.dlq.labels(rejected.reason.value).inc()
        if log.isEnabledFor(logging.INFO):
            fields = {
                "topic": origin.topic,
                "partition": origin.partition,
                "offset": origin.offset,
                "reason": rejected.reason.value,
            }
            if key is not None:
                # inputs are keyed by order_id (a key that is not is itself dead-lettered)
                fields["order_id"] = key.decode(errors="replace")
            if rejected.exec_id is not None:
                fields["exec_id"] = rejected.exec_id
            log.info(
                "dead-lettered %s:%s@%s: %s %s",
                origin.topic,
                origin.partition,
                origin.offset,
                rejected.reason.value,
                rejected.message,
                extra=fields,
            )

    async def publish_status(
        self,
        type_: StatusType,
        details: dict[str, object],
        *,
        event_id: str,
        subscription_id: str | None = None,
    ) -> None:
        event = {
            "event_id": event_id,
            "type": type_.value,
            "source": self._settings.worker_id,
            "subscription_id": subscription_id,
            "time": format_time(self._clock()),
            "details": details,
        }
        self._out.send(topics.STATUS, self._settings.worker_id.encode(), encode_json(event))
        self._metrics.status_events.labels(type_.value).inc()
