"""A subscription's audit and its status events, through real workers and the real broker.

The audit: every change, made with different tokens on different workers, read back in order
with its actor and the filter before and after, page by page, also after the subscription is
deleted and after every worker has restarted. The transaction: a change, its audit entry and
its status event are written by the store's transactional producer as one transaction, so a
``read_committed`` reader sees none of them while it is open and all of them once it
commits, and an aborted change leaves none of them, though its records are in the log.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from schema_registry.client import AsyncSchemaRegistryClient

from execdist import topics
from execdist.domain.access import ENV_ADMIN_ID, Principal, Scope
from execdist.domain.subscriptions import parse_create
from execdist.infra.kafka_admin import ensure_topics
from execdist.services.subscription_audit import SubscriptionAudit
from execdist.services.subscription_changes import SubscriptionChanges
from execdist.services.subscription_store import SubscriptionStore
from execdist.settings import Settings
from tests.integration.conftest import ADMIN_TOKEN, BROKER, REGISTRY_URL, Worker, read_committed
from tests.integration.helpers import worker_pair

pytestmark = pytest.mark.integration

INTERNAL = (topics.SUBSCRIPTIONS, topics.WORKERS, topics.SUBSCRIPTION_AUDIT)


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Worker]]:
    yield from worker_pair(tmp_path_factory, "audit", extra_topics=INTERNAL)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(worker: Worker, token: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=worker.url, headers=bearer(token), timeout=15) as http:
        return await http.request(method, path, **kwargs)


async def whole_audit(worker: Worker, token: str, sid: str, limit: int = 100) -> list[dict]:
    """Every entry, following ``next_cursor`` page by page."""
    items: list[dict] = []
    cursor = None
    while True:
        params = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
        response = await call(
            worker, token, "GET", f"/api/v1/subscriptions/{sid}/audit", params=params
        )
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def filters(entries: list[dict], side: str) -> list[object]:
    return [None if e[side] is None else e[side]["filter"]["accounts"] for e in entries]


async def test_every_change_is_audited_with_its_actor_and_filters_and_outlives_it_all(
    workers: list[Worker],
) -> None:
    first, second = workers
    issued = await call(
        first, ADMIN_TOKEN, "POST", "/api/v1/tokens", json={"scope": "admin", "name": "ops"}
    )
    assert issued.status_code == 201, issued.text
    issued_token, issued_id = issued.json()["token"], issued.json()["id"]
    analyst = await call(
        first, ADMIN_TOKEN, "POST", "/api/v1/tokens", json={"scope": "analyst", "name": "risk"}
    )
    analyst_token = analyst.json()["token"]

    created = await call(
        first,
        ADMIN_TOKEN,
        "POST",
        "/api/v1/subscriptions",
        json={"name": f"audited-{uuid.uuid4().hex[:6]}", "filter": {"accounts": ["ACC-1"]}},
    )
    assert created.status_code == 201, created.text
    sid, own_token = created.json()["id"], created.json()["token"]
    # the change is in the audit as soon as it has been answered, on any worker
    right_away = await whole_audit(second, ADMIN_TOKEN, sid)
    assert [e["action"] for e in right_away] == ["CREATED"]

    steps = [
        (second, issued_token, {"filter": {"accounts": ["ACC-2"]}}),
        (first, ADMIN_TOKEN, {"status": "PAUSED"}),
        (second, issued_token, {"status": "ACTIVE", "filter": {"accounts": ["ACC-3"]}}),
    ]
    for worker, token, body in steps:
        response = await call(worker, token, "PATCH", f"/api/v1/subscriptions/{sid}", json=body)
        assert response.status_code == 200, response.text
    # a PATCH that changes nothing is not a change
    same = await call(
        first, ADMIN_TOKEN, "PATCH", f"/api/v1/subscriptions/{sid}", json={"status": "ACTIVE"}
    )
    assert same.status_code == 200
    # the subscription's own token reads its audit; the actors are ids, never tokens
    own_view = await call(second, own_token, "GET", f"/api/v1/subscriptions/{sid}/audit")
    assert own_view.status_code == 200
    for token in (ADMIN_TOKEN, issued_token, own_token, analyst_token):
        assert token not in own_view.text

    deleted = await call(second, ADMIN_TOKEN, "DELETE", f"/api/v1/subscriptions/{sid}")
    assert deleted.status_code == 204
    gone = await call(first, ADMIN_TOKEN, "GET", f"/api/v1/subscriptions/{sid}")
    assert gone.status_code == 404

    def check(entries: list[dict]) -> None:
        assert [e["action"] for e in entries] == [
            "CREATED",
            "UPDATED",
            "PAUSED",
            "RESUMED",
            "DELETED",
        ]
        assert [e["actor"] for e in entries] == [
            ENV_ADMIN_ID,
            issued_id,
            ENV_ADMIN_ID,
            issued_id,
            ENV_ADMIN_ID,
        ]
        assert filters(entries, "before") == [None, ["ACC-1"], ["ACC-2"], ["ACC-2"], ["ACC-3"]]
        assert filters(entries, "after") == [["ACC-1"], ["ACC-2"], ["ACC-2"], ["ACC-3"], None]
        assert [e["after"]["status"] for e in entries[:4]] == [
            "ACTIVE",
            "ACTIVE",
            "PAUSED",
            "ACTIVE",
        ]
        assert [e["after"]["version"] for e in entries[:4]] == [1, 2, 3, 4]
        times = [e["time"] for e in entries]
        assert times == sorted(times)

    # after the deletion, on both workers, for an admin and an analyst, whole and in pages
    for worker in workers:
        check(await whole_audit(worker, ADMIN_TOKEN, sid))
        check(await whole_audit(worker, analyst_token, sid, limit=2))
    # the deleted subscription's token is no longer a token
    revoked = await call(first, own_token, "GET", f"/api/v1/subscriptions/{sid}/audit")
    assert revoked.status_code == 401

    # paging: 2 + 2 + 1, the cursors lead on, the last page says it is the last
    pages = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (
            await call(
                first, ADMIN_TOKEN, "GET", f"/api/v1/subscriptions/{sid}/audit", params=params
            )
        ).json()
        pages.append([e["action"] for e in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [["CREATED", "UPDATED"], ["PAUSED", "RESUMED"], ["DELETED"]]
    for params in ({"limit": "0"}, {"limit": "501"}, {"cursor": "!!"}, {"cursor": "YWJj"}):
        bad = await call(
            first, ADMIN_TOKEN, "GET", f"/api/v1/subscriptions/{sid}/audit", params=params
        )
        assert bad.status_code == 400, params
    unknown = await call(first, ADMIN_TOKEN, "GET", "/api/v1/subscriptions/never-was/audit")
    assert unknown.status_code == 404

    # each change was announced once, by the worker that made it, naming who made it
    def announced(records: list[ConsumerRecord]) -> list[dict]:
        events = [orjson.loads(r.value) for r in records]
        return [e for e in events if e["subscription_id"] == sid]

    records = await read_committed(
        [topics.STATUS], lambda got: len(announced(got)) >= 5, 30, settle=1.0
    )
    events = announced(records)
    assert [e["type"] for e in events] == [
        "SUBSCRIPTION_CREATED",
        "SUBSCRIPTION_UPDATED",
        "SUBSCRIPTION_UPDATED",
        "SUBSCRIPTION_UPDATED",
        "SUBSCRIPTION_DELETED",
    ]
    assert [e["details"]["action"] for e in events] == [
        "CREATED",
        "UPDATED",
        "PAUSED",
        "RESUMED",
        "DELETED",
    ]
    assert [e["details"]["actor"] for e in events] == [
        ENV_ADMIN_ID,
        issued_id,
        ENV_ADMIN_ID,
        issued_id,
        ENV_ADMIN_ID,
    ]
    assert [e["source"] for e in events] == [
        f"worker-{w.web_port}" for w in (first, second, first, second, second)
    ]

    # every worker restarts: the audit is read back from its topic
    for worker in workers:
        worker.stop()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.wait_ready()
    for worker in workers:
        check(await whole_audit(worker, ADMIN_TOKEN, sid))


# --- the transaction ---------------------------------------------------------------------


@pytest_asyncio.fixture
async def changes(
    workers: list[Worker], tmp_path: Path
) -> AsyncIterator[tuple[SubscriptionChanges, SubscriptionStore]]:
    """The use cases over a store and an audit of this process, on the module's topics."""
    settings = Settings(
        broker=BROKER,
        schema_registry_url=REGISTRY_URL,
        data_dir=tmp_path,
        app_id=f"execdist-audit-{uuid.uuid4().hex[:8]}",
        worker_id="in-process",
    )
    await ensure_topics(settings)
    store = SubscriptionStore(settings, f"{settings.app_id}-store")
    audit = SubscriptionAudit(settings)
    await store.start()
    await audit.start()
    await asyncio.wait_for(store.loaded.wait(), 30)
    registry = AsyncSchemaRegistryClient(url=REGISTRY_URL)
    try:
        yield SubscriptionChanges(settings, store, audit, registry), store
    finally:
        await audit.stop()
        await store.stop()


