"""Start-up checks against the broker: reachable, topics present, inputs co-partitioned.

The pipeline's consumer group assigns partitions only for topics that exist when it forms,
and the join is only correct when ``orders`` and ``executions`` have the same partition count
(partition N of both must meet on one worker). So the worker creates what is missing and
refuses to start on a mismatch, with a message that says what to do.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from execdist import topics
from execdist.domain.errors import ExecDistError
from execdist.infra import clients
from execdist.settings import Settings
from execdist.tables.declarations import (
    MAX_VALUE_BYTES,
    TableSpec,
    has_own_changelogs,
    table_specs,
)


class BrokerCheckFailed(ExecDistError):
    """The broker cannot be used as configured; the message says what to do."""


def required_topics(
    settings: Settings, tables: list[TableSpec]
) -> dict[str, tuple[int, dict[str, str]]]:
    """Every topic the worker needs, with its partition count and config."""
    n = settings.topic_partitions
    compacted = {"cleanup.policy": "compact"}
    return {
        topics.ORDERS: (n, {}),
        topics.EXECUTIONS: (n, {}),
        topics.POSITIONS_BY_ACCOUNT: (n, {}),
        topics.SUBSCRIBER_ROUTE: (n, {}),
        topics.CONFIRMATIONS: (n, {}),
        topics.STATUS: (1, {}),
        topics.DLQ: (1, {}),
        topics.SUBSCRIPTIONS: (1, compacted),
        topics.SUBSCRIPTION_AUDIT: (
            1,
            {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"},
        ),
        topics.WORKERS: (1, {**compacted, "min.cleanable.dirty.ratio": "0.1"}),
        **{
            spec.changelog_topic: (n, {**compacted, "max.message.bytes": str(MAX_VALUE_BYTES)})
            for spec in tables
        },
    }


LEADER_WAIT_TRIES = 200

COPARTITIONED = (
    topics.ORDERS,
    topics.EXECUTIONS,
    topics.POSITIONS_BY_ACCOUNT,
    topics.SUBSCRIBER_ROUTE,
)


async def create_topic(
    settings: Settings, name: str, partitions: int, config: dict[str, str] | None = None
) -> None:
    """Create one topic if it does not exist yet (a subscriber's topic, for example), and
    return once every partition has a leader: a transaction that writes to a partition the
    broker does not lead yet fails (NotLeaderForPartition) and its partition is handed back to
    the group, which stalls it for seconds."""
    admin = clients.admin(settings)
    await admin.start()
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(
                [
                    NewTopic(
                        name,
                        num_partitions=partitions,
                        replication_factor=settings.replication_factor,
                        topic_configs=config or {},
                    )
                ]
            )
        for _ in range(LEADER_WAIT_TRIES):
            (described,) = await admin.describe_topics([name])
            led = [p for p in described.get("partitions", []) if p.get("leader", -1) >= 0]
            if described.get("error_code", 0) == 0 and len(led) >= partitions:
                return
            await asyncio.sleep(0.05)
        raise BrokerCheckFailed(
            f"topic {name!r} was created but its partitions have no leader after "
            f"{LEADER_WAIT_TRIES * 0.05:.0f} s; check the brokers' health"
        )
    finally:
        await admin.close()


async def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[TableSpec]:
    """Create missing topics and check co-partitioning; :class:`BrokerCheckFailed` if not.
    Returns the tables, with the changelog layout the deployment has: one shared changelog,
    or a changelog per table for a deployment that began with those."""
    admin = clients.admin(settings, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
    except (KafkaConnectionError, TimeoutError, OSError) as exc:
        raise BrokerCheckFailed(
            f"cannot reach Kafka at {settings.broker} ({exc!r}). Start the local broker with "
            "'make up', or point EXECDIST_BROKER at a running one."
        ) from exc
    try:
        existing = set(await admin.list_topics())
        tables = table_specs(
            settings.app_id, shared=not has_own_changelogs(settings.app_id, existing)
        )
        wanted = required_topics(settings, tables)
        missing = [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=settings.replication_factor,
                topic_configs=config,
            )
            for name, (partitions, config) in wanted.items()
            if name not in existing
        ]
        if missing:
            # another worker may create them at the same moment
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
        counts: dict[str, int] = {}
        for _ in range(100):  # a topic just created may not show its partitions yet
            described = await admin.describe_topics(list(COPARTITIONED))
            counts = {item["topic"]: len(item["partitions"]) for item in described}
            if all(counts.get(name) for name in COPARTITIONED):
                break
            await asyncio.sleep(0.1)
        wrong = {
            name: count for name, count in counts.items() if count != settings.topic_partitions
        }
        if wrong:
            found = ", ".join(f"{name} has {count}" for name, count in sorted(wrong.items()))
            raise BrokerCheckFailed(
                f"the join needs {', '.join(COPARTITIONED)} to have "
                f"EXECDIST_TOPIC_PARTITIONS={settings.topic_partitions} partitions each, but "
                f"{found}. Set EXECDIST_TOPIC_PARTITIONS to the partition count of 'orders' "
                "and 'executions', or repartition those topics so that they are equal."
            )
        return tables
    except KafkaError as exc:
        raise BrokerCheckFailed(f"Kafka at {settings.broker} refused a request: {exc!r}") from exc
    finally:
        await admin.close()
