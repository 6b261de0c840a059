"""InputDecoder: JSON or Confluent-framed Avro in, a record mapping or a DecodeError out."""

from __future__ import annotations

import asyncio
import struct
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from execdist.codecs import (
    CodecError,
    DecodeError,
    InputDecoder,
    RegistryUnavailable,
    UnknownSchemaId,
    encode_avro,
)
from execdist.codecs.schemas import ParsedSchema
from execdist.domain import ExecDistError, ExecType, OrderType, parse_execution, parse_order
from tests.unit.codecs.fixtures import (
    EXECUTION_SCHEMA_ID,
    ORDER_SCHEMA_ID,
    DictSchemaLookup,
    sample_execution,
    sample_order,
)


def framed_execution(**changes: object) -> bytes:
    return encode_avro(EXECUTION_SCHEMA_ID, "execution", sample_execution(**changes).to_dict())


async def refused(decoder: InputDecoder, value: bytes | None) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        await decoder.decode(value)
    return caught.value


# --- JSON ---------------------------------------------------------------------------------


async def test_json_object_is_decoded_as_is() -> None:
    value = b'{"exec_id": "EX-1", "last_qty": "40", "seq": 1, "ref_exec_id": null}'
    assert await InputDecoder().decode(value) == {
        "exec_id": "EX-1",
        "last_qty": "40",
        "seq": 1,
        "ref_exec_id": None,
    }


async def test_json_execution_validates_to_the_same_execution() -> None:
    execution = sample_execution()
    value = (
        b'{"exec_id":"EX-1","order_id":"ORD-1","seq":1,"exec_type":"TRADE","ref_exec_id":null,'
        b'"last_qty":"40","last_px":"187.45","venue":"XNAS",'
        b'"exec_time":"2024-05-01T13:30:00.123456Z"}'
    )
    assert parse_execution(await InputDecoder().decode(value)) == execution


async def test_json_fraction_number_survives_as_float_for_validation_to_refuse() -> None:
    record = await InputDecoder().decode(b'{"last_qty": 0.1}')
    assert isinstance(record["last_qty"], float)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (None, "empty record"),
        (b"", "empty record"),
        (b"\xff\xfe{}", "not a UTF-8 JSON document"),
        (b'{"symbol": "\xc3("}', "not a UTF-8 JSON document"),
        (b"{not json", "not a UTF-8 JSON document"),
        (b"   ", "not a UTF-8 JSON document"),
        (b'{"a": NaN}', "not a UTF-8 JSON document"),
        (b"[1, 2]", "expected a JSON object, got a JSON array"),
        (b'"text"', "expected a JSON object, got a JSON string"),
        (b"42", "expected a JSON object, got a JSON number"),
        (b"true", "expected a JSON object, got a JSON boolean"),
        (b"null", "expected a JSON object, got a JSON null"),
    ],
)
async def test_bad_json_is_a_decode_error(value: bytes | None, says: str) -> None:
    error = await refused(InputDecoder(), value)
    assert says in error.message
    assert str(error) == error.message
    assert isinstance(error, CodecError)
    assert isinstance(error, ExecDistError)
    assert error.retriable is False


# --- Confluent framing ----------------------------------------------------------------------


async def test_framed_avro_execution_round_trips_exactly() -> None:
    execution = sample_execution(last_qty=Decimal("0.00000001"), last_px=Decimal("123456789.5"))
    record = await InputDecoder(lookup=DictSchemaLookup()).decode(
        framed_execution(last_qty=Decimal("0.00000001"), last_px=Decimal("123456789.5"))
    )
    assert isinstance(record["last_px"], Decimal)
    assert record["exec_time"] == datetime(2024, 5, 1, 13, 30, 0, 123456, tzinfo=UTC)
    assert parse_execution(record) == execution


async def test_framed_avro_order_round_trips() -> None:
    order = sample_order(limit_price=None, order_type=OrderType.MARKET)
    value = encode_avro(ORDER_SCHEMA_ID, "order", order.to_dict())
    assert parse_order(await InputDecoder(lookup=DictSchemaLookup()).decode(value)) == order


async def test_header_carries_magic_byte_and_big_endian_id() -> None:
    value = encode_avro(0x01020304, "execution", sample_execution().to_dict())
    assert value[:5] == b"\x00\x01\x02\x03\x04"
    lookup = DictSchemaLookup({0x01020304: DictSchemaLookup().schemas[EXECUTION_SCHEMA_ID]})
    record = await InputDecoder(lookup=lookup).decode(value)
    assert record["exec_type"] == ExecType.TRADE.value
    assert lookup.calls == [0x01020304]


@pytest.mark.parametrize("length", [1, 2, 3, 4])
async def test_frame_shorter_than_its_header_is_a_decode_error(length: int) -> None:
    lookup = DictSchemaLookup()
    error = await refused(InputDecoder(lookup=lookup), framed_execution()[:length])
    assert f"truncated Confluent frame: {length} bytes" in error.message
    assert lookup.calls == []


