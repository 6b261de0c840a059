"""The tables' changelog on the real broker: what commits write, a restore reads back into the
same tables, the same key of different tables kept apart, a deleted key gone.

Both layouts: the one changelog topic shared by every table of a new deployment, and the
changelog per table of a deployment that began with those, which it keeps.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from execdist.infra.kafka_admin import create_topic, ensure_topics
from execdist.runtime.commit import Committer
from execdist.runtime.restore import restore
from execdist.runtime.transaction import WorkerTransaction
from execdist.settings import Settings
from execdist.tables.declarations import (
    TAGS,
    TableSpec,
    own_changelog_topic,
    shared_changelog_topic,
)
from execdist.tables.store import PartitionedState, RocksTables
from tests.integration.conftest import BROKER

pytestmark = pytest.mark.integration

PARTITIONS = (0, 1)


def fresh_settings(tmp_path: Path) -> Settings:
    return Settings(
        broker=BROKER, data_dir=tmp_path, app_id=f"execdist-restore-{uuid.uuid4().hex[:8]}"
    )


async def topic_names() -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKER)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def opened(folder: Path, specs: list[TableSpec]) -> RocksTables:
    rocks = RocksTables(folder, specs, 8 * 1024 * 1024)
    for spec in specs:
        for partition in PARTITIONS:
            rocks.open(spec.name, partition, fresh=True)
    return rocks


def contents(rocks: RocksTables, specs: list[TableSpec]) -> dict[tuple[str, int], dict]:
    """Every table's committed keys and values, per partition."""
    return {
        (spec.name, partition): dict(
            PartitionedState(rocks, spec).items_after(partition, None, 1_000)
        )
        for spec in specs
        for partition in PARTITIONS
    }


def commit_and_restore(settings: Settings, specs: list[TableSpec], tmp_path: Path) -> None:
    """Two transactions of writes to every table, then a restore into empty databases: the
    restored tables hold what the committed ones hold, which is what was written."""
    rocks = opened(tmp_path / "written", specs)
    tables = [PartitionedState(rocks, spec) for spec in specs]
    transaction = WorkerTransaction(settings, f"{settings.app_id}-restore-test")
    transaction.open()
    committer = Committer(transaction, tables)
    try:
        for table in tables:
            for partition in PARTITIONS:
                # the same keys in every table and partition, each with a value of its own
                table.put(partition, b"same-key", b"%s/%d" % (table.spec.name.encode(), partition))
                table.put(partition, b"gone", b"first")
                table.put(partition, b"kept", b"first")
        committer.send_changelogs()
        committer.commit({}, None)
        committer.apply()
        for table in tables:
            for partition in PARTITIONS:
                table.delete(partition, b"gone")
                table.put(partition, b"kept", b"second")
        committer.send_changelogs()
        committer.commit({}, None)
        committer.apply()
    finally:
        transaction.close()

    expected = {
        (spec.name, partition): {
            b"same-key": b"%s/%d" % (spec.name.encode(), partition),
            b"kept": b"second",
        }
        for spec in specs
        for partition in PARTITIONS
    }
    assert contents(rocks, specs) == expected
    rocks.close_all()

    restored = opened(tmp_path / "restored", specs)
    try:
        applied = restore(settings, restored, specs, list(PARTITIONS))
        assert contents(restored, specs) == expected
        # every record of both commits is read back (compaction may not have run yet)
        assert len(specs) * len(PARTITIONS) * 3 <= applied <= len(specs) * len(PARTITIONS) * 5
    finally:
        restored.close_all()


async def test_a_new_deployment_restores_every_table_from_one_shared_changelog(
    tmp_path: Path,
) -> None:
    settings = fresh_settings(tmp_path)
    specs = await ensure_topics(settings)

    shared = shared_changelog_topic(settings.app_id)
    assert {spec.changelog_topic for spec in specs} == {shared}
    assert len({spec.changelog_tag for spec in specs}) == len(TAGS)
    existing = await topic_names()
    assert shared in existing
    assert not any(own_changelog_topic(settings.app_id, name) in existing for name in TAGS)

    commit_and_restore(settings, specs, tmp_path)


async def test_a_deployment_that_began_with_a_changelog_per_table_keeps_them(
    tmp_path: Path,
) -> None:
    settings = fresh_settings(tmp_path)
    for name in TAGS:
        await create_topic(
            settings, own_changelog_topic(settings.app_id, name), settings.topic_partitions
        )
    specs = await ensure_topics(settings)

    assert {spec.name: (spec.changelog_topic, spec.changelog_tag) for spec in specs} == {
        name: (own_changelog_topic(settings.app_id, name), b"") for name in TAGS
    }
    assert shared_changelog_topic(settings.app_id) not in await topic_names()

    commit_and_restore(settings, specs, tmp_path)
