"""Creating, changing and deleting subscriptions, and reading their audit: the use cases
behind ``/api/v1/subscriptions``.

Each change starts from everything committed before it (:meth:`SubscriptionStore.caught_up`),
so that its "before" is what the last change left, whichever worker made it. Two changes of
one subscription made at the same moment on two workers are both applied, in log order, and
both audited, each with the state its worker saw before it.

A change is one transaction of the subscription store: the subscription's record on
``execdist-internal.subscriptions``, its audit entry on ``execdist-internal.subscription-audit``
and its status event (SUBSCRIPTION_CREATED, _UPDATED or _DELETED) on ``execdist.status``. A
``read_committed`` reader therefore sees all three or none: a worker that dies in the middle
leaves neither a change nobody announced nor an announcement of a change that never was.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from schema_registry.client import AsyncSchemaRegistryClient

from execdist import topics
from execdist.codecs.output import encode_json
from execdist.codecs.registry import register_schema
from execdist.codecs.schemas import raw_schema
from execdist.domain.access import Principal
from execdist.domain.audit import AuditPage, audit_page, record_change, status_type_of
from execdist.domain.errors import ExecDistError
from execdist.domain.model import status_event
from execdist.domain.subscriptions import (
    CreateRequest,
    OutputFormat,
    PatchRequest,
    Subscription,
    apply_patch,
    hash_token,
    new_subscription,
)
from execdist.infra.kafka_admin import create_topic
from execdist.services.subscription_audit import SubscriptionAudit, audit_record
from execdist.services.subscription_store import Companion, SubscriptionStore
from execdist.settings import Settings

TOKEN_PREFIX = "eds_"
"""Subscription tokens start with this (issued admin and analyst tokens with ``edt_``)."""


class SubscriptionNotFound(ExecDistError):
    """No subscription (and, for the audit, no history) with that id."""


class SubscriptionConflict(ExecDistError):
    """The change collides with another: a name in use, or a concurrent change."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class CreatedSubscription:
    subscription: Subscription
    token: str
    """The subscription's token: returned once, never stored."""


class SubscriptionChanges:
    """The use cases, over the store, the audit and the topics they need."""

    def __init__(
        self,
        settings: Settings,
        store: SubscriptionStore,
        audit: SubscriptionAudit,
        registry: AsyncSchemaRegistryClient,
    ) -> None:
        self._settings = settings
        self._store = store
        self._audit = audit
        self._registry = registry

    def existing(self, subscription_id: str) -> Subscription:
        subscription = self._store.get(subscription_id)
        if subscription is None:
            raise SubscriptionNotFound(f"no subscription {subscription_id!r}")
        return subscription

    async def current(self, subscription_id: str) -> Subscription:
        """The subscription as the last committed change left it."""
        await self._store.caught_up()
        return self.existing(subscription_id)

    async def create(self, request: CreateRequest, actor: Principal) -> CreatedSubscription:
        await self._store.caught_up()
        if self._store.id_for_name(request.name) is not None:
            raise _name_taken(request.name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        subscription = new_subscription(
            request, subscription_id=uuid.uuid4().hex[:16], token_hash=hash_token(token), now=now
        )
        await create_topic(self._settings, subscription.topic, subscription.partitions)
        if subscription.format is OutputFormat.AVRO:
            await register_schema(
                self._registry, f"{subscription.topic}-value", raw_schema("confirmation")
            )
        stored = await self._store.put(
            subscription, self._companions(None, subscription, actor, now)
        )
        if stored is None or stored.id != subscription.id:
            # Another worker gave the name to a subscription of its own first; the log order
            # decided, and this id stays unknown (its audit entry names a subscription that
            # never came into force, and no one was given its id).
            raise _name_taken(request.name)
        return CreatedSubscription(stored, token)

    async def change(
        self, subscription_id: str, patch: PatchRequest, actor: Principal
    ) -> Subscription:
        current = await self.current(subscription_id)
        now = datetime.now(UTC)
        changed = apply_patch(current, patch, now)
        if changed is current:
            return current  # nothing changes, so nothing is recorded or announced
        owner = self._store.id_for_name(changed.name)
        if owner is not None and owner != subscription_id:
            raise _name_taken(changed.name)
        stored = await self._store.put(changed, self._companions(current, changed, actor, now))
        if stored is None or stored.version != changed.version:
            raise SubscriptionConflict("the subscription changed meanwhile; retry")
        return stored

    async def delete(self, subscription_id: str, actor: Principal) -> None:
        current = await self.current(subscription_id)
        now = datetime.now(UTC)
        await self._store.delete(subscription_id, self._companions(current, None, actor, now))

    async def audit(self, subscription_id: str, *, after: int | None, limit: int) -> AuditPage:
        """A page of the subscription's changes, oldest first; it outlives the subscription."""
        entries = await self._audit.entries(subscription_id)
        if not entries and self._store.get(subscription_id) is None:
            raise SubscriptionNotFound(f"no subscription {subscription_id!r}")
        return audit_page(entries, after=after, limit=limit)

    def _companions(
        self,
        before: Subscription | None,
        after: Subscription | None,
        actor: Principal,
        now: datetime,
    ) -> list[Companion]:
        """The audit entry and the status event that go in the change's transaction."""
        entry = record_change(before, after, actor=actor.id, now=now)
        subject = after if after is not None else before
        assert subject is not None
        details: dict[str, object] = {"actor": actor.id, "action": entry.action.value}
        if after is None or before is None:
            details.update(name=subject.name, topic=subject.topic)
        else:
            details.update(version=after.version, status=after.status.value)
        event = status_event(
            event_id=f"{self._settings.worker_id}:{uuid.uuid4().hex}",
            type_=status_type_of(entry.action),
            source=self._settings.worker_id,
            subscription_id=subject.id,
            time=now,
            details=details,
        )
        return [
            audit_record(entry),
            Companion(topics.STATUS, self._settings.worker_id.encode(), encode_json(event)),
        ]


def _name_taken(name: str) -> SubscriptionConflict:
    return SubscriptionConflict(f"a subscription named {name!r} exists", "name")
