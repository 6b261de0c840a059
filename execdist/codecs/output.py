"""Records -> output bytes: JSON, or Avro in the Confluent wire format.

Both take the JSON-ready dicts the domain builds (``Confirmation.to_dict()`` and friends), so the
JSON and Avro outputs of one record are made from the same values. For Avro the dict is
converted back field by field, driven by the schema: decimal strings become ``Decimal`` at the
schema's scale (refusing any value that would need rounding or does not fit the precision), ISO
time strings become aware ``datetime``, enums pass as their symbol, ``None`` stays ``None`` for
nullable fields, and a string field marked ``"contentMediaType": "application/json"`` (the
StatusEvent's ``details``) takes an object and carries its JSON text.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Context, Decimal, Inexact, InvalidOperation
from enum import Enum
from functools import cache, partial
from typing import Any

import fastavro
import orjson
from schema_registry.client import AsyncSchemaRegistryClient

from execdist.codecs._load_once import LoadOnceCache
from execdist.codecs.errors import EncodeError
from execdist.codecs.framing import frame
from execdist.codecs.registry import register_schema
from execdist.codecs.schemas import parsed_schema, raw_schema
from execdist.domain.model import format_decimal, format_time

__all__ = [
    "SUB_SEQ_HEADER",
    "AvroEncoder",
    "avro_body",
    "encode_avro",
    "encode_json",
    "with_sub_seq",
]

JSON_MEDIA_TYPE = "application/json"

_Convert = Callable[[object], object]


def encode_json(record: Mapping[str, object]) -> bytes:
    """UTF-8 JSON for a JSON-ready record, keys in the record's order.

    A stray ``Decimal`` or ``datetime`` is written in the domain's canonical form
    (``format_decimal`` / ``format_time``) rather than refused, so it reads the same as if it
    had been formatted by ``to_dict``; anything else that is not JSON is an :class:`EncodeError`.
    """
    try:
        return orjson.dumps(
            record if isinstance(record, dict) else dict(record),
            default=_json_default,
            option=orjson.OPT_PASSTHROUGH_DATETIME,
        )
    except orjson.JSONEncodeError as exc:
        raise EncodeError(f"record cannot be written as JSON: {exc}") from exc


class AvroEncoder:
    """Encodes records as Confluent-framed Avro, registering each schema once per subject.

    ``await encode(subject, schema_name, record)`` registers ``schemas/<schema_name>.avsc`` under
    ``subject`` on first use (concurrent first uses share one registration) and caches the id;
    the hot path can take the id from :meth:`schema_id` and frame a body written once with
    :func:`avro_body`. Raises :class:`EncodeError` for a record that does not fit its
    schema or a schema the registry refuses, and
    :class:`~execdist.codecs.errors.RegistryUnavailable` when the registry cannot answer now.
    """

    def __init__(self, registry: AsyncSchemaRegistryClient) -> None:
        self._registry = registry
        self._ids: LoadOnceCache[tuple[str, str], int] = LoadOnceCache()

    async def schema_id(self, subject: str, schema_name: str) -> int:
        """The id of ``schema_name`` under ``subject``, registering it the first time."""
        known = self._ids.peek((subject, schema_name))
        if known is not None:
            return known
        schema = raw_schema(schema_name)  # fails fast on an unknown name, before any request
        return await self._ids.get(
            (subject, schema_name), lambda: register_schema(self._registry, subject, schema)
        )

    async def encode(self, subject: str, schema_name: str, record: Mapping[str, object]) -> bytes:
        """``record`` (a ``to_dict()``-style dict) as Confluent-framed Avro under ``subject``."""
        return encode_avro(await self.schema_id(subject, schema_name), schema_name, record)


def encode_avro(schema_id: int, schema_name: str, record: Mapping[str, object]) -> bytes:
    """``record`` converted to Avro types, written with ``schemas/<schema_name>.avsc``, framed."""
    return frame(schema_id, avro_body(schema_name, record))


def avro_body(schema_name: str, record: Mapping[str, object]) -> bytes:
    """``record`` as Avro with ``schemas/<schema_name>.avsc``, without the frame: the same
    bytes under every subject that registered that schema, so one confirmation is written
    once for all the Avro subscriptions it reaches (:func:`frame` adds each one's id)."""
    converted = _record_converter(schema_name)(record)
    body = io.BytesIO()
    try:
        fastavro.schemaless_writer(body, parsed_schema(schema_name), converted)
    except (KeyError, OverflowError, TypeError, ValueError) as exc:
        raise EncodeError(
            f"record does not fit the {schema_name} schema: {type(exc).__name__}: {exc}"
        ) from exc
    return body.getvalue()


@cache
def _record_converter(schema_name: str) -> Callable[[Mapping[str, object]], dict[str, object]]:
    schema = raw_schema(schema_name)
    fields: list[tuple[str, _Convert, bool, object]] = [
        (
            field["name"],
            _field_converter(schema_name, field),
            "default" in field,
            field.get("default"),
        )
        for field in schema["fields"]
    ]
    known = frozenset(name for name, *_ in fields)

    def convert(record: Mapping[str, object]) -> dict[str, object]:
        unknown = [key for key in record if key not in known]
        if unknown:
            raise EncodeError(
                f"record has fields the {schema_name} schema lacks: {', '.join(map(str, unknown))}"
            )
        converted: dict[str, object] = {}
        for name, convert_field, has_default, default in fields:
            if name in record:
                converted[name] = convert_field(record[name])
            elif has_default:
                converted[name] = default
            else:
                raise EncodeError(f"{schema_name} record is missing the field {name!r}")
        return converted

    return convert


def _field_converter(schema_name: str, field: dict[str, Any]) -> _Convert:
    where = f"{schema_name}.{field['name']}"
    if field.get("contentMediaType") == JSON_MEDIA_TYPE:
        return partial(_to_json_text, where)
    return _type_converter(where, field["type"])


def _type_converter(where: str, avro_type: Any) -> _Convert:
    if isinstance(avro_type, list):
        branches = [branch for branch in avro_type if branch != "null"]
        if len(branches) == 1:
            return partial(_or_none, _type_converter(where, branches[0]))
        return _unchanged
    if isinstance(avro_type, dict):
        logical = avro_type.get("logicalType")
        if logical == "decimal":
            scale = int(avro_type.get("scale", 0))
            context = Context(prec=int(avro_type["precision"]), traps=[Inexact, InvalidOperation])
            return partial(_to_decimal, where, scale, context)
        if logical in ("timestamp-micros", "timestamp-millis"):
            return partial(_to_datetime, where)
        if avro_type.get("type") == "enum":
            return _to_symbol
    return _unchanged


def _unchanged(value: object) -> object:
    return value


def _or_none(convert: _Convert, value: object) -> object:
    return None if value is None else convert(value)


def _to_symbol(value: object) -> object:
    return value.value if isinstance(value, Enum) else value


def _to_decimal(where: str, scale: int, context: Context, value: object) -> Decimal:
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, str):
        try:
            number = Decimal(value)
        except InvalidOperation as exc:
            raise EncodeError(f"{where}: {value!r} is not a decimal") from exc
    elif isinstance(value, int) and not isinstance(value, bool):
        number = Decimal(value)
    else:
        raise EncodeError(f"{where}: expected a decimal string, got {type(value).__name__}")
    if not number.is_finite():
        raise EncodeError(f"{where}: {value!r} is not a finite decimal")
    try:
        return number.quantize(Decimal(1).scaleb(-scale), context=context)
    except (Inexact, InvalidOperation) as exc:
        raise EncodeError(
            f"{where}: {value} does not fit Avro decimal({context.prec},{scale}) without rounding"
        ) from exc


