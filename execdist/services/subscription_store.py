"""The subscription store every worker keeps in full, fed by a compacted Kafka topic.

Each change (create, update, delete) is one record keyed by subscription id on
``execdist-internal.subscriptions`` (one partition, compacted, so the log keeps the latest
version of each). Issued API tokens (:class:`~execdist.domain.access.ApiToken`, only their
hashes) live on the same topic under ``token:<token id>``; a colon cannot be part of a
subscription id (it is part of a topic name), so the two kinds of key never meet. Revoking a
token writes its tombstone.

Every worker reads the topic from the start and follows it, so a change made on any worker
(a token issued or revoked included) is in force on all of them within the fetch wait (about
100 ms) and survives restarts of every worker. The log order decides conflicts the same way
on every worker: a record that would give a name to a second subscription is skipped.

Every write is a Kafka transaction of the worker's store producer (its transactional id is
kept in the worker's data folder), and a write may carry records for other topics with it
(:class:`Companion`): a subscription's audit entry and its status event commit or abort with
the change. The followers read ``read_committed``, so an aborted change is never applied.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from mode import Service

from execdist import topics
from execdist.domain.access import ApiToken, Principal, subscription_principal
from execdist.domain.errors import ExecDistError
from execdist.domain.routing import SubscriptionIndex
from execdist.domain.subscriptions import Subscription, hash_token, token_matches
from execdist.infra import clients
from execdist.services.follower import EndOffsets, follow_from_start
from execdist.settings import Settings

log = logging.getLogger(__name__)

TOKEN_KEY_PREFIX = "token:"
"""Keys of issued tokens on the subscriptions topic."""

Listener = Callable[[Subscription | None, Subscription | None], None]
"""Called with (before, after) for every change applied; ``after`` is None on delete."""


@dataclass(frozen=True)
class Companion:
    """A record written in the same transaction as a change to the store."""

    topic: str
    key: bytes
    value: bytes


class NotLoaded(ExecDistError):
    """The worker has not read every subscription yet; answer 503 and let the client retry."""

    retriable = True


class SubscriptionStore(Service):
    """All subscriptions, their routing index, the issued tokens and the lookup of every
    token's principal, kept in step with the topic."""

    def __init__(self, settings: Settings, transactional_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._settings = settings
        self._transactional_id = transactional_id
        self._writing = asyncio.Lock()
        """A producer has one transaction open at a time; concurrent requests take turns."""
        self.index = SubscriptionIndex()
        self._by_id: dict[str, Subscription] = {}
        self._id_by_name: dict[str, str] = {}
        self._id_by_token_hash: dict[str, str] = {}
        self._api_tokens: dict[str, ApiToken] = {}
        self._api_token_by_hash: dict[str, str] = {}
        self._applied = -1
        self._changed = asyncio.Condition()
        self.loaded = asyncio.Event()
        self.listeners: list[Listener] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._ends = EndOffsets(settings, read_committed=True)
        self._producer: AIOKafkaProducer | None = None
        self._tp = TopicPartition(topics.SUBSCRIPTIONS, 0)

    # ---- lifecycle --------------------------------------------------------------------------

    async def on_start(self) -> None:
        self._producer = clients.store_producer(self._settings, self._transactional_id)
        await self._producer.start()
        await self._ends.start()
        self._consumer, self._tp = await follow_from_start(
            self._settings, topics.SUBSCRIPTIONS, read_committed=True
        )
        self.add_future(self._follow())

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        await self._ends.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def _follow(self) -> None:
        assert self._consumer is not None
        end = await self._ends.of(self._tp)
        if end == 0:
            self.loaded.set()
        while not self.should_stop:
            batch = await self._consumer.getmany(self._tp, timeout_ms=200)
            records = batch.get(self._tp, [])
            for record in records:
                self._apply(record.key, record.value)
                self._applied = record.offset
            # the position also moves past what read_committed does not return (aborted
            # records, transaction markers), which caught_up() must count as read
            position = await self._consumer.position(self._tp)
            if position >= end:
                self.loaded.set()
            if records or position - 1 > self._applied:
                async with self._changed:
                    self._applied = max(self._applied, position - 1)
                    self._changed.notify_all()

    # ---- applying the log ------------------------------------------------------------------

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        if key.startswith(TOKEN_KEY_PREFIX.encode()):
            self._apply_token(key[len(TOKEN_KEY_PREFIX) :].decode(), value)
            return
        subscription_id = key.decode()
        before = self._by_id.get(subscription_id)
        if value is None:
            if before is not None:
                self._forget(before)
                self._notify(before, None)
            return
        after = Subscription.from_dict(orjson.loads(value))
        owner = self._id_by_name.get(after.name)
        if owner is not None and owner != subscription_id:
            log.info(
                "skipping %s: name %r already belongs to %s", subscription_id, after.name, owner
            )
            return
        if before is not None:
            self._forget(before)
        self._by_id[after.id] = after
        self._id_by_name[after.name] = after.id
        self._id_by_token_hash[after.token_hash] = after.id
        self.index.upsert(after)
        self._notify(before, after)

    def _apply_token(self, token_id: str, value: bytes | None) -> None:
        before = self._api_tokens.pop(token_id, None)
        if before is not None:
            self._api_token_by_hash.pop(before.token_hash, None)
        if value is None:
            return
        after = ApiToken.from_dict(orjson.loads(value))
        self._api_tokens[token_id] = after
        self._api_token_by_hash[after.token_hash] = token_id

    def _forget(self, subscription: Subscription) -> None:
        self._by_id.pop(subscription.id, None)
        if self._id_by_name.get(subscription.name) == subscription.id:
            del self._id_by_name[subscription.name]
        self._id_by_token_hash.pop(subscription.token_hash, None)
        self.index.remove(subscription.id)

    def _notify(self, before: Subscription | None, after: Subscription | None) -> None:
        for listener in self.listeners:
            listener(before, after)

    async def caught_up(self, timeout: float = 10.0) -> None:
        """Return once everything committed to the topic before the call is applied here: a
        change made on another worker a moment ago is then seen, as a change made here is.
        :class:`NotLoaded` if that takes longer than ``timeout``."""
        if self._consumer is None:
            raise NotLoaded("the worker is still starting; retry in a moment")
        # read_committed: the last stable offset, so a transaction still open is not waited for
        end = await self._ends.of(self._tp)
        try:
            async with self._changed:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self._applied >= end - 1), timeout
                )
        except TimeoutError:
            raise NotLoaded(
                "the worker is still reading subscriptions; retry in a moment"
            ) from None

    # ---- reads --------------------------------------------------------------------------------

    def get(self, subscription_id: str) -> Subscription | None:
        return self._by_id.get(subscription_id)

    def all(self) -> list[Subscription]:
        return [self._by_id[key] for key in sorted(self._by_id)]

    def id_for_name(self, name: str) -> str | None:
        return self._id_by_name.get(name)

    def principal_for(self, token: str) -> Principal | None:
        """Who a subscription's token or an issued token stands for, or None if it is neither.

        Only the token's sha256 is looked up, and the match is confirmed in constant time.
        Raises :class:`NotLoaded` while the store is still reading the topic: a valid token
        must not be refused as unknown just because the worker has only started.
        """
        if not self.loaded.is_set():
            raise NotLoaded("the worker is still loading subscriptions; retry in a moment")
        digest = hash_token(token)
        subscription_id = self._id_by_token_hash.get(digest)
        if subscription_id is not None:
            subscription = self._by_id[subscription_id]
            if token_matches(token, subscription.token_hash):
                return subscription_principal(subscription_id)
        token_id = self._api_token_by_hash.get(digest)
        if token_id is not None:
            issued = self._api_tokens[token_id]
            if token_matches(token, issued.token_hash):
                return issued.principal
        return None

    def api_tokens(self) -> list[ApiToken]:
        """Every issued token in force, by id."""
        return [self._api_tokens[key] for key in sorted(self._api_tokens)]

    def api_token(self, token_id: str) -> ApiToken | None:
        return self._api_tokens.get(token_id)

    # ---- writes -------------------------------------------------------------------------------

    async def put(
        self,
        subscription: Subscription,
        companions: Sequence[Companion] = (),
        timeout: float = 10.0,
    ) -> Subscription | None:
        """Write a version, with ``companions`` in the same transaction, and wait until it is
        applied here; returns what is now in force."""
        value = orjson.dumps(subscription.to_dict(include_secret=True))
        await self._write(subscription.id.encode(), value, companions, timeout)
        return self._by_id.get(subscription.id)

    async def delete(
        self, subscription_id: str, companions: Sequence[Companion] = (), timeout: float = 10.0
    ) -> None:
        """Write the subscription's tombstone, with ``companions`` in the same transaction."""
        await self._write(subscription_id.encode(), None, companions, timeout)

    async def put_token(self, token: ApiToken, timeout: float = 10.0) -> None:
        """Store an issued token (its hash) and wait until it is in force here."""
        value = orjson.dumps(token.to_dict(include_secret=True))
        await self._write((TOKEN_KEY_PREFIX + token.id).encode(), value, (), timeout)

    async def revoke_token(self, token_id: str, timeout: float = 10.0) -> None:
        await self._write((TOKEN_KEY_PREFIX + token_id).encode(), None, (), timeout)

    async def _write(
        self, key: bytes, value: bytes | None, companions: Sequence[Companion], timeout: float
    ) -> None:
        async with self._writing:
            offset = await asyncio.wait_for(self._transact(key, value, companions), timeout)
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self._applied >= offset), timeout)

    async def _transact(
        self, key: bytes, value: bytes | None, companions: Sequence[Companion]
    ) -> int:
        """One transaction: the store's record and its companions; the record's offset."""
        producer = self._producer
        assert producer is not None
        try:
            await producer.begin_transaction()
        except KafkaError:
            await self._replace_producer()
            raise
        committed = False
        try:
            sent = await producer.send(topics.SUBSCRIPTIONS, value, key=key)
            for companion in companions:
                await producer.send(companion.topic, companion.value, key=companion.key)
            await producer.commit_transaction()
            committed = True
        finally:
            if not committed:  # failed, or cancelled by the caller's timeout: nothing half-done
                await self._abort()
        return int((await sent).offset)

    async def _abort(self) -> None:
        """Abort the open transaction; a producer that cannot (fenced, or in a fatal state)
        is replaced, so that the next write starts afresh on the same transactional id."""
        producer = self._producer
        assert producer is not None
        try:
            await producer.abort_transaction()
        except KafkaError as exc:
            log.warning("the store's producer could not abort (%r); starting a new one", exc)
            await self._replace_producer()

    async def _replace_producer(self) -> None:
        # init_transactions of the new one, on the same id, ends whatever the old one left open
        if self._producer is not None:
            await self._producer.stop()
        self._producer = clients.store_producer(self._settings, self._transactional_id)
        await self._producer.start()
