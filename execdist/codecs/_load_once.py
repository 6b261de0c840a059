"""A cache whose misses are loaded once, however many callers ask at the same time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["LoadOnceCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LoadOnceCache(Generic[K, V]):
    """Caches successful loads by key; concurrent misses for one key share one load.

    Failures are not cached: the next caller after a failed load starts a new one. The load
    runs as its own task and callers wait through ``asyncio.shield``, so one caller being
    cancelled (a rebalance stopping an agent) does not cancel the load the others wait for.
    """

    def __init__(self) -> None:
        self._values: dict[K, V] = {}
        self._loading: dict[K, asyncio.Task[V]] = {}

    def peek(self, key: K) -> V | None:
        """The cached value, or ``None`` without loading."""
        return self._values.get(key)

    async def get(self, key: K, load: Callable[[], Coroutine[Any, Any, V]]) -> V:
        """The cached value for ``key``, else the result of ``load()`` (shared by all waiters)."""
        if key in self._values:
            return self._values[key]
        task = self._loading.get(key)
        if task is None:
            task = asyncio.create_task(load())
            self._loading[key] = task
            task.add_done_callback(lambda done: self._settle(key, done))
        return await asyncio.shield(task)

    def _settle(self, key: K, task: asyncio.Task[V]) -> None:
        if self._loading.get(key) is task:
            del self._loading[key]
        if task.cancelled():
            return
        # Reading the exception marks it retrieved even if every waiter was cancelled, so a
        # failed load is not reported again as "exception was never retrieved".
        if task.exception() is None:
            self._values[key] = task.result()
