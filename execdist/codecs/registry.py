"""The schema-registry seam: looking up writer schemas by id and registering ours.

:class:`SchemaLookup` is what :class:`~execdist.codecs.input.InputDecoder` needs from a registry;
:class:`RegistrySchemaLookup` is the real one, over python-schema-registry-client's
``AsyncSchemaRegistryClient`` talking to any Confluent-compatible API (Confluent, or Apicurio's
``/apis/ccompat/v7``).

Why the lookup sends its own ``GET /schemas/ids/{id}`` through ``client.request`` rather than
calling ``client.get_by_id``: that method cannot tell "no such id" from "the registry is down" well
enough for a DLQ decision. It turns every 404 into ``None`` (also a 404 from a wrong base URL,
which would dead-letter every Avro record), raises a bare ``JSONDecodeError`` for a non-JSON body
(a proxy's 502 page), and builds the URL with a helper that drops falsy values, so id 0 requests
``/schemas/ids/`` instead. Registration uses the client's ``register`` unchanged: it works
against Apicurio (checked by tests/integration/test_registry.py); only its errors are mapped.
"""

from __future__ import annotations

import json
from typing import Any, Protocol
from urllib.parse import urljoin

import fastavro
import httpx
from fastavro.schema import SchemaParseException, UnknownType
from schema_registry.client import AsyncSchemaRegistryClient
from schema_registry.client.errors import ClientError

from execdist.codecs.errors import DecodeError, EncodeError, RegistryUnavailable, UnknownSchemaId
from execdist.codecs.schemas import ParsedSchema

__all__ = ["RegistrySchemaLookup", "SchemaLookup", "register_schema"]

_SCHEMA_NOT_FOUND = 40403
"""Confluent's error code for an unknown schema id; Apicurio's ccompat API uses it too."""
_RETRIABLE_STATUS = frozenset({408, 425, 429})


class SchemaLookup(Protocol):
    """Where Avro writer schemas come from, by the id in the Confluent frame."""

    async def get_schema(self, schema_id: int) -> ParsedSchema:
        """The parsed writer schema for ``schema_id``.

        Raises :class:`~execdist.codecs.errors.DecodeError` (usually
        :class:`~execdist.codecs.errors.UnknownSchemaId`) when the id can never give a usable
        Avro schema, and :class:`~execdist.codecs.errors.RegistryUnavailable` when the registry
        cannot answer now.
        """
        ...


class RegistrySchemaLookup:
    """:class:`SchemaLookup` over a Confluent-compatible registry; the decoder does the caching."""

    def __init__(self, client: AsyncSchemaRegistryClient) -> None:
        self._client = client

    @property
    def base_url(self) -> str:
        """The registry API base URL, for messages."""
        return str(self._client.url_manager.url)

    async def get_schema(self, schema_id: int) -> ParsedSchema:
        """Fetch and parse the writer schema; see :meth:`SchemaLookup.get_schema`."""
        url = urljoin(self.base_url, f"schemas/ids/{schema_id}")
        try:
            response = await self._client.request(url, method="GET")
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(
                f"schema registry {self.base_url} could not be reached to fetch schema id "
                f"{schema_id}: {type(exc).__name__}: {exc}"
            ) from exc
        body = _json_body(response)
        if response.status_code == 404 and _error_code(body) == _SCHEMA_NOT_FOUND:
            raise UnknownSchemaId(
                schema_id, f"schema id {schema_id} is not registered in {self.base_url}"
            )
        if not response.is_success or not isinstance(body, dict):
            # Any other answer says nothing about this record (a wrong URL, bad credentials, a
            # restarting registry), so it must not dead-letter it.
            raise RegistryUnavailable(
                f"schema registry {self.base_url} answered HTTP {response.status_code} to "
                f"GET {url}: {_excerpt(response.text)}"
            )
        return _parse_writer_schema(schema_id, body)


async def register_schema(
    client: AsyncSchemaRegistryClient, subject: str, schema: dict[str, Any]
) -> int:
    """Register ``schema`` (Avro, as a JSON-ready dict) under ``subject``; return its id.

    Idempotent: the registry returns the existing id for a schema already registered.
    Raises :class:`RegistryUnavailable` when the registry cannot answer now and
    :class:`EncodeError` when it refuses the schema (incompatible, invalid, not allowed).
    """
    try:
        schema_id = await client.register(subject, schema)
    except httpx.HTTPError as exc:
        raise RegistryUnavailable(
            f"schema registry {client.url_manager.url} could not be reached to register "
            f"subject {subject!r}: {type(exc).__name__}: {exc}"
        ) from exc
    except ClientError as exc:
        code = exc.http_code
        detail = f"{exc.message} (HTTP {code}): {_excerpt(str(exc.server_traceback))}"
        if code is None or code >= 500 or code in _RETRIABLE_STATUS:
            raise RegistryUnavailable(
                f"schema registry failed registering subject {subject!r}: {detail}"
            ) from exc
        raise EncodeError(
            f"schema registry refused schema {schema.get('name')!r} under subject "
            f"{subject!r}: {detail}"
        ) from exc
    except ValueError as exc:  # the client parses every answer as JSON
        raise RegistryUnavailable(
            f"schema registry answered registering subject {subject!r} with a body that is "
            f"not JSON: {exc}"
        ) from exc
    if not isinstance(schema_id, int) or isinstance(schema_id, bool):
        raise RegistryUnavailable(
            f"schema registry answered registering subject {subject!r} with the id "
            f"{schema_id!r}, not an integer"
        )
    return schema_id


def _parse_writer_schema(schema_id: int, body: dict[str, Any]) -> ParsedSchema:
    schema_type = body.get("schemaType", "AVRO")
    if schema_type != "AVRO":
        raise DecodeError(
            f"schema id {schema_id} is a {schema_type} schema; only Avro records are accepted"
        )
    text = body.get("schema")
    if not isinstance(text, str):
        raise DecodeError(f"schema id {schema_id}: the registry answer has no schema text")
    try:
        return fastavro.parse_schema(json.loads(text), named_schemas={})
    except (ValueError, TypeError, KeyError, SchemaParseException, UnknownType) as exc:
        raise DecodeError(
            f"schema id {schema_id} is not a valid Avro schema: {type(exc).__name__}: {exc}"
        ) from exc


def _json_body(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return None


def _error_code(body: object) -> object:
    return body.get("error_code") if isinstance(body, dict) else None


def _excerpt(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
