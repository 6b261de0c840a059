"""How the join reads its inputs: JSON of the contract's shape on the typed path, anything else
on the general path (the decoder, which may wait for the schema registry), and what it cannot
read or refuses dead-lettered with where it came from."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from execdist import topics
from execdist.agents.join import JoinProcessor
from execdist.codecs.errors import RegistryUnavailable
from execdist.codecs.input import InputDecoder
from execdist.runtime.records import InputRecord
from tests.unit.agents.test_join_punctuation import Recorder, join_with_tables, sent_to
from tests.unit.domain.fixtures import ORDER_ID, execution_record, order_record

FRAMED = b"\x00\x00\x00\x00\x07avro"
"""Bytes in the registry's wire format (magic byte, schema id 7): not for the typed path."""


class FlakyRegistryDecoder:
    """Decodes every value to ``decoded``, after the registry failed ``failures`` times."""

    def __init__(self, decoded: dict[str, object], failures: int) -> None:
        self.decoded = decoded
        self.failures = failures
        self.asked: list[bytes | None] = []

    async def decode(self, value: bytes | None) -> dict[str, object]:
        self.asked.append(value)
        if self.failures:
            self.failures -= 1
            raise RegistryUnavailable("connection refused")
        return self.decoded


@contextmanager
def join_over(tmp_path: Path, decoder: object) -> Iterator[tuple[JoinProcessor, Recorder]]:
    with join_with_tables(tmp_path, partition=3, decoder=decoder) as (join, _, _, _, recorder):
        yield join, recorder


@pytest.fixture
def no_wait(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []

    async def note(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", note)
    return waits


def record(topic: str, offset: int, value: bytes) -> InputRecord:
    return InputRecord(topic, 3, offset, ORDER_ID.encode(), value, None)


async def test_a_record_not_for_the_typed_path_waits_for_the_registry_and_is_applied(
    tmp_path: Path, no_wait: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    decoder = FlakyRegistryDecoder(execution_record(), failures=2)
    with join_over(tmp_path, decoder) as (join, recorder):
        await join.process(record(topics.ORDERS, 0, orjson.dumps(order_record())))
        assert decoder.asked == [], "JSON of the contract's shape is read without the decoder"
        with caplog.at_level(logging.WARNING, logger="execdist.agents.join"):
            await join.process(record(topics.EXECUTIONS, 41, FRAMED))
        assert decoder.asked == [FRAMED] * 3
        assert no_wait == [1.0, 1.0]
        (confirmation,) = sent_to(recorder, topics.CONFIRMATIONS)
        assert orjson.loads(confirmation[2] or b"")["exec_id"] == "EX-1"
        assert sent_to(recorder, topics.DLQ) == []
        unavailable = [r for r in caplog.records if "schema registry unavailable" in r.message]
        assert len(unavailable) == 2
        fields = unavailable[0].__dict__
        assert (fields["topic"], fields["partition"], fields["offset"]) == (
            topics.EXECUTIONS,
            3,
            41,
        )


@pytest.mark.parametrize(
    ("topic", "value", "reason"),
    [
        (topics.EXECUTIONS, b"{not json", b"DECODE_ERROR"),
        (topics.EXECUTIONS, orjson.dumps({"order_id": ORDER_ID}), b"VALIDATION_ERROR"),
        (topics.EXECUTIONS, orjson.dumps(execution_record(last_qty="-1")), b"VALIDATION_ERROR"),
        (topics.ORDERS, orjson.dumps(order_record(quantity="0")), b"VALIDATION_ERROR"),
        (topics.ORDERS, orjson.dumps(order_record(order_id="OTHER")), b"VALIDATION_ERROR"),
    ],
    ids=[
        "not json",
        "json of another shape",
        "typed execution refused",
        "typed order refused",
        "key is not its order_id",
    ],
)
async def test_what_cannot_be_read_or_is_refused_is_dead_lettered_with_its_origin(
    tmp_path: Path, topic: str, value: bytes, reason: bytes
) -> None:
    with join_over(tmp_path, InputDecoder(None)) as (join, recorder):
        await join.process(record(topic, 17, value))
        assert sent_to(recorder, topics.CONFIRMATIONS) == []
        ((_, key, sent),) = sent_to(recorder, topics.DLQ)
        assert (key, sent) == (ORDER_ID.encode(), value)
        headers = recorder.headers[recorder.sent.index((topics.DLQ, key, sent))]
        assert headers["error.reason"] == reason
        assert (headers["error.topic"], headers["error.partition"], headers["error.offset"]) == (
            topic.encode(),
            b"3",
            b"17",
        )
