"""The record a processor is given: one input record, read once from the consumer."""

from __future__ import annotations

from dataclasses import dataclass

from execdist.topics import TP


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

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)

    def where(self) -> str:
        return f"{self.topic}:{self.partition}@{self.offset}"
