"""A subscriber record in the making: a confirmation encoded for one subscription.

Shared by the router (live confirmations) and the backfill (confirmations from history).
"""

from __future__ import annotations

from schema_registry.client import AsyncSchemaRegistryClient

from execdist.agents.sequencing import SubscriberSequencer
from execdist.codecs.framing import frame
from execdist.codecs.output import AvroEncoder, avro_body, encode_json
from execdist.domain.subscriptions import OutputFormat, Subscription
from execdist.metrics import LabelledChildren, Metrics


class Encodings:
    """One confirmation's encodings, each made once and shared by every subscription it
    reaches in that form: its JSON (made by the join), each projection's JSON, its Avro body
    (framed with each subscription's own schema id)."""

    __slots__ = ("avro", "json", "projections")

    def __init__(self, json_value: bytes) -> None:
        self.json = json_value
        self.projections: dict[tuple[str, ...], bytes] = {}
        self.avro: bytes | None = None


class SubscriberOutput:
    """One subscriber record: a confirmation in the subscription's format (JSON, its
    projection, or Avro with the subscription's registered schema), handed to the sequencer,
    which numbers it and writes it to the subscription's topic."""

    def __init__(
        self,
        sequencer: SubscriberSequencer,
        registry: AsyncSchemaRegistryClient,
        metrics: Metrics,
    ) -> None:
        self._sequencer = sequencer
        self._avro = AvroEncoder(registry)
        self._delivered = LabelledChildren(metrics.delivered)

    async def deliver(
        self,
        subscription: Subscription,
        key: bytes,
        body: dict[str, object],
        encodings: Encodings,
    ) -> None:
        """``body`` is the confirmation as a dict; ``encodings`` holds what was encoded of it
        for the subscriptions before this one."""
        if subscription.format is not _AVRO:
            self.deliver_json(subscription, key, body, encodings)
            return
        subject = f"{subscription.topic}-value"
        schema_id = await self._avro.schema_id(subject, "confirmation")
        if encodings.avro is None:
            encodings.avro = avro_body("confirmation", body)
        value = frame(schema_id, encodings.avro)
        self._sequencer.deliver(subscription.id, subscription.topic, key, value)
        self._delivered[subscription.id].inc()

    def deliver_json(
        self,
        subscription: Subscription,
        key: bytes,
        body: dict[str, object],
        encodings: Encodings,
    ) -> None:
        """:meth:`deliver` for a JSON subscription (all fields or its projection), which waits
        for nothing: the router calls it without the cost of a coroutine."""
        fields = subscription.fields
        if fields is None:
            value = encodings.json
        else:
            projected = encodings.projections.get(fields)
            if projected is None:
                projected = encodings.projections[fields] = encode_json(
                    {name: body[name] for name in fields}
                )
            value = projected
        self._sequencer.deliver(subscription.id, subscription.topic, key, value)
        self._delivered[subscription.id].inc()


_AVRO = OutputFormat.AVRO
"""Looked up once: an enum member read from its class costs a descriptor call each time."""
