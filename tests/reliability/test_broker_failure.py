"""The partition leader broker killed with SIGKILL and restarted (three-broker cluster).

Replication factor 3 and min.insync.replicas=2: with one broker down, every partition still has
a leader and two in-sync replicas, so the workers go on after a leader election, and the
restarted broker catches up and rejoins.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from execdist import topics
from tests.integration.conftest import BROKER
from tests.reliability.support import QUIET
from tests.reliability.verifier import Fault, Feed, OutputTail, log, stream, verify

pytestmark = [pytest.mark.integration, pytest.mark.broker_cluster]

ROOT = Path(__file__).resolve().parents[2]
DOWN_S = float(os.environ.get("EXECDIST_REL_BROKER_DOWN_S", "15"))


def infra_dir() -> Path:
    return Path(os.environ.get("EXECDIST_INFRA_DIR", ROOT / ".infra"))


@pytest.fixture(autouse=True)
def three_brokers() -> None:
    if len(BROKER.split(",")) != 3 or os.environ.get("EXECDIST_BROKERS") != "3":
        pytest.skip("needs the three-broker cluster: make reliability (or EXECDIST_BROKERS=3)")


async def leader_of(topic: str, partition: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKER)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        by_partition = {p["partition"]: p for p in described["partitions"]}
        return int(by_partition[partition]["leader"])
    finally:
        await admin.close()


async def replication_of_every_topic() -> dict[str, set[int]]:
    """Replica counts of every topic: the service's, the internal ones and Kafka's own."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKER)
    await admin.start()
    try:
        names = await admin.list_topics()
        return {
            item["topic"]: {len(p["replicas"]) for p in item["partitions"]}
            for item in await admin.describe_topics(names)
        }
    finally:
        await admin.close()


async def test_leader_broker_killed_and_restarted(cluster) -> None:
    env = {**QUIET, "EXECDIST_REPLICATION_FACTOR": "3"}
    cluster(**env)
    cluster(**env)
    feed = Feed.seeded("BRK", seed=77)
    tail = await OutputTail([topics.CONFIRMATIONS]).start()
    victim: list[int] = []

    async def kill_leader() -> None:
        node = await leader_of(topics.CONFIRMATIONS, 0)
        pid = int((infra_dir() / f"kafka-{node}.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        victim.append(node)
        log(f"SIGKILL broker node {node} (pid {pid}), leader of {topics.CONFIRMATIONS}-0")
        await asyncio.sleep(DOWN_S)
        restarted = await asyncio.to_thread(
            subprocess.run,
            ["bash", str(ROOT / "scripts/infra.sh"), "up"],
            capture_output=True,
            text=True,
        )
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        log(f"broker node {node} restarted after {DOWN_S:.0f}s down")

    faults = [Fault(0.3, "SIGKILL the leader broker of confirmations-0, restart it", kill_leader)]
    schedule = await stream(feed, faults)
    verdict = await verify("leader broker SIGKILL + restart", feed, tail, schedule)
    replication = await replication_of_every_topic()
    verdict.notes.append(f"killed node {victim} for {DOWN_S:.0f}s")
    verdict.notes.append(f"replicas per topic: {replication}")
    verdict.record()
    verdict.assert_clean()
    assert all(r == {3} for r in replication.values()), replication