async def test_every_truncation_of_the_body_is_a_decode_error() -> None:
    value = framed_execution()
    decoder = InputDecoder(lookup=DictSchemaLookup())
    for length in range(5, len(value)):
        error = await refused(decoder, value[:length])
        assert "schema id 7" in error.message, length


async def test_bytes_after_the_record_are_a_decode_error() -> None:
    error = await refused(InputDecoder(lookup=DictSchemaLookup()), framed_execution() + b"\x00")
    assert "1 bytes left over" in error.message


async def test_body_written_with_another_schema_is_a_decode_error() -> None:
    order_body = encode_avro(EXECUTION_SCHEMA_ID, "order", sample_order().to_dict())
    await refused(InputDecoder(lookup=DictSchemaLookup()), order_body)


async def test_non_record_writer_schema_is_a_decode_error() -> None:
    lookup = DictSchemaLookup({5: "string"})
    error = await refused(InputDecoder(lookup=lookup), b"\x00\x00\x00\x00\x05\x02a")
    assert "not an Avro record schema" in error.message


async def test_unknown_schema_id_is_a_decode_error_naming_the_id() -> None:
    value = b"\x00" + struct.pack(">I", 4242) + b"\x02"
    with pytest.raises(UnknownSchemaId) as caught:
        await InputDecoder(lookup=DictSchemaLookup()).decode(value)
    assert caught.value.schema_id == 4242
    assert "4242" in caught.value.message


async def test_avro_without_a_registry_is_a_decode_error() -> None:
    error = await refused(InputDecoder(), framed_execution())
    assert "no schema registry is configured" in error.message


def test_registry_and_lookup_are_exclusive() -> None:
    with pytest.raises(ValueError, match="not both"):
        InputDecoder(object(), lookup=DictSchemaLookup())  # type: ignore[arg-type]


# --- the schema cache -------------------------------------------------------------------


async def test_schema_is_looked_up_once_per_id() -> None:
    lookup = DictSchemaLookup()
    decoder = InputDecoder(lookup=lookup)
    for _ in range(3):
        await decoder.decode(framed_execution())
    assert lookup.calls == [EXECUTION_SCHEMA_ID]


class GatedLookup(DictSchemaLookup):
    """Holds every lookup until ``gate`` is set, so concurrent misses overlap."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def get_schema(self, schema_id: int) -> ParsedSchema:
        self.calls.append(schema_id)
        await self.gate.wait()
        return self.schemas[schema_id]


async def test_concurrent_misses_for_one_id_share_one_lookup() -> None:
    lookup = GatedLookup()
    decoder = InputDecoder(lookup=lookup)
    pending = [asyncio.create_task(decoder.decode(framed_execution())) for _ in range(20)]
    await asyncio.sleep(0)
    lookup.gate.set()
    records = await asyncio.gather(*pending)
    assert lookup.calls == [EXECUTION_SCHEMA_ID]
    assert all(record == records[0] for record in records)


async def test_a_cancelled_waiter_does_not_cancel_the_shared_lookup() -> None:
    lookup = GatedLookup()
    decoder = InputDecoder(lookup=lookup)
    first = asyncio.create_task(decoder.decode(framed_execution()))
    second = asyncio.create_task(decoder.decode(framed_execution()))
    await asyncio.sleep(0)
    first.cancel()
    lookup.gate.set()
    assert (await second)["exec_id"] == "EX-1"
    assert first.cancelled()
    assert lookup.calls == [EXECUTION_SCHEMA_ID]


class FlakyLookup(DictSchemaLookup):
    """Unavailable for the first ``failures`` lookups, then answers."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def get_schema(self, schema_id: int) -> ParsedSchema:
        self.calls.append(schema_id)
        if len(self.calls) <= self.failures:
            raise RegistryUnavailable("registry restarting")
        return self.schemas[schema_id]


async def test_registry_unavailable_is_retriable_not_a_decode_error_and_not_cached() -> None:
    lookup = FlakyLookup(failures=1)
    decoder = InputDecoder(lookup=lookup)
    with pytest.raises(RegistryUnavailable) as caught:
        await decoder.decode(framed_execution())
    assert caught.value.retriable is True
    assert not isinstance(caught.value, DecodeError)
    assert (await decoder.decode(framed_execution()))["seq"] == 1
    assert lookup.calls == [EXECUTION_SCHEMA_ID, EXECUTION_SCHEMA_ID]


async def test_unknown_id_is_remembered_for_a_while() -> None:
    now = [100.0]
    lookup = DictSchemaLookup({})
    decoder = InputDecoder(lookup=lookup, unknown_id_ttl_s=30, clock=lambda: now[0])
    for _ in range(3):
        with pytest.raises(UnknownSchemaId):
            await decoder.decode(framed_execution())
    assert lookup.calls == [EXECUTION_SCHEMA_ID]
    now[0] += 31
    lookup.schemas[EXECUTION_SCHEMA_ID] = DictSchemaLookup().schemas[EXECUTION_SCHEMA_ID]
    assert (await decoder.decode(framed_execution()))["exec_id"] == "EX-1"
    assert lookup.calls == [EXECUTION_SCHEMA_ID, EXECUTION_SCHEMA_ID]
