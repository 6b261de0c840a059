"""What every part of the benchmark shares: where the broker is, topic resets, CPU clocks.

The benchmark runs against its own broker and registry (``make bench`` starts them on ports
21092 and 21081 by default, so it never meets the broker of ``make test`` or ``make run``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
BROKER = os.environ.get("EXECDIST_BROKER", "127.0.0.1:21092")
REGISTRY_URL = os.environ.get(
    "EXECDIST_SCHEMA_REGISTRY_URL", "http://127.0.0.1:21081/apis/ccompat/v7"
)
INFRA_DIR = Path(os.environ.get("EXECDIST_INFRA_DIR", str(ROOT / ".infra" / "bench")))
KAFKA_LIBS = (
    Path(os.environ.get("EXECDIST_CACHE_DIR", Path.home() / ".cache" / "execdist"))
    / "kafka-3.9.1"
    / "libs"
)
ADMIN_TOKEN = "bench-admin-token"
PARTITIONS = 4
"""Partitions of every input and ceiling topic, the worker's default."""
STARTED = time.monotonic()


def say(message: str) -> None:
    """One progress line, with the time since the benchmark started."""
    sys.stdout.write(f"[bench {time.monotonic() - STARTED:6.1f}s] {message}\n")
    sys.stdout.flush()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@dataclass
class CpuMeter:
    """CPU used by a set of processes over an interval, as cores busy on average."""

    pids: list[int]
    cpu: float = 0.0
    wall: float = 0.0

    def start(self) -> CpuMeter:
        self.cpu = sum(cpu_seconds(pid) for pid in self.pids)
        self.wall = time.monotonic()
        return self

    def stop(self) -> tuple[float, float]:
        """(CPU seconds used, wall seconds passed) since :meth:`start`."""
        used = sum(cpu_seconds(pid) for pid in self.pids) - self.cpu
        return used, time.monotonic() - self.wall


def broker_pid() -> int | None:
    try:
        return int((INFRA_DIR / "kafka.pid").read_text().strip())
    except (OSError, ValueError):
        return None


async def reset_topics() -> int:
    """Delete every topic but Kafka's own, so that each configuration starts from nothing, and
    wait until the broker has removed their files (:func:`files_removed`)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKER, request_timeout_ms=60000)
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if not t.startswith("__")]
        for start in range(0, len(doomed), 200):
            with contextlib.suppress(UnknownTopicOrPartitionError):
                await admin.delete_topics(doomed[start : start + 200], timeout_ms=60000)
        for _ in range(300):
            left = set(await admin.list_topics()) & set(doomed)
            if not left:
                break
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    await files_removed(set(doomed))
    return len(doomed)


LOG_DIR = INFRA_DIR / "kafka-data"
FILES_REMOVED_S = 180.0


def _topic_of(entry: str) -> str | None:
    """The topic of a partition's folder in the broker's log dir (``orders-3``, or
    ``orders-3.<id>-delete`` once the topic is deleted); None for the broker's own files."""
    name = entry.removesuffix("-delete")
    if name != entry:
        name = name.rpartition(".")[0]
    topic, dash, partition = name.rpartition("-")
    return topic if dash and partition.isdigit() else None


async def files_removed(doomed: set[str]) -> None:
    """Wait until the bench's broker has removed the files of the deleted topics ``doomed``.

    The broker renames a deleted partition's folder and removes it
    ``log.segment.delete.delay.ms`` later (a minute by default; ``make bench`` starts its
    broker with a second). After the ceilings, gigabytes of their topics waited there, and
    until they were gone an exactly-once hop at 50/s had a p99 several times its own a minute
    later (BENCHMARKS.md, twenty-sixth pass): a part of the bench starts once they are gone. A
    broker whose log dir is not the bench's own (``EXECDIST_INFRA_DIR``) is not waited for."""
    if not LOG_DIR.is_dir():
        return
    began = time.monotonic()
    said = False
    while time.monotonic() - began < FILES_REMOVED_S:
        left = [
            entry.name
            for entry in LOG_DIR.iterdir()
            if entry.name.endswith("-delete") or _topic_of(entry.name) in doomed
        ]
        if not left:
            if said:
                say(f"the deleted topics' files are gone after {time.monotonic() - began:.1f}s")
            return
        if not said and time.monotonic() - began > 5:
            say(f"waiting for the broker to remove {len(left)} deleted partitions' files")
            said = True
        await asyncio.sleep(0.2)
    say(f"the broker still holds deleted topics' files after {FILES_REMOVED_S:.0f}s; going on")


async def create_topics(names: list[str], partitions: int = PARTITIONS) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKER)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, num_partitions=partitions, replication_factor=1)
            for name in names
            if name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
        for _ in range(100):
            described = await admin.describe_topics(names)
            if all(len(item["partitions"]) == partitions for item in described):
                break
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


def percentile(ordered: list[float], q: float) -> float | None:
    """The q-quantile of an already sorted list (nearest rank), or None when it is empty."""
    if not ordered:
        return None
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)
