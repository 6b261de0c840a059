"""Bounded soak: ten minutes at a steady moderate rate with subscriptions churning.

A worker runs with a short order retention (60 s) so finished orders expire during the run; every
15 s a subscription is created (with a WebSocket client reading it for a while) and the oldest
beyond five is deleted. Sampled all along: the worker's RSS, the size of its table directory and
the number of keys in its tables and the end-to-end latency (scheduled send to committed
visibility). They must level off: the last
part of the run may not be clearly above the middle, and latency may not drift upwards. At the
end every confirmation is checked as in the other scenarios.

Not part of CI: ``make soak`` (EXECDIST_SOAK_S and EXECDIST_SOAK_RATE change length and rate).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import statistics
import time
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
import httpx
import orjson
import pytest
import rocksdict

from execdist import topics
from tests.integration.conftest import ADMIN_TOKEN, Worker
from tests.reliability.support import QUIET
from tests.reliability.verifier import Feed, OutputTail, Schedule, stream, verify

pytestmark = [pytest.mark.integration, pytest.mark.soak]

DURATION_S = float(os.environ.get("EXECDIST_SOAK_S", "600"))
RATE = float(os.environ.get("EXECDIST_SOAK_RATE", "100"))
SAMPLE_S = 15.0
RETENTION_S = 60


def rss_kib(worker: Worker) -> int:
    assert worker.process is not None
    for line in Path(f"/proc/{worker.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(worker: Worker) -> float:
    """User and system CPU the worker process has used so far."""
    assert worker.process is not None
    fields = Path(f"/proc/{worker.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dir_kib(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) // 1024


def table_keys(data_dir: Path) -> Counter[str]:
    """Keys in the worker's tables (order state, timers, positions), read from a read-only
    view of its RocksDB files: the size of the state, unlike the files' size, which also holds
    what compaction has not yet reclaimed."""
    total: Counter[str] = Counter()
    # one worker that keeps its partitions: no table is dropped while this reads
    for path in sorted(data_dir.glob("*/tables/*.db")):
        if not (path / "CURRENT").exists():
            continue  # not created yet
        table = path.name.rsplit("-", 1)[0]  # execdist-order-state-3.db -> its table
        total[table] += _count_keys(path)
    return total


def _count_keys(path: Path, attempts: int = 5) -> int:
    """Keys of one database, read-only. The worker flushes and compacts meanwhile: a file the
    view's manifest names may be gone before the view opens it, so it is opened afresh."""
    for attempt in range(attempts):
        try:
            db = rocksdict.Rdict(
                str(path),
                options=rocksdict.Options(raw_mode=True),
                access_type=rocksdict.AccessType.read_only(),
            )
        except Exception:  # rocksdict raises a bare Exception ("Corruption: ... No such file")
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)
            continue
        try:
            return sum(1 for _ in db.keys())  # noqa: SIM118 - Rdict iterates items
        finally:
            db.close()
    raise AssertionError("unreachable")


def level(series: list[float]) -> tuple[float, float]:
    """(median of the middle third, median of the last third) of a series."""
    third = max(len(series) // 3, 1)
    return statistics.median(series[third : 2 * third]), statistics.median(series[-third:])


async def churn(worker: Worker, stop: asyncio.Event, schedule: Schedule) -> int:
    """Create a subscription every SAMPLE_S seconds, read it over WebSocket for a while, and
    delete the oldest beyond five. Returns how many were created."""
    rng = random.Random(3)
    run = uuid.uuid4().hex[:8]  # subscriptions outlive a run on the same broker
    live: list[dict[str, object]] = []
    created = 0
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    readers: list[asyncio.Task[None]] = []
    async with httpx.AsyncClient(base_url=worker.url, headers=headers, timeout=10) as http:
        while not stop.is_set():
            flt = {"accounts": [rng.choice(["ACC-EQ-01", "ACC-EQ-02", "ACC-HF-07", "ACC-PB-11"])]}
            response = await http.post(
                "/api/v1/subscriptions", json={"name": f"soak-{run}-{created}", "filter": flt}
            )
            assert response.status_code == 201, response.text
            live.append(response.json())
            created += 1
            readers.append(asyncio.create_task(read_for(worker, live[-1], SAMPLE_S * 2)))
            if len(live) > 5:
                doomed = live.pop(0)
                deleted = await http.delete(f"/api/v1/subscriptions/{doomed['id']}")
                assert deleted.status_code == 204, deleted.text
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_S)
    await asyncio.gather(*readers, return_exceptions=True)
    schedule.mark(f"subscriptions: {created} created, {created - len(live)} deleted", fault=False)
    return created


