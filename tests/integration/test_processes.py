"""``execdist worker --processes 2`` against the real broker: two ordinary workers under one
supervisor, both ready, and one SIGTERM to the supervisor stops both cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx

from tests.integration.conftest import ADMIN_TOKEN, BROKER, EXECDIST, REGISTRY_URL


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            first = int(sock.getsockname()[1])
        if first + count > 65535:
            continue
        try:
            for port in range(first, first + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise AssertionError(f"no {count} consecutive free ports")


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def workers_listed(port: int) -> set[str]:
    """The worker ids ``GET /api/v1/status`` lists (every worker reports once a second)."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/status", headers=headers, timeout=5)
    except httpx.HTTPError:
        return set()
    if answer.status_code != 200:
        return set()
    return {worker["worker_id"] for worker in answer.json().get("workers", [])}


def test_two_processes_become_ready_and_stop_together(tmp_path: Path) -> None:
    web, grpc = free_ports(2), free_ports(2)
    worker_id = f"procs-{uuid.uuid4().hex[:6]}"
    log_path = tmp_path / "supervisor.log"
    env = {
        **os.environ,
        "EXECDIST_BROKER": BROKER,
        "EXECDIST_SCHEMA_REGISTRY_URL": REGISTRY_URL,
        "EXECDIST_APP_ID": f"execdist-test-{uuid.uuid4().hex[:8]}",
        "EXECDIST_DATA_DIR": str(tmp_path / "data"),
        "EXECDIST_ADMIN_TOKEN": ADMIN_TOKEN,
        "EXECDIST_WORKER_ID": worker_id,
        "EXECDIST_TOPIC_PARTITIONS": "4",
        "EXECDIST_GRPC_PORT": str(grpc),
        "EXECDIST_LOG_LEVEL": "warning",
    }
    with log_path.open("wb") as log:
        supervisor = subprocess.Popen(
            [EXECDIST, "worker", "--processes", "2", "--web-port", str(web)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def log_tail() -> str:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])

    try:
        deadline = time.monotonic() + 25
        while not (ready(web) and ready(web + 1)):
            assert supervisor.poll() is None, f"the supervisor exited early:\n{log_tail()}"
            assert time.monotonic() < deadline, f"not both ready within 25 s:\n{log_tail()}"
            time.sleep(0.25)
        children = children_of(supervisor.pid)
        assert len(children) == 2, children
        # each child is a worker of its own: its own id, partitions and data dir
        want = {f"{worker_id}-0", f"{worker_id}-1"}
        deadline = time.monotonic() + 10
        while (listed := workers_listed(web)) != want:
            assert time.monotonic() < deadline, f"status lists {listed}, not {want}"
            time.sleep(0.25)
        assert sorted((tmp_path / "data").iterdir()) == [
            tmp_path / "data" / f"worker-{web}",
            tmp_path / "data" / f"worker-{web + 1}",
        ]

        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(20) == 0, log_tail()
        assert children_of(supervisor.pid) == []
        for pid in children:
            assert not Path(f"/proc/{pid}").exists(), f"child {pid} outlived the supervisor"
        assert not ready(web) and not ready(web + 1)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait(10)


def test_sigquit_dumps_every_threads_stack_and_the_worker_goes_on(cluster) -> None:
    """``kill -QUIT`` on a worker that seems stuck writes each thread's Python stack to its
    log (as a JVM's thread dump does) and leaves it running."""
    worker = cluster()
    dump = worker.dumped_since(worker.quit())
    assert "Current thread" in dump or "Thread 0x" in dump, dump[-2000:]
    assert "execdist" in dump, "the stacks name the worker's own code"
    assert worker.process is not None and worker.process.poll() is None, "still running"
    assert httpx.get(f"{worker.url}/health/live", timeout=5).status_code == 200
