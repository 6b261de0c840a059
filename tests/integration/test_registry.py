"""The codecs against the real schema registry (Apicurio Registry's Confluent-compatible API).

Needs the registry started by ``scripts/infra.sh up``; ``EXECDIST_SCHEMA_REGISTRY_URL`` points at
its ccompat base URL. Every test registers under its own uuid-suffixed subject and deletes it
afterwards, so runs never see each other's schemas.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import cast

import httpx
import pytest
from schema_registry.client import AsyncSchemaRegistryClient

from execdist.agents import subscriber_output
from execdist.agents.sequencing import SubscriberSequencer
from execdist.agents.subscriber_output import Encodings, SubscriberOutput
from execdist.codecs import (
    AvroEncoder,
    DecodeError,
    EncodeError,
    InputDecoder,
    RegistrySchemaLookup,
    RegistryUnavailable,
    UnknownSchemaId,
    avro_body,
    encode_avro,
    encode_json,
    parsed_schema,
    raw_schema,
    register_schema,
)
from execdist.codecs.framing import frame
from execdist.domain import Confirmation, parse_execution
from execdist.domain.subscriptions import CreateRequest, OutputFormat, new_subscription
from execdist.metrics import Metrics
from tests.unit.codecs.fixtures import as_json_ready, sample_confirmation, sample_execution

pytestmark = pytest.mark.integration

REGISTRY_URL = os.environ.get(
    "EXECDIST_SCHEMA_REGISTRY_URL", "http://127.0.0.1:8081/apis/ccompat/v7"
)
UNUSED_SCHEMA_ID = 2**31 - 7  # the registry numbers its schemas from 1 upwards


@pytest.fixture
async def registry() -> AsyncIterator[AsyncSchemaRegistryClient]:
    try:
        async with httpx.AsyncClient(timeout=5) as probe:
            (await probe.get(f"{REGISTRY_URL.rstrip('/')}/subjects")).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.fail(
            f"no schema registry answers at {REGISTRY_URL} ({exc!r}); start it with "
            "`scripts/infra.sh up` or point EXECDIST_SCHEMA_REGISTRY_URL at one"
        )
    yield AsyncSchemaRegistryClient(REGISTRY_URL)


@pytest.fixture
async def subject(registry: AsyncSchemaRegistryClient) -> AsyncIterator[str]:
    name = f"execdist-test-{uuid.uuid4().hex}-value"
    yield name
    await registry.delete_subject(name)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/apis/ccompat/v7"


async def test_client_registers_and_fetches_by_id_against_this_registry(
    registry: AsyncSchemaRegistryClient, subject: str
) -> None:
    schema_id = await register_schema(registry, subject, raw_schema("execution"))
    assert schema_id == await register_schema(
        AsyncSchemaRegistryClient(REGISTRY_URL), subject, raw_schema("execution")
    )
    fetched = await RegistrySchemaLookup(registry).get_schema(schema_id)
    assert fetched == parsed_schema("execution")
    by_client = await AsyncSchemaRegistryClient(REGISTRY_URL).get_by_id(schema_id)
    assert by_client is not None
    assert by_client.raw_schema == raw_schema("execution")


async def test_execution_round_trips_through_the_registry(
    registry: AsyncSchemaRegistryClient, subject: str
) -> None:
    execution = sample_execution(
        last_qty=Decimal("0.00000001"), last_px=Decimal("987654321012345678.12345678")
    )
    encoder = AvroEncoder(registry)
    value = await encoder.encode(subject, "execution", execution.to_dict())
    schema_id = await encoder.schema_id(subject, "execution")
    assert value[:5] == b"\x00" + struct.pack(">I", schema_id)

    # a fresh client and decoder: the writer schema really comes from the registry
    decoder = InputDecoder(AsyncSchemaRegistryClient(REGISTRY_URL))
    decoded = parse_execution(await decoder.decode(value))
    assert decoded == execution
    assert decoded.last_px == execution.last_px
    assert str(decoded.last_px) == "987654321012345678.12345678"
    assert decoded.exec_time == execution.exec_time
    assert decoded.to_dict() == execution.to_dict()


async def test_confirmation_round_trips_through_the_registry(
    registry: AsyncSchemaRegistryClient, subject: str
) -> None:
    confirmation = sample_confirmation()
    value = await AvroEncoder(registry).encode(subject, "confirmation", confirmation.to_dict())
    record = await InputDecoder(AsyncSchemaRegistryClient(REGISTRY_URL)).decode(value)
    assert Confirmation.from_dict(as_json_ready(record)) == confirmation


async def test_a_body_written_once_and_framed_with_the_id_matches_encode(
    registry: AsyncSchemaRegistryClient, subject: str
) -> None:
    encoder = AvroEncoder(registry)
    record = sample_execution().to_dict()
    framed = await encoder.encode(subject, "execution", record)
    schema_id = await encoder.schema_id(subject, "execution")
    assert frame(schema_id, avro_body("execution", record)) == framed


class CapturedDeliveries:
    """Stands in for the sequencer: keeps each subscriber record it is given."""

    def __init__(self) -> None:
        self.records: dict[str, tuple[str, bytes]] = {}

    def deliver(self, subscription_id: str, topic: str, key: bytes, value: bytes) -> None:
        self.records[subscription_id] = (topic, value)


async def test_a_confirmation_is_written_once_for_all_its_avro_subscriptions(
    registry: AsyncSchemaRegistryClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each Avro subscription's record carries the id its own subject registered, around the
    same body, and the body is written once for all of them."""
    written: list[str] = []

    def counted(schema_name: str, record: Mapping[str, object]) -> bytes:
        written.append(schema_name)
        return avro_body(schema_name, record)

    monkeypatch.setattr(subscriber_output, "avro_body", counted)
    captured = CapturedDeliveries()
    output = SubscriberOutput(cast(SubscriberSequencer, captured), registry, Metrics())
    run = uuid.uuid4().hex[:8]
    subscriptions = [
        new_subscription(
            CreateRequest(name=f"avro-{n}", format=OutputFormat.AVRO),
            subscription_id=f"avro-{run}-{n}",
            token_hash=hashlib.sha256(b"token").hexdigest(),
            now=datetime.now(UTC),
        )
        for n in range(3)
    ]
    confirmation = sample_confirmation()
    body = confirmation.to_dict()
    encodings = Encodings(encode_json(body))
    try:
        for subscription in subscriptions:
            await output.deliver(subscription, b"ORD-1", body, encodings)
        assert written == ["confirmation"]
        decoder = InputDecoder(AsyncSchemaRegistryClient(REGISTRY_URL))
        for subscription in subscriptions:
            topic, value = captured.records[subscription.id]
            assert topic == subscription.topic
            own_id = await AvroEncoder(registry).schema_id(f"{topic}-value", "confirmation")
            assert value[:5] == frame(own_id, b"")
            assert value[5:] == encodings.avro
            decoded = as_json_ready(await decoder.decode(value))
            assert Confirmation.from_dict(decoded) == confirmation
    finally:
        for subscription in subscriptions:
            await registry.delete_subject(f"{subscription.topic}-value")