WATCHED = (topics.SUBSCRIPTIONS, topics.SUBSCRIPTION_AUDIT, topics.STATUS)
"""Where a change goes (each has one partition)."""


class Reader:
    """Follows the subscriptions, audit and status topics from their ends, with one isolation
    level, and keeps what concerns one subscription name."""

    def __init__(self, isolation_level: str) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=BROKER,
            isolation_level=isolation_level,
            enable_auto_commit=False,
            group_id=None,
        )
        self.records: list[ConsumerRecord] = []

    async def start(self) -> None:
        await self._consumer.start()
        partitions = [TopicPartition(topic, 0) for topic in WATCHED]
        self._consumer.assign(partitions)
        # from the end as it is now: only what follows is read
        await self._consumer.seek_to_end(*partitions)
        for tp in partitions:
            await self._consumer.position(tp)

    async def stop(self) -> None:
        await self._consumer.stop()

    async def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            batch = await self._consumer.getmany(timeout_ms=100)
            for records in batch.values():
                self.records.extend(records)

    def about(self, name: str) -> dict[str, int]:
        """How many records of each topic mention the subscription called ``name``."""
        counts = dict.fromkeys(WATCHED, 0)
        for record in self.records:
            if record.value is not None and f'"{name}"'.encode() in record.value:
                counts[record.topic] += 1
        return counts