def _to_datetime(where: str, value: object) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as exc:
            raise EncodeError(f"{where}: {value!r} is not an ISO-8601 time") from exc
    else:
        raise EncodeError(f"{where}: expected an ISO-8601 time string, got {type(value).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise EncodeError(f"{where}: {value!r} has no timezone")
    return moment


def _to_json_text(where: str, value: object) -> str:
    if isinstance(value, str):
        text = value
        try:
            is_object = isinstance(orjson.loads(text), dict)
        except orjson.JSONDecodeError:
            is_object = False
        if not is_object:
            raise EncodeError(f"{where}: a string value must be the text of a JSON object")
        return text
    if not isinstance(value, Mapping):
        raise EncodeError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return encode_json(value).decode("utf-8")


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return format_decimal(value)
    if isinstance(value, datetime):
        return format_time(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


SUB_SEQ_HEADER = "execdist.sub_seq"
"""The Kafka header that carries a subscriber record's ``sub_seq`` (decimal ASCII)."""


def with_sub_seq(value: bytes, sub_seq: int) -> bytes:
    """A subscriber record's bytes with its ``sub_seq`` as the last field.

    JSON: ``,"sub_seq":n`` before the closing brace. Avro (Confluent-framed, the confirmation
    schema, whose last field ``sub_seq`` is a long with default 0): the value was encoded with
    the default, so its last byte is the zig-zag varint of 0, which is replaced by that of
    ``sub_seq``. A record is numbered after it was encoded, by whichever worker numbers its
    subscription, without decoding it again.
    """
    if value[:1] == b"\x00":
        if value[-1:] != b"\x00":
            raise EncodeError("an Avro subscriber record must end with its default sub_seq")
        return value[:-1] + _avro_long(sub_seq)
    if value == b"{}":
        return b'{"sub_seq":%d}' % sub_seq
    return b'%s,"sub_seq":%d}' % (value[:-1], sub_seq)


def _avro_long(n: int) -> bytes:
    """Avro's encoding of a long: zig-zag, then a little-endian base-128 varint."""
    zigzag = (n << 1) ^ (n >> 63)
    out = bytearray()
    while zigzag > 0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)