async def read_for(worker: Worker, subscription: dict[str, object], seconds: float) -> None:
    url = (
        f"ws://127.0.0.1:{worker.web_port}/api/v1/subscriptions/{subscription['id']}/stream"
        f"?from=latest&token={subscription['token']}"
    )
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        while time.monotonic() < deadline:
            try:
                message = await ws.receive(timeout=max(deadline - time.monotonic(), 0.1))
            except TimeoutError:
                break
            if message.type != aiohttp.WSMsgType.TEXT:
                break  # closed: its subscription was deleted, or the worker let it go


async def test_bounded_soak(cluster) -> None:
    worker = cluster(**QUIET, EXECDIST_ORDER_RETENTION_S=str(RETENTION_S))
    feed = Feed.seeded("SOAK", seed=600, records=int(DURATION_S * RATE))
    index_of = {}
    for index, record in enumerate(feed.records):
        if record.topic == topics.EXECUTIONS:
            index_of[orjson.loads(record.value)["exec_id"]] = index
    tail = await OutputTail([topics.CONFIRMATIONS]).start()
    schedule = Schedule()
    stop = asyncio.Event()
    samples: list[tuple[int, int, int]] = []
    per_table: list[Counter[str]] = []

    async def sample() -> None:
        while not stop.is_set():
            keys = await asyncio.to_thread(table_keys, worker.data_dir)
            per_table.append(keys)
            samples.append((rss_kib(worker), keys.total(), dir_kib(worker.data_dir)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_S)

    sampler = asyncio.create_task(sample())
    churner = asyncio.create_task(churn(worker, stop, schedule))
    cpu_before, wall_before = cpu_seconds(worker), time.monotonic()
    await stream(feed, rate=RATE, schedule=schedule)
    cores = (cpu_seconds(worker) - cpu_before) / (time.monotonic() - wall_before)
    stop.set()
    await asyncio.gather(sampler, churner)
    verdict = await verify("soak", feed, tail, schedule)

    # latency per minute: committed visibility minus the input's scheduled send time
    per_minute: dict[int, list[float]] = {}
    for seen in tail.of(topics.CONFIRMATIONS):
        index = index_of[seen.exec_id]
        sent = schedule.started + index / RATE
        per_minute.setdefault(int((sent - schedule.started) // 60), []).append(seen.arrived - sent)
    p99 = {
        minute: round(statistics.quantiles(values, n=100)[98], 3)
        for minute, values in sorted(per_minute.items())
        if len(values) > 100
    }
    rss = [float(s[0]) for s in samples]
    table = [float(s[1]) for s in samples]
    rss_mid, rss_end = level(rss)
    table_mid, table_end = level(table)
    verdict.notes.append(f"RSS KiB every {SAMPLE_S:.0f}s: {[int(r) for r in rss]}")
    verdict.notes.append(f"table keys every {SAMPLE_S:.0f}s: {[int(t) for t in table]}")
    verdict.notes.append(
        f"keys per table, middle and last sample: {per_table[len(per_table) // 2]}, {per_table[-1]}"
    )
    verdict.notes.append(f"table files KiB every {SAMPLE_S:.0f}s: {[s[2] for s in samples]}")
    verdict.notes.append(f"p99 latency s per minute: {p99}")
    verdict.notes.append(f"worker CPU while streaming at {RATE:g} inputs/s: {cores:.3f} cores")
    verdict.notes.append(
        f"RSS middle/last third {rss_mid:.0f}/{rss_end:.0f} KiB, "
        f"table keys {table_mid:.0f}/{table_end:.0f}"
    )
    verdict.record()
    verdict.assert_clean()
    # a bound on runaway growth: the default ten minutes still warm the caches up in their
    # middle third; the engine issue's 5 % over 30 minutes is measured (EXECDIST_SOAK_S=1800)
    # and reported in BENCHMARKS.md
    assert rss_end <= rss_mid * 1.25, "RSS keeps growing"
    assert table_end <= table_mid * 1.25 + 200, "the tables keep growing"
    minutes = list(p99.values())
    if len(minutes) >= 4:
        early = statistics.median(minutes[1:3])
        late = statistics.median(minutes[-2:])
        assert late <= early * 2 + 0.5, f"latency drifts: {p99}"
