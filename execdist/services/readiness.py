"""When a worker is ready: partitions assigned, tables restored, subscriptions loaded."""

from __future__ import annotations

from typing import Protocol

from execdist.services.subscription_store import SubscriptionStore


class _Engine(Protocol):
    @property
    def ready(self) -> bool: ...


class ReadinessTracker:
    """Ready once partitions are assigned, tables restored and subscriptions loaded."""

    def __init__(self, pipeline: _Engine, subscriptions: SubscriptionStore) -> None:
        self._pipeline = pipeline
        self._subscriptions = subscriptions

    @property
    def ready(self) -> bool:
        return self._pipeline.ready and self._subscriptions.loaded.is_set()
