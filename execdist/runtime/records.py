"""The record a processor is given: one input record, read once from the consumer."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import Message

from execdist.domain.values import quick_init
from execdist.topics import EXECUTIONS, ORDERS, TP


@quick_init
@dataclass(frozen=True, slots=True)
class InputRecord:
    """One record of an input topic, as the pipeline's consumer read it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None
    """When the producer created it (seconds since the epoch), if it says."""

    @classmethod
    def of(cls, message: Message) -> InputRecord:
        """The record ``message`` carries (one without an error)."""
        kind, timestamp = message.timestamp()
        return cls(
            str(message.topic()),
            int(message.partition() or 0),
            int(message.offset() or 0),
            message.key(),
            message.value(),
            None if kind == 0 or timestamp < 0 else timestamp / 1000,
        )

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)

    def where(self) -> str:
        return f"{self.topic}:{self.partition}@{self.offset}"

    def log_fields(self) -> dict[str, object]:
        """Where it is, for a log line's ``extra``, with the order_id orders and executions are
        keyed by."""
        fields: dict[str, object] = {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
        }
        if self.key is not None and self.topic in (ORDERS, EXECUTIONS):
            fields["order_id"] = self.key.decode(errors="replace")
        return fields
