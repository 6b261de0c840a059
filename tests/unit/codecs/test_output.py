"""encode_json and encode_avro: to_dict() records out as JSON or Confluent-framed Avro."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest
from schema_registry.client import AsyncSchemaRegistryClient

from execdist.codecs import (
    AvroEncoder,
    EncodeError,
    InputDecoder,
    encode_avro,
    encode_json,
    parsed_schema,
)
from execdist.codecs.output import with_sub_seq
from execdist.domain import Confirmation, StatusType
from execdist.domain.model import Anomaly, AnomalyRule
from tests.unit.codecs.fixtures import (
    CONFIRMATION_SCHEMA_ID,
    DictSchemaLookup,
    as_json_ready,
    sample_confirmation,
    sample_execution,
)


def status_event(**changes: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": "evt-1",
        "type": StatusType.OVERFILL.value,
        "source": "worker-1",
        "subscription_id": None,
        "time": "2024-05-01T13:31:00.000000Z",
        "details": {"order_id": "ORD-1", "cum_qty": "120", "nested": {"n": [1, 2]}},
    }
    event.update(changes)
    return event


def test_json_keeps_the_records_key_order_and_values() -> None:
    record = sample_confirmation().to_dict()
    encoded = encode_json(record)
    assert list(orjson.loads(encoded)) == list(record)
    assert orjson.loads(encoded) == record
    assert b'"avg_px":"187.40000001"' in encoded


def test_json_writes_stray_decimals_and_datetimes_canonically() -> None:
    moment = datetime(2024, 5, 1, 15, 0, tzinfo=timezone(timedelta(hours=2)))
    encoded = encode_json({"qty": Decimal("100.000"), "at": moment})
    assert encoded == b'{"qty":"100","at":"2024-05-01T13:00:00.000000Z"}'


@pytest.mark.parametrize("value", [object(), datetime(2024, 5, 1), Decimal("NaN")])
def test_json_refuses_what_is_not_json(value: object) -> None:
    with pytest.raises(EncodeError, match="cannot be written as JSON"):
        encode_json({"x": value})


async def test_avro_confirmation_round_trips_through_the_decoder() -> None:
    confirmation = sample_confirmation()
    value = encode_avro(CONFIRMATION_SCHEMA_ID, "confirmation", confirmation.to_dict())
    record = await InputDecoder(lookup=DictSchemaLookup()).decode(value)
    assert record["cum_qty"] == Decimal("35.00000000")
    assert Confirmation.from_dict(as_json_ready(record)) == confirmation


@pytest.mark.parametrize("rules", [(AnomalyRule.PRICE_DEVIATION,), tuple(AnomalyRule)])
async def test_avro_flagged_confirmation_round_trips_with_its_anomaly_and_sub_seq(
    rules: tuple[AnomalyRule, ...],
) -> None:
    anomaly = Anomaly(rules, {"symbol_vwap": "187.45", "deviation_bps": "612.5"})
    confirmation = replace(sample_confirmation(), anomaly=anomaly)
    value = with_sub_seq(
        encode_avro(CONFIRMATION_SCHEMA_ID, "confirmation", confirmation.to_dict()), 300
    )
    record = await InputDecoder(lookup=DictSchemaLookup()).decode(value)
    assert record["anomaly"] == {
        "rules": [rule.value for rule in rules],
        "details": anomaly.details,
    }
    assert record["sub_seq"] == 300
    assert Confirmation.from_dict(as_json_ready(record)) == confirmation


async def test_avro_status_event_carries_details_as_json_text() -> None:
    value = encode_avro(3, "status_event", status_event())
    record = await InputDecoder(lookup=DictSchemaLookup({3: parsed_schema("status_event")})).decode(
        value
    )
    assert isinstance(record["details"], str)
    assert orjson.loads(record["details"]) == status_event()["details"]
    assert record["type"] == "OVERFILL"
    assert record["time"] == datetime(2024, 5, 1, 13, 31, tzinfo=UTC)


def test_avro_status_event_details_may_be_given_as_json_object_text() -> None:
    as_object = encode_avro(3, "status_event", status_event())
    as_text = encode_avro(
        3, "status_event", status_event(details=orjson.dumps(status_event()["details"]).decode())
    )
    assert as_object == as_text


@pytest.mark.parametrize("details", ["[1]", "not json", 5, None])
def test_avro_status_event_details_must_be_an_object(details: object) -> None:
    with pytest.raises(EncodeError, match=re.escape("status_event.details")):
        encode_avro(3, "status_event", status_event(details=details))


def test_avro_accepts_domain_values_as_well_as_json_ready_ones() -> None:
    execution = sample_execution()
    raw = {
        "exec_id": "EX-1",
        "order_id": "ORD-1",
        "seq": 1,
        "exec_type": execution.exec_type,
        "ref_exec_id": None,
        "last_qty": execution.last_qty,
        "last_px": execution.last_px,
        "venue": "XNAS",
        "exec_time": execution.exec_time,
    }
    assert encode_avro(1, "execution", raw) == encode_avro(1, "execution", execution.to_dict())


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("last_px", "187.123456789", "does not fit Avro decimal(26,8) without rounding"),
        ("last_px", "1" * 19, "does not fit Avro decimal(26,8)"),
        ("last_px", "abc", "is not a decimal"),
        ("last_px", "Infinity", "is not a finite decimal"),
        ("last_px", 1.5, "expected a decimal string, got float"),
        ("exec_time", "2024-05-01T13:30:00", "has no timezone"),
        ("exec_time", "yesterday", "is not an ISO-8601 time"),
        ("exec_type", "FILL", "does not fit the execution schema"),
        ("seq", 2**64, "does not fit the execution schema"),
        ("venue", None, "does not fit the execution schema"),
    ],
)
def test_avro_refuses_values_that_do_not_fit(field: str, value: object, says: str) -> None:
    record = sample_execution().to_dict()
    record[field] = value
    with pytest.raises(EncodeError, match=re.escape(says)):
        encode_avro(1, "execution", record)


def test_avro_accepts_values_at_the_bounds() -> None:
    record = sample_execution().to_dict()
    record["last_px"] = "9" * 18 + "." + "9" * 8
    record["last_qty"] = "1.500000000"  # trailing zeros beyond the scale are not rounding
    encode_avro(1, "execution", record)


def test_avro_refuses_missing_and_unknown_fields() -> None:
    record = sample_execution().to_dict()
    del record["venue"]
    with pytest.raises(EncodeError, match="missing the field 'venue'"):
        encode_avro(1, "execution", record)
    record = {**sample_execution().to_dict(), "colour": "red"}
    with pytest.raises(EncodeError, match="lacks: colour"):
        encode_avro(1, "execution", record)


def test_avro_fills_a_missing_nullable_field_with_its_default() -> None:
    record = sample_execution().to_dict()
    del record["ref_exec_id"]
    assert encode_avro(1, "execution", record) == encode_avro(
        1, "execution", sample_execution().to_dict()
    )


@pytest.mark.parametrize("schema_id", [-1, 2**32])
def test_schema_id_must_fit_the_header(schema_id: int) -> None:
    with pytest.raises(ValueError, match="4-byte header"):
        encode_avro(schema_id, "execution", sample_execution().to_dict())


async def test_unknown_schema_name_fails_before_any_registry_request() -> None:
    encoder = AvroEncoder(AsyncSchemaRegistryClient("http://127.0.0.1:9/"))
    with pytest.raises(ValueError, match="unknown schema 'trade'"):
        await encoder.encode("orders-value", "trade", {})
