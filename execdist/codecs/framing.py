"""The Confluent wire format: magic byte 0, a 4-byte big-endian schema id, then the Avro body."""

from __future__ import annotations

import struct
from typing import Final

__all__ = ["HEADER_SIZE", "MAGIC_BYTE", "MAX_SCHEMA_ID", "frame", "is_framed", "read_header"]

MAGIC_BYTE: Final = 0
HEADER_SIZE: Final = 5
MAX_SCHEMA_ID: Final = 0xFFFF_FFFF
_HEADER: Final = struct.Struct(">BI")


def is_framed(value: bytes) -> bool:
    """Whether ``value`` claims the Confluent format; UTF-8 JSON never starts with a zero byte."""
    return len(value) > 0 and value[0] == MAGIC_BYTE


def read_header(value: bytes) -> int:
    """The schema id of a framed value; the caller has checked ``len(value) >= HEADER_SIZE``."""
    _magic, schema_id = _HEADER.unpack_from(value)
    return int(schema_id)


def frame(schema_id: int, body: bytes) -> bytes:
    """Prefix an Avro body with the Confluent header for ``schema_id``."""
    if not 0 <= schema_id <= MAX_SCHEMA_ID:
        raise ValueError(f"schema id {schema_id} does not fit the 4-byte header")
    return _HEADER.pack(MAGIC_BYTE, schema_id) + body
