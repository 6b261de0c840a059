"""schemas/*.avsc agree with the domain records: same fields, order, types, nullability, symbols.

This is the test that keeps the Avro schemas and the Python records in step. It derives the
expected Avro type of every field from the dataclass annotations, so adding, removing, renaming,
reordering or retyping a field on either side fails here until the other side follows.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from datetime import datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import fastavro
import pytest

from execdist.codecs import SCHEMA_NAMES, SchemaFilesMissing, parsed_schema, raw_schema
from execdist.codecs.schemas import schema_dir, schema_path
from execdist.domain import Confirmation, Execution, Order, StatusType
from execdist.domain.model import Anomaly
from execdist.domain.validation import MAX_FRACTION_DIGITS, MAX_INTEGER_DIGITS

NAMESPACE = "io.execdist.v1"
DECIMAL = {
    "type": "bytes",
    "logicalType": "decimal",
    "precision": MAX_INTEGER_DIGITS + MAX_FRACTION_DIGITS,
    "scale": MAX_FRACTION_DIGITS,
}
TIMESTAMP = {"type": "long", "logicalType": "timestamp-micros"}
ANOMALY = {
    "type": "record",
    "name": "Anomaly",
    "fields": [
        # rule names as strings, not an enum: a reader that predates a new rule still reads it
        {"name": "rules", "type": {"type": "array", "items": "string"}},
        {"name": "details", "type": {"type": "map", "values": "string"}},
    ],
}


class JsonObject:
    """Marker for the StatusEvent's ``details``: a JSON object carried as JSON text."""


# StatusEvent has no domain dataclass (the domain emits StatusNotice, the wiring builds the
# event), so its contract field list is spelled out here, in the contract's order.
STATUS_EVENT_FIELDS: list[tuple[str, Any]] = [
    ("event_id", str),
    ("type", StatusType),
    ("source", str),
    ("subscription_id", str | None),
    ("time", datetime),
    ("details", JsonObject),
]

RECORDS = [("order", Order), ("execution", Execution), ("confirmation", Confirmation)]


def dataclass_fields(record_type: type) -> list[tuple[str, Any]]:
    hints = typing.get_type_hints(record_type)
    return [(field.name, hints[field.name]) for field in dataclasses.fields(record_type)]


def expected_avro_type(python_type: Any) -> Any:
    """The Avro type a field of ``python_type`` must have (docs left out)."""
    if isinstance(python_type, types.UnionType) or typing.get_origin(python_type) is typing.Union:
        others = [arg for arg in typing.get_args(python_type) if arg is not type(None)]
        assert len(others) == 1, f"only Optional unions are mapped, got {python_type}"
        return ["null", expected_avro_type(others[0])]
    if isinstance(python_type, type) and issubclass(python_type, Enum):
        return {
            "type": "enum",
            "name": python_type.__name__,
            "symbols": [member.value for member in python_type],
        }
    mapping: dict[Any, Any] = {
        str: "string",
        int: "long",
        Decimal: DECIMAL,
        datetime: TIMESTAMP,
        JsonObject: "string",
        Anomaly: ANOMALY,
    }
    assert python_type in mapping, f"no Avro mapping for {python_type}"
    return mapping[python_type]


def without_docs(avro_type: Any) -> Any:
    if isinstance(avro_type, list):
        return [without_docs(branch) for branch in avro_type]
    if isinstance(avro_type, dict):
        return {key: without_docs(value) for key, value in avro_type.items() if key != "doc"}
    return avro_type


def assert_schema_matches(schema: dict[str, Any], fields: list[tuple[str, Any]]) -> None:
    assert [field["name"] for field in schema["fields"]] == [name for name, _ in fields]
    for avro_field, (name, python_type) in zip(schema["fields"], fields, strict=True):
        assert without_docs(avro_field["type"]) == expected_avro_type(python_type), name
        nullable = isinstance(avro_field["type"], list) and "null" in avro_field["type"]
        if nullable:
            assert avro_field["type"][0] == "null", f"{name}: null must come first"
            assert "default" in avro_field, f"{name}: a nullable field defaults to null"
            assert avro_field["default"] is None, name
        else:
            assert "default" not in avro_field, f"{name}: a required field has no default"
        assert avro_field.get("doc"), f"{name}: every field is documented"


@pytest.mark.parametrize(("name", "record_type"), RECORDS, ids=[name for name, _ in RECORDS])
def test_record_schema_matches_dataclass(name: str, record_type: type) -> None:
    schema = raw_schema(name)
    assert schema["type"] == "record"
    assert schema["namespace"] == NAMESPACE
    assert schema["name"] == record_type.__name__
    if name == "confirmation":
        # a subscriber record's sub_seq, added later: the last field, with a default so that
        # records written before it are still read (compatible evolution)
        *fields, sub_seq = schema["fields"]
        assert (sub_seq["name"], sub_seq["type"], sub_seq["default"]) == ("sub_seq", "long", 0)
        schema = {**schema, "fields": fields}
    assert_schema_matches(schema, dataclass_fields(record_type))


def test_status_event_schema_matches_contract() -> None:
    schema = raw_schema("status_event")
    assert (schema["namespace"], schema["name"]) == (NAMESPACE, "StatusEvent")
    assert_schema_matches(schema, STATUS_EVENT_FIELDS)
    details = schema["fields"][-1]
    assert details["contentMediaType"] == "application/json"


def test_decimal_schema_is_what_validation_admits() -> None:
    # validation bounds decimals to decimal(26,8) so that every accepted value re-encodes.
    assert (DECIMAL["precision"], DECIMAL["scale"]) == (26, 8)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_schema_parses_with_fastavro(name: str) -> None:
    parsed = parsed_schema(name)
    assert isinstance(parsed, dict)
    assert parsed["name"] == f"{NAMESPACE}.{raw_schema(name)['name']}"


def test_the_schemas_folder_holds_exactly_the_known_schemas() -> None:
    on_disk = sorted(path.stem for path in schema_dir().glob("*.avsc"))
    assert on_disk == sorted(SCHEMA_NAMES)
    assert schema_dir() == Path(__file__).resolve().parents[3] / "schemas"


def test_files_are_valid_json_with_one_record_each() -> None:
    for name in SCHEMA_NAMES:
        document = json.loads(schema_path(name).read_text(encoding="utf-8"))
        assert document == raw_schema(name)
        fastavro.parse_schema(document, named_schemas={})


def test_raw_schema_returns_a_copy() -> None:
    schema = raw_schema("order")
    schema["fields"].clear()
    assert raw_schema("order")["fields"]


def test_unknown_schema_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown schema 'trade'"):
        raw_schema("trade")


def test_missing_schemas_folder_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    import execdist

    monkeypatch.setattr(execdist, "__file__", "/nonexistent/site-packages/execdist/__init__.py")
    with pytest.raises(SchemaFilesMissing, match="editable install"):
        schema_dir()
