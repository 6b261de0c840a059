"""A subscriber record in the making: a confirmation encoded for one subscription.

Shared by the router (live confirmations) and the backfill (confirmations from history).
"""

from __future__ import annotations

from schema_registry.client import AsyncSchemaRegistryClient

from execdist.agents.sequencing import SubscriberSequencer
from execdist.codecs.output import AvroEncoder, encode_json
from execdist.domain.subscriptions import OutputFormat, Subscription
from execdist.metrics import LabelledChildren, Metrics


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
        json_value: bytes,
        projections: dict[tuple[str, ...], bytes],
    ) -> None:
        """``projections`` caches each projection of this confirmation, shared by the
        subscriptions that ask for the same fields."""
        if subscription.format is OutputFormat.AVRO:
            subject = f"{subscription.topic}-value"
            schema_id = await self._avro.schema_id(subject, "confirmation")
            value = self._avro.encode_with_id(schema_id, "confirmation", body)
        elif subscription.fields is not None:
            projected = projections.get(subscription.fields)
            if projected is None:
                projected = encode_json({name: body[name] for name in subscription.fields})
                projections[subscription.fields] = projected
            value = projected
        else:
            value = json_value
        self._sequencer.deliver(subscription.id, subscription.topic, key, value)
        self._delivered(subscription.id).inc()
