"""The errors the wire codecs raise.

The tree, below the project's one base::

    ExecDistError
    └── CodecError               bytes <-> records went wrong; ``retriable`` says whether to retry
        ├── DecodeError          these input bytes can never be decoded (DLQ: DECODE_ERROR)
        │   └── UnknownSchemaId  a Confluent frame names a schema id the registry does not know
        ├── EncodeError          an output record does not fit its schema, or the registry
        │                        refused the schema (a bug or a configuration error)
        └── RegistryUnavailable  the schema registry could not answer now; retriable, so the
                                 record must NOT go to the DLQ: retry it or stop and alert

``RegistryUnavailable`` is deliberately not a ``DecodeError``: an outage says nothing about the
record, and dead-lettering every Avro record during a registry restart would lose traffic.
"""

from __future__ import annotations

from execdist.domain.errors import ExecDistError

__all__ = [
    "CodecError",
    "DecodeError",
    "EncodeError",
    "RegistryUnavailable",
    "UnknownSchemaId",
]


class CodecError(ExecDistError):
    """Base of the codec errors; ``message`` says what was wrong in words a reader can act on."""

    retriable: bool = False
    """True when the same call may succeed later without any change to the record."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class DecodeError(CodecError):
    """The input value is not a decodable record: DLQ it as DECODE_ERROR with ``message``."""


class UnknownSchemaId(DecodeError):
    """The registry answered that the frame's schema id does not exist."""

    def __init__(self, schema_id: int, message: str) -> None:
        super().__init__(message)
        self.schema_id = schema_id


class EncodeError(CodecError):
    """An output record could not be encoded, or its schema could not be registered."""


class RegistryUnavailable(CodecError):
    """The schema registry is unreachable or failing; the same call may succeed later."""

    retriable = True
