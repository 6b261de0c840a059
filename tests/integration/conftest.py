"""Fixtures for tests against the real Kafka broker and schema registry.

``make test`` starts both (scripts/infra.sh) and exports EXECDIST_BROKER and
EXECDIST_SCHEMA_REGISTRY_URL. Workers run as real ``execdist worker`` processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import UnknownTopicOrPartitionError

from execdist import topics

BROKER = os.environ.get("EXECDIST_BROKER", "127.0.0.1:9092")
REGISTRY_URL = os.environ.get(
    "EXECDIST_SCHEMA_REGISTRY_URL", "http://127.0.0.1:8081/apis/ccompat/v7"
)
ADMIN_TOKEN = "test-admin-token"
EXECDIST = str(Path(sys.executable).parent / "execdist")
CONTRACT_TOPICS = [
    topics.ORDERS,
    topics.EXECUTIONS,
    topics.POSITIONS_BY_ACCOUNT,
    topics.SUBSCRIBER_ROUTE,
    topics.CONFIRMATIONS,
    topics.STATUS,
    topics.DLQ,
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session", autouse=True)
def broker_available() -> None:
    host, port = BROKER.split(",")[0].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError:
        pytest.fail(
            f"no Kafka broker at {BROKER}: run the suite with 'make test', which starts one",
            pytrace=False,
        )


async def delete_topics(names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKER)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [name for name in names if name in existing]
        if doomed:
            with contextlib.suppress(UnknownTopicOrPartitionError):
                await admin.delete_topics(doomed)
        for _ in range(100):
            if not set(await admin.list_topics()) & set(doomed):
                break
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


def start_all(workers: list[Worker]) -> None:
    """Start workers and wait until all are ready; stop them all if any fails."""
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.wait_ready()
    except BaseException:
        for worker in workers:
            worker.stop()
        raise


@dataclass
class Worker:
    """One ``execdist worker`` process."""

    app_id: str
    data_dir: Path
    log_path: Path
    web_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    peers: list[Worker] = field(default_factory=list)
    """The workers of its cluster (itself included): when one is not ready in time, every
    running one dumps its threads' stacks into its log, for the failure to show why."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "EXECDIST_BROKER": BROKER,
            "EXECDIST_SCHEMA_REGISTRY_URL": REGISTRY_URL,
            "EXECDIST_APP_ID": self.app_id,
            "EXECDIST_DATA_DIR": str(self.data_dir),
            "EXECDIST_ADMIN_TOKEN": ADMIN_TOKEN,
            "EXECDIST_WORKER_ID": f"worker-{self.web_port}",
            "EXECDIST_TOPIC_PARTITIONS": "4",
            "EXECDIST_GRPC_PORT": str(self.grpc_port),
        }
        env.update(self.extra_env)
        return env

    def start(self) -> Worker:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [EXECDIST, "worker", "--processes", "1", "--web-port", str(self.web_port)],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                self.process.wait()
                raise AssertionError(f"worker exited early:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"worker not ready within {timeout}s:\n{self.stack_dumps()}")

    def stack_dumps(self) -> str:
        """SIGQUIT to every running worker of the cluster (each writes its threads' stacks to
        its log and goes on), then their log tails, this worker's first."""
        running = [
            worker
            for worker in [self, *(peer for peer in self.peers if peer is not self)]
            if worker.process is not None and worker.process.poll() is None
        ]
        # all at once, so that the stacks show one moment of the cluster
        sizes = [worker.quit() for worker in running]
        for worker, size in zip(running, sizes, strict=True):
            worker.dumped_since(size, timeout=5.0)
        return "\n\n".join(
            f"--- worker {worker.web_port}{' (this one)' if worker is self else ''}:\n"
            f"{worker.log_tail(150)}"
            for worker in running
        )

    def quit(self) -> int:
        """SIGQUIT: the worker writes its threads' stacks to its log and goes on. Returns the
        log's size before, for :meth:`dumped_since`."""
        size = self.log_path.stat().st_size
        self.signal(signal.SIGQUIT)
        return size

    def dumped_since(self, size: int, timeout: float = 10.0) -> str:
        """What the log gained after ``size``, once it holds a stack dump naming the worker's
        own code (or ``timeout`` passed)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.log_path.open(errors="replace") as log:
                log.seek(size)
                written = log.read()
            dumped = "Current thread" in written or "Thread 0x" in written
            if (dumped and "execdist" in written) or time.monotonic() > deadline:
                return written
            time.sleep(0.1)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            # a worker that ignores SIGTERM is stuck: its stacks say where, before it is killed
            sys.stderr.write(
                f"worker {self.web_port} did not stop within {timeout:g} s of SIGTERM; "
                f"its stacks and log:\n{self.stack_dumps()}\n"
            )
            self.process.kill()
            return self.process.wait(10)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """A factory of workers that share one fresh app id (consumer group, changelogs)."""
    asyncio.run(delete_topics(CONTRACT_TOPICS))
    app_id = f"execdist-test-{uuid.uuid4().hex[:8]}"
    workers: list[Worker] = []

    def make(start: bool = True, ready: bool = True, **env: str) -> Worker:
        index = len(workers)
        worker = Worker(
            app_id=app_id,
            data_dir=tmp_path / f"data-{index}",
            log_path=tmp_path / f"worker-{index}.log",
            extra_env=env,
            peers=workers,
        )
        workers.append(worker)
        if start:
            worker.start()
            if ready:
                worker.wait_ready()
        return worker

    yield make
    for worker in workers:
        worker.stop()


@pytest_asyncio.fixture
async def producer() -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=BROKER, enable_idempotence=True, linger_ms=2)
    await producer.start()
    yield producer
    await producer.stop()


async def read_committed(
    topic_names: list[str],
    until: Callable[[list[ConsumerRecord]], bool],
    timeout: float = 60.0,
    settle: float = 0.0,
) -> list[ConsumerRecord]:
    """Every committed record of the topics from the start, until ``until`` holds.

    With ``settle``, reading goes on that many seconds longer, so that a record that should
    not be there (a duplicate) has the chance to show up.
    """
    consumer = AIOKafkaConsumer(
        *topic_names,
        bootstrap_servers=BROKER,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                records.extend(messages)
            if until(records):
                if settle > 0:
                    deadline, settle = time.monotonic() + settle, 0.0
                    continue
                return records
    finally:
        await consumer.stop()
    return records
