"""Queries across the book: the use cases behind ``GET /api/v1/orders`` and
``GET /api/v1/positions``.

Any worker answers. It scatters the query to the owner of every partition (itself for the
partitions it holds, the others found in the workers' reports), each owner reads its own
RocksDB tables (:class:`BookReader`), and the receiving worker merges the answers into one page
(:func:`~execdist.domain.book.merge_pages`). Owners are asked over
``/internal/v1/book/{orders,positions}`` with the caller's own token, so each worker authorises
the request itself. Whatever has not answered when ``EXECDIST_QUERY_DEADLINE_S`` is up, and
every partition without a ready owner, is listed in ``missing_partitions`` and makes the
answer ``"partial": true``: an answer is never silently short.

Reads see committed state only (RocksDB holds nothing else) and are made on the event loop in
chunks of :data:`SCAN_CHUNK` keys with a yield in between, so a scan never holds the loop for
long and never reads a partition's database across a rebalance that closes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Final, Protocol

import aiohttp
import orjson

from execdist.domain.book import (
    BookQuery,
    Listing,
    Page,
    PartialPage,
    merge_pages,
    order_item,
    position_item,
)
from execdist.domain.errors import InvalidState
from execdist.services.worker_reports import WorkerReports
from execdist.settings import Settings
from execdist.tables.store import PartitionedState

log = logging.getLogger(__name__)

SCAN_CHUNK: Final = 256
"""Keys read between two yields to the event loop."""
INTERNAL_PATHS: Final = {
    Listing.ORDERS: "/internal/v1/book/orders",
    Listing.POSITIONS: "/internal/v1/book/positions",
}
FORWARDED_HEADER: Final = "X-Execdist-Forwarded-By"
"""Names the asking worker in the other's logs, as on requests forwarded to a key's owner."""


class PartitionOwner(Protocol):
    """Who says which partitions this worker owns (the engine)."""

    @property
    def partitions(self) -> list[int]: ...


class BookReader:
    """Answers a book query from the partitions this worker holds."""

    def __init__(
        self,
        settings: Settings,
        states: PartitionedState,
        positions: PartitionedState,
        owner: PartitionOwner,
    ) -> None:
        self._settings = settings
        self._tables = {Listing.ORDERS: states, Listing.POSITIONS: positions}
        self._owner = owner

    def owned(self) -> frozenset[int]:
        return frozenset(self._owner.partitions)

    async def answer(self, query: BookQuery, partitions: Collection[int]) -> PartialPage:
        """The first ``query.limit`` matches after the cursor in those of ``partitions`` this
        worker holds, and whether there are more; partitions it does not hold, or loses while
        it reads, are left out of the answer's ``partitions``."""
        found: list[tuple[str, dict[str, object]]] = []
        covered: set[int] = set()
        more = False
        for partition in sorted(set(partitions) & self.owned()):
            items = await self._scan(query, partition)
            if items is None:
                continue
            covered.add(partition)
            found.extend(items)
        found.sort(key=lambda pair: pair[0])
        more = len(found) > query.limit
        return PartialPage(found[: query.limit], more, frozenset(covered))

    async def _scan(
        self, query: BookQuery, partition: int
    ) -> list[tuple[str, dict[str, object]]] | None:
        """Up to ``limit + 1`` matches of one partition in key order (the extra one says there
        are more); ``None`` when the partition is not held to the end of the scan."""
        table = self._tables[query.kind]
        now = datetime.now(UTC)
        after = None if query.after is None else query.after.encode()
        found: list[tuple[str, dict[str, object]]] = []
        while len(found) <= query.limit:
            if partition not in self._owner.partitions or not table.holds(partition):
                return None
            chunk = table.items_after(partition, after, SCAN_CHUNK)
            for key, value in chunk:
                item = self._select(query, key, value, now)
                if item is not None:
                    found.append((key.decode(errors="replace"), item))
                    if len(found) > query.limit:
                        break
            if len(chunk) < SCAN_CHUNK:
                break
            after = chunk[-1][0]
            await asyncio.sleep(0)
        if partition not in self._owner.partitions:
            return None
        return found

    def _select(
        self, query: BookQuery, key: bytes, value: bytes, now: datetime
    ) -> dict[str, object] | None:
        try:
            if query.kind is Listing.ORDERS:
                return order_item(query, value, now, self._settings.order_retention)
            return position_item(query, key.decode(errors="replace"), value)
        except (InvalidState, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            # a value this worker cannot read is a bug to see, not a reason to fail the query
            log.warning("book query skipped the unreadable %s entry %r: %r", query.kind, key, exc)
            return None


class BookQueries:
    """Scatter a book query to every partition's owner, gather, merge and page."""

    def __init__(self, settings: Settings, reader: BookReader, reports: WorkerReports) -> None:
        self._settings = settings
        self._reader = reader
        self._reports = reports

    async def ask(self, query: BookQuery, authorization: str | None) -> Page:
        """One page of the whole book, ``partial`` when some partitions did not answer in
        time. ``authorization`` is the caller's header, sent on to the other workers."""
        everything = range(self._settings.topic_partitions)
        local = self._reader.owned()
        remote: dict[str, set[int]] = {}
        for partition in everything:
            if partition in local:
                continue
            url = self._reports.owner_url(partition)
            if url is not None:
                remote.setdefault(url, set()).add(partition)
        deadline = self._settings.query_deadline.total_seconds()
        timeout = aiohttp.ClientTimeout(total=deadline)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            tasks = [asyncio.ensure_future(self._reader.answer(query, local))] + [
                asyncio.ensure_future(
                    self._ask_worker(session, url, query, partitions, authorization)
                )
                for url, partitions in sorted(remote.items())
            ]
            done, pending = await asyncio.wait(tasks, timeout=deadline)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            answers: list[PartialPage] = []
            for task in tasks:  # in a fixed order, for a deterministic merge
                if task not in done:
                    continue
                if task.exception() is not None:
                    log.warning("a worker's answer to a book query failed: %r", task.exception())
                    continue
                answer = task.result()
                if answer is not None:
                    answers.append(answer)
        page = merge_pages(query, answers, everything)
        if page.partial:
            log.info(
                "book query answered without partitions %s (no ready owner or no answer "
                "within %.1f s)",
                page.missing_partitions,
                deadline,
            )
        return page

    async def _ask_worker(
        self,
        session: aiohttp.ClientSession,
        url: str,
        query: BookQuery,
        partitions: Collection[int],
        authorization: str | None,
    ) -> PartialPage | None:
        headers = {FORWARDED_HEADER: self._settings.worker_id}
        if authorization:
            headers["Authorization"] = authorization
        params = {**query.to_params(), "partitions": ",".join(map(str, sorted(partitions)))}
        target = url.rstrip("/") + INTERNAL_PATHS[query.kind]
        try:
            async with session.get(target, params=params, headers=headers) as response:
                body = await response.read()
                if response.status != 200:
                    log.warning(
                        "worker %s answered a book query with %s: %r", url, response.status, body
                    )
                    return None
            return PartialPage.from_dict(orjson.loads(body))
        except (aiohttp.ClientError, orjson.JSONDecodeError, InvalidState) as exc:
            log.warning("worker %s did not answer a book query: %r", url, exc)
            return None