@pytest_asyncio.fixture
async def readers() -> AsyncIterator[tuple[Reader, Reader]]:
    committed, uncommitted = Reader("read_committed"), Reader("read_uncommitted")
    await committed.start()
    await uncommitted.start()
    try:
        yield committed, uncommitted
    finally:
        await committed.stop()
        await uncommitted.stop()


def wrap_commit(store: SubscriptionStore, before_commit: Callable[[], Any]) -> None:
    """Run ``before_commit`` before the store's producer commits its next transaction, once
    every record of that transaction is in the log; later transactions commit as usual."""
    producer = store._producer  # the fault is injected at the producer itself
    assert producer is not None
    real_commit = producer.commit_transaction

    async def commit() -> None:
        producer.commit_transaction = real_commit  # type: ignore[method-assign]
        await producer.flush()
        await before_commit()
        await real_commit()

    producer.commit_transaction = commit  # type: ignore[method-assign]


ADMIN = Principal(ENV_ADMIN_ID, Scope.ADMIN)
ALL = {topics.SUBSCRIPTIONS: 1, topics.SUBSCRIPTION_AUDIT: 1, topics.STATUS: 1}
NONE = dict.fromkeys(ALL, 0)


async def test_a_change_its_audit_and_its_status_event_commit_together(
    changes: tuple[SubscriptionChanges, SubscriptionStore], readers: tuple[Reader, Reader]
) -> None:
    use_cases, store = changes
    committed, uncommitted = readers
    name = f"txn-{uuid.uuid4().hex[:6]}"
    may_commit = asyncio.Event()
    in_log = asyncio.Event()

    async def hold() -> None:
        in_log.set()
        await may_commit.wait()

    wrap_commit(store, hold)
    creating = asyncio.create_task(use_cases.create(parse_create({"name": name}), ADMIN))
    await asyncio.wait_for(in_log.wait(), 15)
    # the transaction is open: its three records are in the log, none is committed
    await asyncio.gather(committed.poll(2.0), uncommitted.poll(2.0))
    assert uncommitted.about(name) == ALL
    assert committed.about(name) == NONE
    assert store.id_for_name(name) is None
    may_commit.set()
    created = await asyncio.wait_for(creating, 15)
    assert store.get(created.subscription.id) == created.subscription
    await committed.poll(2.0)
    assert committed.about(name) == ALL


async def test_an_aborted_change_leaves_neither_the_change_nor_its_audit_nor_its_event(
    changes: tuple[SubscriptionChanges, SubscriptionStore], readers: tuple[Reader, Reader]
) -> None:
    use_cases, store = changes
    committed, uncommitted = readers
    name = f"abort-{uuid.uuid4().hex[:6]}"

    async def fail() -> None:
        raise KafkaError("injected: the commit fails")

    wrap_commit(store, fail)
    with pytest.raises(KafkaError, match="injected"):
        await use_cases.create(parse_create({"name": name}), ADMIN)
    await asyncio.gather(committed.poll(3.0), uncommitted.poll(3.0))
    assert uncommitted.about(name) == ALL  # written, then aborted
    assert committed.about(name) == NONE
    assert store.id_for_name(name) is None

    # the store's producer goes on: the next change commits with its audit and its event
    again = f"after-{uuid.uuid4().hex[:6]}"
    created = await use_cases.create(parse_create({"name": again}), ADMIN)
    await committed.poll(2.0)
    assert committed.about(again) == ALL
    page = await use_cases.audit(created.subscription.id, after=None, limit=10)
    assert [(e.action.value, e.actor) for e in page.items] == [("CREATED", ENV_ADMIN_ID)]
