"""Webhook delivery: a subscription's records POSTed to its URL, in sub_seq order, signed.

The subscription's Kafka topic stays the source of truth: a dispatcher reads it
(``read_committed``) in the webhook's own consumer group, ``<app id>-webhook-<id>``, so the
topic's one partition is dispatched by one worker at a time and moves to another when that
worker dies. A batch (up to :data:`BATCH` records, what is there) is POSTed as a JSON array
with ``X-Execdist-Signature: sha256=<hex HMAC-SHA256 of the body with the secret>``; a 2xx
acknowledges it, and only then is the group's offset committed past it. Anything else (an
error status, a timeout, a refused connection) is retried with exponential backoff, the same
batch with the same bytes, so nothing is reordered or skipped. The group's committed offset
is the webhook's acknowledged ``sub_seq`` (the subscription's status); the last error is
reported with the worker's delivery figures.

Delivery is at least once: a worker that dies after the receiver's 2xx but before the commit
leaves that batch to be POSTed again by the next one, with the same ``sub_seq`` values and
bytes; receivers keep the highest ``sub_seq`` they applied and skip what they have.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from mode import Service

from execdist.codecs.errors import DecodeError, RegistryUnavailable
from execdist.codecs.input import InputDecoder
from execdist.domain.delivery import DeliveryStats
from execdist.domain.subscriptions import Subscription
from execdist.infra import clients
from execdist.relay.hub import json_for_clients
from execdist.services.subscription_store import SubscriptionStore
from execdist.settings import Settings

log = logging.getLogger(__name__)

BATCH = 100
REQUEST_TIMEOUT_S = 5.0
BACKOFF_S = (0.2, 30.0)
"""First and longest wait between two attempts of a batch."""
SIGNATURE_HEADER = "X-Execdist-Signature"


def webhook_group(app_id: str, subscription_id: str) -> str:
    return f"{app_id}-webhook-{subscription_id}"


def signature(secret: str, body: bytes) -> str:
    """The value of :data:`SIGNATURE_HEADER` for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def batch_body(values: list[bytes]) -> bytes:
    """A JSON array of the records' JSON, as they are on the topic."""
    return b"[" + b",".join(values) + b"]"


class WebhookDispatcher(Service):
    """Runs one dispatcher per active webhook subscription on this worker (see the module's
    text); started and stopped as subscriptions come, pause, resume and go."""

    def __init__(
        self,
        settings: Settings,
        store: SubscriptionStore,
        decoder: InputDecoder,
        stats: DeliveryStats,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._settings = settings
        self._store = store
        self._decoder = decoder
        self._stats = stats
        self._dispatchers: dict[str, tuple[Subscription, asyncio.Task[None]]] = {}
        self._http: aiohttp.ClientSession | None = None

    async def on_start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))

    async def on_stop(self) -> None:
        for _, task in self._dispatchers.values():
            task.cancel()
        for _, task in self._dispatchers.values():
            with contextlib.suppress(BaseException):
                await task
        self._dispatchers.clear()
        if self._http is not None:
            await self._http.close()

    @Service.timer(1.0)
    async def _follow_subscriptions(self) -> None:
        wanted = {s.id: s for s in self._store.index if s.delivery is not None and s.is_active}
        for subscription_id, (running, task) in list(self._dispatchers.items()):
            current = wanted.get(subscription_id)
            if current is None or current.delivery != running.delivery or task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                del self._dispatchers[subscription_id]
        for subscription_id, subscription in wanted.items():
            if subscription_id not in self._dispatchers:
                task = asyncio.create_task(self._dispatch(subscription))
                self._dispatchers[subscription_id] = (subscription, task)

    async def _dispatch(self, subscription: Subscription) -> None:
        group = webhook_group(self._settings.app_id, subscription.id)
        consumer = clients.webhook_reader(self._settings, group)
        consumer.subscribe([subscription.topic])
        await consumer.start()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
                for tp, records in batch.items():
                    if records:
                        await self._deliver(subscription, consumer, tp, records)
        except (KafkaError, DecodeError, RegistryUnavailable) as exc:
            # the broker or registry failing, or a record on the topic that is not ours: the
            # dispatcher stops without committing, and the next follow-up restarts it from
            # the last acknowledged batch
            log.warning(
                "webhook of subscription %s stopped (%r); it restarts", subscription.id, exc
            )
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _deliver(
        self,
        subscription: Subscription,
        consumer: AIOKafkaConsumer,
        tp: TopicPartition,
        records: list[ConsumerRecord[Any, Any]],
    ) -> None:
        webhook = subscription.delivery
        assert webhook is not None and self._http is not None
        values = [await json_for_clients(self._decoder, record.value) for record in records]
        body = batch_body(values)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(webhook.secret, body),
        }
        wait = BACKOFF_S[0]
        while True:
            try:
                async with self._http.post(webhook.url, data=body, headers=headers) as response:
                    if 200 <= response.status < 300:
                        break
                    error = f"HTTP {response.status} from {webhook.url}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__} posting to {webhook.url}: {exc}".rstrip(": ")
            self._stats.webhook_failed(subscription.id, error)
            log.warning(
                "webhook of subscription %s: %s; retrying the same batch in %.1f s",
                subscription.id,
                error,
                wait,
                extra={"subscription_id": subscription.id},
            )
            await asyncio.sleep(wait)
            wait = min(wait * 2, BACKOFF_S[1])
            if tp not in consumer.assignment():
                return  # the partition moved on: its new dispatcher POSTs from the last commit
        self._stats.webhook_succeeded(subscription.id)
        try:
            await consumer.commit({tp: records[-1].offset + 1})
        except (CommitFailedError, KafkaError) as exc:
            # the partition moved to another worker, which POSTs from the last commit again
            log.info("webhook of subscription %s: commit refused (%s)", subscription.id, exc)