@pytest.mark.parametrize("schema_id", [UNUSED_SCHEMA_ID, 0])
async def test_unknown_schema_id_is_a_decode_error(
    registry: AsyncSchemaRegistryClient, schema_id: int
) -> None:
    value = b"\x00" + struct.pack(">I", schema_id) + b"\x02"
    with pytest.raises(UnknownSchemaId) as caught:
        await InputDecoder(registry).decode(value)
    assert isinstance(caught.value, DecodeError)
    assert f"schema id {schema_id} is not registered" in caught.value.message


async def test_unreachable_registry_is_retriable_not_a_decode_error() -> None:
    client = AsyncSchemaRegistryClient(closed_port_url())
    value = encode_avro(1, "execution", sample_execution().to_dict())
    with pytest.raises(RegistryUnavailable) as decoding:
        await InputDecoder(client).decode(value)
    assert decoding.value.retriable
    assert not isinstance(decoding.value, DecodeError)
    with pytest.raises(RegistryUnavailable):
        await AvroEncoder(client).encode("execdist-unreachable-value", "execution", {})


async def test_wrong_base_url_is_not_mistaken_for_an_unknown_id(
    registry: AsyncSchemaRegistryClient,
) -> None:
    wrong = REGISTRY_URL.rstrip("/").rsplit("/apis/", 1)[0] + "/apis/no-such-api/v7"
    value = b"\x00" + struct.pack(">I", 1) + b"\x02"
    with pytest.raises(RegistryUnavailable, match="answered HTTP 404"):
        await InputDecoder(AsyncSchemaRegistryClient(wrong)).decode(value)


async def test_schema_the_registry_refuses_is_an_encode_error(
    registry: AsyncSchemaRegistryClient, subject: str
) -> None:
    await register_schema(registry, subject, raw_schema("execution"))
    await registry.update_compatibility("FULL", subject)
    with pytest.raises(EncodeError, match="refused schema 'Confirmation'"):
        await AvroEncoder(registry).encode(subject, "confirmation", sample_confirmation().to_dict())
