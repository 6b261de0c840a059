"""Wire codecs: input bytes to record mappings, records to output bytes, and the Avro schemas.

* :class:`InputDecoder`  JSON or Confluent-framed Avro -> a mapping for ``parse_order`` /
  ``parse_execution``; writer schemas come from the registry, cached by id
* :func:`encode_json`    a ``to_dict()`` record -> UTF-8 JSON
* :class:`AvroEncoder`   a ``to_dict()`` record -> Confluent-framed Avro, schema registered once
* :func:`avro_body`      the same record's Avro bytes unframed, written once for many subjects
* :mod:`~execdist.codecs.schemas`   ``schemas/*.avsc``, loaded and parsed on first use
* :mod:`~execdist.codecs.registry`  the :class:`SchemaLookup` seam and the registry calls
* :mod:`~execdist.codecs.errors`    DecodeError (dead-letter), RegistryUnavailable (retry), ...
"""

from execdist.codecs.errors import (
    CodecError,
    DecodeError,
    EncodeError,
    RegistryUnavailable,
    UnknownSchemaId,
)
from execdist.codecs.input import InputDecoder, decode_json
from execdist.codecs.output import AvroEncoder, avro_body, encode_avro, encode_json
from execdist.codecs.registry import RegistrySchemaLookup, SchemaLookup, register_schema
from execdist.codecs.schemas import (
    SCHEMA_NAMES,
    ParsedSchema,
    SchemaFilesMissing,
    parsed_schema,
    raw_schema,
)

__all__ = [
    "SCHEMA_NAMES",
    "AvroEncoder",
    "CodecError",
    "DecodeError",
    "EncodeError",
    "InputDecoder",
    "ParsedSchema",
    "RegistrySchemaLookup",
    "RegistryUnavailable",
    "SchemaFilesMissing",
    "SchemaLookup",
    "UnknownSchemaId",
    "avro_body",
    "decode_json",
    "encode_avro",
    "encode_json",
    "parsed_schema",
    "raw_schema",
    "register_schema",
]
