"""Input bytes -> a record mapping for ``parse_order`` / ``parse_execution``.

One topic may carry both encodings, told apart by the first byte: a zero byte starts a Confluent
frame (UTF-8 JSON never starts with one), anything else is JSON. The mapping returned holds JSON
values (decimal strings, ISO time strings) or Avro values (``Decimal``, aware ``datetime``,
enum symbols as ``str``); the domain validation accepts both. Avro records are read with the
writer's schema only, so a producer's extra fields pass through and are ignored by validation,
and a missing field is reported by validation with its name.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Annotated

import fastavro
import msgspec
import orjson
from schema_registry.client import AsyncSchemaRegistryClient

from execdist.codecs._load_once import LoadOnceCache
from execdist.codecs.errors import DecodeError, UnknownSchemaId
from execdist.codecs.framing import HEADER_SIZE, is_framed, read_header
from execdist.codecs.registry import RegistrySchemaLookup, SchemaLookup
from execdist.codecs.schemas import ParsedSchema
from execdist.domain.model import ExecType, Execution, Order, OrderType, Side
from execdist.domain.validation import execution_of_json_types, order_of_json_types

__all__ = ["InputDecoder", "decode_json", "read_typed_json"]

_MAX_UNKNOWN_IDS = 1024


class InputDecoder:
    """Decodes input values, resolving Avro writer schemas through the schema registry.

    Give it the registry client (the usual case), or any :class:`SchemaLookup` as ``lookup``
    (tests, or a registry-less deployment with fixed schemas); with neither, Avro input is a
    :class:`DecodeError`. Parsed schemas are cached by id for the life of the decoder; the first
    record with a new id waits for the registry and concurrent records with that id share the
    one request. An id the registry says does not exist is remembered for
    ``unknown_id_ttl_s`` seconds, so a producer sending a bad id does not turn each of its
    records into a registry request.

    Raises :class:`DecodeError` for bytes that are no record (dead-letter them), and
    :class:`~execdist.codecs.errors.RegistryUnavailable` when the registry cannot answer now
    (retry; the record may be fine).
    """

    def __init__(
        self,
        registry: AsyncSchemaRegistryClient | None = None,
        *,
        lookup: SchemaLookup | None = None,
        unknown_id_ttl_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if registry is not None and lookup is not None:
            raise ValueError("give InputDecoder a registry client or a lookup, not both")
        if lookup is None and registry is not None:
            lookup = RegistrySchemaLookup(registry)
        self._lookup = lookup
        self._schemas: LoadOnceCache[int, ParsedSchema] = LoadOnceCache()
        self._unknown: dict[int, tuple[float, DecodeError]] = {}
        self._unknown_ttl = unknown_id_ttl_s
        self._clock = clock

    async def decode(self, value: bytes | None) -> dict[str, object]:
        """The record in ``value``, as a mapping of field name to value."""
        if not value:
            raise DecodeError("empty record")
        if is_framed(value):
            return await self._decode_avro(value)
        return decode_json(value)

    async def writer_schema(self, schema_id: int) -> ParsedSchema:
        """The parsed writer schema for ``schema_id``, from the cache or the registry."""
        cached = self._schemas.peek(schema_id)
        if cached is not None:
            return cached
        remembered = self._unknown.get(schema_id)
        if remembered is not None:
            expires, error = remembered
            if self._clock() < expires:
                if isinstance(error, UnknownSchemaId):
                    raise UnknownSchemaId(schema_id, error.message)
                raise DecodeError(error.message)
            del self._unknown[schema_id]
        lookup = self._lookup
        if lookup is None:
            raise DecodeError(
                f"Avro record with schema id {schema_id}, but no schema registry is configured"
            )
        try:
            return await self._schemas.get(schema_id, lambda: lookup.get_schema(schema_id))
        except DecodeError as exc:
            self._remember_unknown(schema_id, exc)
            raise

    async def _decode_avro(self, value: bytes) -> dict[str, object]:
        if len(value) < HEADER_SIZE:
            raise DecodeError(
                f"truncated Confluent frame: {len(value)} bytes, but the header alone is "
                f"{HEADER_SIZE} (magic byte 0 and a 4-byte schema id)"
            )
        schema_id = read_header(value)
        schema = await self.writer_schema(schema_id)
        if not isinstance(schema, dict) or schema.get("type") != "record":
            raise DecodeError(f"schema id {schema_id} is not an Avro record schema")
        name = schema.get("name")
        body = io.BytesIO(value)
        body.seek(HEADER_SIZE)
        try:
            record = fastavro.schemaless_reader(body, schema, None)
        except (EOFError, IndexError, KeyError, OverflowError, TypeError, ValueError) as exc:
            # fastavro reports a short or corrupt body as any of these; UnicodeDecodeError
            # (a bad string) is a ValueError.
            raise DecodeError(
                f"Avro body of {len(value) - HEADER_SIZE} bytes is truncated or corrupt for "
                f"schema id {schema_id} ({name}): {type(exc).__name__}: {exc}"
            ) from exc
        left_over = len(value) - body.tell()
        if left_over:
            raise DecodeError(
                f"{left_over} bytes left over after the Avro record of schema id {schema_id} "
                f"({name}): the body was not written with that schema"
            )
        if not isinstance(record, dict):
            raise DecodeError(f"schema id {schema_id} did not decode to a record")
        return record

    def _remember_unknown(self, schema_id: int, error: DecodeError) -> None:
        if len(self._unknown) >= _MAX_UNKNOWN_IDS:
            del self._unknown[next(iter(self._unknown))]  # the oldest entry
        self._unknown[schema_id] = (self._clock() + self._unknown_ttl, error)


def decode_json(value: bytes) -> dict[str, object]:
    """A UTF-8 JSON object, or :class:`DecodeError` saying why not.

    Numbers with a fraction come back as ``float`` on purpose: validation refuses them for
    quantities and prices, because a binary float may no longer be the value that was sent.
    """
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not a UTF-8 JSON document: {exc}") from exc
    if not isinstance(parsed, dict):
        raise DecodeError(f"expected a JSON object, got a JSON {_json_kind(parsed)}")
    return parsed


_Integer = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
"""A JSON integer that :func:`decode_json` (orjson) also reads as an integer: it reads wider
ones as floats, which validation refuses, so those take the general path."""


class _ExecutionJson(msgspec.Struct, forbid_unknown_fields=True):
    exec_id: str
    order_id: str
    seq: _Integer
    exec_type: ExecType
    last_qty: str | _Integer
    last_px: str | _Integer
    venue: str
    exec_time: str
    ref_exec_id: str | None = None


class _OrderJson(msgspec.Struct, forbid_unknown_fields=True):
    order_id: str
    account: str
    symbol: str
    side: Side
    quantity: str | _Integer
    order_type: OrderType
    currency: str
    version: _Integer
    event_time: str
    limit_price: str | _Integer | None = None


_read_execution = msgspec.json.Decoder(_ExecutionJson).decode
_read_order = msgspec.json.Decoder(_OrderJson).decode


def read_typed_json(value: bytes | None, *, order: bool) -> Order | Execution | None:
    """The order (``order``) or execution in ``value`` when it is JSON of the contract's shape
    with every field of the type validation accepts: read by msgspec in C, then held to the
    domain's rules (:func:`~execdist.domain.validation.order_of_json_types`,
    :func:`~execdist.domain.validation.execution_of_json_types`), which raise the
    :class:`~execdist.domain.errors.InvalidRecord` the general path would.

    ``None`` for anything else (Avro, an unknown field, a field missing, null or of another
    type, bytes that are not JSON): the general path (:func:`decode_json`, then ``parse_order``
    or ``parse_execution``) reads those and says what is wrong. Unknown fields are sent there
    too, because msgspec skips them unread where orjson refuses some (a number too large for
    a float), and the two paths must take and refuse the same records."""
    if not value or is_framed(value):
        return None
    try:
        record = _read_order(value) if order else _read_execution(value)
    except msgspec.MsgspecError:
        return None
    if isinstance(record, _OrderJson):
        return order_of_json_types(
            record.order_id,
            record.account,
            record.symbol,
            record.side,
            record.quantity,
            record.order_type,
            record.limit_price,
            record.currency,
            record.version,
            record.event_time,
        )
    return execution_of_json_types(
        record.exec_id,
        record.order_id,
        record.seq,
        record.exec_type,
        record.ref_exec_id,
        record.last_qty,
        record.last_px,
        record.venue,
        record.exec_time,
    )


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array"
