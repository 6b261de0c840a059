"""Fan-out measurement: many concurrent WebSocket clients, latency from produce to receipt.

Starts one worker against the broker named by ``EXECDIST_BROKER``, creates ``--subscriptions``
subscriptions (subscription *i* matches account ``FAN-<run>-<i>`` only), connects ``--clients``
WebSocket clients spread evenly over them from ``--processes`` client processes, and then,
for each mode asked for:

``relay``
    produces confirmations straight into the subscription topics (``execdist.sub.<id>``),
    open-loop at ``--rate`` per second spread round-robin over the subscriptions. This measures
    the relay alone, produce (so topic append) to WebSocket receipt, whatever the pipeline
    does.
``pipeline``
    produces an order and its execution open-loop at ``--rate`` executions per second, the
    account round-robin over the subscriptions, so every confirmation reaches exactly the
    clients of one subscription. This measures the whole path, produce to WebSocket receipt.

Each record carries its intended send time (open-loop schedule, so a producer that falls
behind does not hide the wait) in ``exec_time``; a client's latency for a frame is its receipt
time minus that stamp. Before measuring, warm-up records go to every subscription until every
client has received one, so no client is counted as missing frames it could not have seen.
Per client the bench counts the frames expected and received (duplicates and losses by
``exec_id``) and how the connection ended (1013 = closed as too slow). The worker's CPU time
over each measurement is reported too (per frame delivered): on a shared machine it is a
steadier figure than the latencies, which include waiting for a CPU. ``--profile`` records
the worker with py-spy (``bench/results/fanout-profile-<mode>.txt``, raw collapsed stacks).

    python -m bench.fanout --clients 1000 --subscriptions 100 --rate 200 --seconds 30

Writes ``bench/results/fanout.json`` and prints a summary; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import queue as queue_module
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.sharedctypes import SynchronizedArray
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition

RESULTS = Path(__file__).parent / "results"
BROKER = os.environ.get("EXECDIST_BROKER", "127.0.0.1:9092")
TOKEN = "bench-admin-token"

# Slots of each client process in the shared progress array.
CONNECTED, WARMED, FRAMES, CLOSED_1013, CLOSED_OTHER, FAILED = range(6)
SLOTS = 6


def say(text: str) -> None:
    sys.stderr.write(f"[fanout {time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


def free_port(start: int = 26000) -> int:
    """A free port at or above ``start``, below the kernel's ephemeral range so nothing else
    grabs it by chance (binding port 0 would hand out one from that range)."""
    for port in range(start, start + 2000):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit(f"no free port in {start}..{start + 2000}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuShares:
    """Cores each part of the run kept busy over a measurement: the worker, the broker, the
    client processes and this process (the generator and the broker-floor reader). On a
    shared 2-core machine the latencies mean little without them."""

    def __init__(self, parts: dict[str, list[int]]) -> None:
        self.parts = parts
        self.started: dict[str, float] = {}
        self.wall = 0.0

    def _now(self) -> dict[str, float]:
        used = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in self.parts.items()}
        times = os.times()
        used["bench (generator, broker floor)"] = times.user + times.system
        return used

    def start(self) -> None:
        self.started = self._now()
        self.wall = time.monotonic()

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.wall
        return {
            name: round((value - self.started[name]) / wall, 3)
            for name, value in self._now().items()
        }


def broker_pid() -> int | None:
    """The broker started by ``scripts/infra.sh`` for this run, if it says where."""
    folder = os.environ.get("EXECDIST_INFRA_DIR")
    if not folder:
        return None
    try:
        return int((Path(folder) / "kafka.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(int(q * len(ordered)), len(ordered) - 1)], 2)


# --------------------------------------------------------------------------------------------
# the worker


def start_worker(workdir: Path, web_port: int | None = None) -> tuple[subprocess.Popen[bytes], int]:
    port = web_port or free_port(26000)
    env = {
        **os.environ,
        "EXECDIST_BROKER": BROKER,
        "EXECDIST_APP_ID": f"bench-fanout-{uuid.uuid4().hex[:6]}",
        "EXECDIST_DATA_DIR": str(workdir / "data"),
        "EXECDIST_ADMIN_TOKEN": TOKEN,
        "EXECDIST_GRPC_PORT": str(free_port(port + 1)),
        "EXECDIST_LOG_LEVEL": "warning",
    }
    log = (workdir / "worker.log").open("wb")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "execdist"),
            *("worker", "--processes", "1", "--web-port", str(port)),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                return process, port
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.2)
    process.terminate()
    raise SystemExit(f"the worker did not become ready; see {workdir / 'worker.log'}")


async def input_backlog() -> int:
    """Records already in the input topics: a new worker reads them all before the bench's."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKER)
    await admin.start()
    try:
        described = await admin.describe_topics(["orders", "executions"])
    finally:
        await admin.close()
    tps = [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        if not topic.get("error_code")
        for partition in topic["partitions"]
    ]
    if not tps:
        return 0
    consumer = AIOKafkaConsumer(bootstrap_servers=BROKER, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
        beginnings = await consumer.beginning_offsets(tps)
        return sum(ends[tp] - beginnings[tp] for tp in tps)
    finally:
        # aiokafka's group-less consumer, stopped right after it started, re-raises the
        # cancellation of its own internal task
        await asyncio.sleep(0.1)
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()


def create_subscriptions(port: int, count: int, run: str) -> list[dict[str, Any]]:
    subscriptions = []
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    ) as http:
        for index in range(count):
            response = http.post(
                "/api/v1/subscriptions",
                json={
                    "name": f"fanout-{run}-{index:03d}",
                    "filter": {"accounts": [account_of(run, index)]},
                },
            )
            response.raise_for_status()
            body = response.json()
            subscriptions.append({"id": body["id"], "token": body["token"], "topic": body["topic"]})
    return subscriptions


def account_of(run: str, index: int) -> str:
    return f"FAN-{run}-{index:03d}"


# --------------------------------------------------------------------------------------------
# the client processes


@dataclass(slots=True)
class ClientTally:
    subscription: int
    seen: dict[str, set[str]] = field(default_factory=dict)  # mode -> exec ids
    frames: Counter[str] = field(default_factory=Counter)  # mode -> frames incl. repeats
    warmed: set[str] = field(default_factory=set)  # modes whose warm-up frame arrived
    close_code: int | None = None
    error: str | None = None


def client_process(
    slot: int,
    port: int,
    targets: list[tuple[int, str, str]],
    progress: SynchronizedArray[int],
    stop: Any,
    results: multiprocessing.Queue[Any],
    compress: int = 0,
) -> None:
    """The WebSocket clients of one process: ``targets`` are (subscription index, id, token);
    ``compress`` 15 offers permessage-deflate as browsers do, 0 does not.

    Counts into ``progress[slot * SLOTS + ...]`` while running; when ``stop`` is set, puts
    ``(slot, tallies, latencies by mode)`` on ``results``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    base = slot * SLOTS
    latencies: dict[str, list[float]] = {}
    tallies = [ClientTally(index) for index, _, _ in targets]

    def bump(what: int) -> None:
        progress[base + what] += 1

    async def one(tally: ClientTally, session: aiohttp.ClientSession, url: str) -> None:
        try:
            async with session.ws_connect(
                url, heartbeat=None, max_msg_size=0, compress=compress
            ) as ws:
                bump(CONNECTED)
                async for message in ws:
                    received = time.time()
                    if message.type != aiohttp.WSMsgType.TEXT:
                        break
                    frame = orjson.loads(message.data)
                    if frame["type"] != "confirmation":
                        continue
                    data = frame["data"]
                    exec_id: str = data["exec_id"]
                    if exec_id.startswith("WARM-"):
                        warm_mode = exec_id.split("-", 2)[1]  # WARM-<mode>-...
                        if warm_mode not in tally.warmed:
                            tally.warmed.add(warm_mode)
                            bump(WARMED)
                        continue
                    mode = exec_id.split("-", 2)[1]  # M-<mode>-...
                    tally.frames[mode] += 1
                    tally.seen.setdefault(mode, set()).add(exec_id)
                    sent = datetime.fromisoformat(data["exec_time"]).timestamp()
                    latencies.setdefault(mode, []).append((received - sent) * 1000)
                    bump(FRAMES)
                tally.close_code = ws.close_code
                if ws.close_code == 1013:
                    bump(CLOSED_1013)
                elif not stop.is_set():
                    bump(CLOSED_OTHER)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            tally.error = repr(exc)
            bump(FAILED)

    async def main() -> None:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            tasks = []
            for tally, (_, subscription_id, token) in zip(tallies, targets, strict=True):
                url = (
                    f"ws://127.0.0.1:{port}/api/v1/subscriptions/{subscription_id}/stream"
                    f"?from=latest&token={token}"
                )
                tasks.append(asyncio.create_task(one(tally, session, url)))
                await asyncio.sleep(0.005)  # spread the handshakes a little
            while not stop.is_set():
                await asyncio.sleep(0.2)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    results.put(
        (
            slot,
            [
                {
                    "subscription": t.subscription,
                    "seen": {m: len(ids) for m, ids in t.seen.items()},
                    "frames": dict(t.frames),
                    "warmed": sorted(t.warmed),
                    "close_code": t.close_code,
                    "error": t.error,
                }
                for t in tallies
            ],
            latencies,
        )
    )


# --------------------------------------------------------------------------------------------
# producing


def confirmation(exec_id: str, account: str, at: float) -> dict[str, Any]:
    """A confirmation as the pipeline writes it, for producing straight into a sub topic."""
    when = stamp(at)
    return {
        "confirmation_id": exec_id,
        "exec_id": exec_id,
        "order_id": exec_id,
        "account": account,
        "symbol": "AAPL",
        "side": "BUY",
        "venue": "XNAS",
        "exec_type": "TRADE",
        "ref_exec_id": None,
        "seq": 1,
        "last_qty": "100",
        "last_px": "187.45",
        "cum_qty": "100",
        "leaves_qty": "0",
        "avg_px": "187.45000000",
        "order_qty": "100",
        "order_status": "FILLED",
        "exec_time": when,
        "confirmed_at": when,
    }


def order_and_execution(
    exec_id: str, account: str, at: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    when = stamp(at)
    order = {
        "order_id": exec_id,
        "account": account,
        "symbol": "AAPL",
        "side": "BUY",
        "quantity": "100",
        "order_type": "MARKET",
        "limit_price": None,
        "currency": "USD",
        "version": 1,
        "event_time": when,
    }
    execution = {
        "exec_id": exec_id,
        "order_id": exec_id,
        "seq": 1,
        "exec_type": "TRADE",
        "ref_exec_id": None,
        "last_qty": "100",
        "last_px": "187.45",
        "venue": "XNAS",
        "exec_time": when,
    }
    return order, execution


class Feed:
    """Writes one record for subscription ``index`` in the way ``mode`` asks.

    librdkafka (confluent-kafka), not aiokafka: ``produce`` only queues the record, and the
    sending happens in librdkafka's own threads, so the schedule does not wait on a Python
    client (aiokafka cost about five times the CPU per record here, and the generator fell
    hundreds of milliseconds behind at 2,000 records/s)."""

    def __init__(self, mode: str, run: str, subscriptions: list[dict[str, Any]]) -> None:
        self.mode = mode
        self.run = run
        self.subscriptions = subscriptions
        self.producer = Producer(
            {"bootstrap.servers": BROKER, "linger.ms": 5, "enable.idempotence": True}
        )

    async def __aenter__(self) -> Feed:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.flush()

    async def flush(self) -> None:
        remaining = await asyncio.to_thread(self.producer.flush, 30.0)
        if remaining:
            raise RuntimeError(f"{remaining} records not delivered within 30 s")

    def send(self, exec_id: str, index: int, at: float) -> None:
        account = account_of(self.run, index)
        key = exec_id.encode()
        if self.mode == "relay":
            topic = self.subscriptions[index]["topic"]
            value = orjson.dumps(confirmation(exec_id, account, at))
            self.producer.produce(topic, value, key)
        else:
            order, execution = order_and_execution(exec_id, account, at)
            self.producer.produce("orders", orjson.dumps(order), key)
            self.producer.produce("executions", orjson.dumps(execution), key)
        self.producer.poll(0)


# --------------------------------------------------------------------------------------------
# the run


class Progress:
    def __init__(self, array: SynchronizedArray[int], processes: int) -> None:
        self.array = array
        self.processes = processes

    def total(self, what: int) -> int:
        return sum(self.array[p * SLOTS + what] for p in range(self.processes))

    def line(self) -> str:
        return (
            f"connected {self.total(CONNECTED)}, warmed {self.total(WARMED)}, "
            f"frames {self.total(FRAMES)}, closed 1013 {self.total(CLOSED_1013)}, "
            f"closed otherwise {self.total(CLOSED_OTHER)}, failed {self.total(FAILED)}"
        )


async def wait_until(condition: Any, timeout: float, progress: Progress, what: str) -> bool:
    deadline = time.monotonic() + timeout
    last_report = 0.0
    while not condition():
        if time.monotonic() > deadline:
            say(f"gave up waiting for {what} after {timeout:g} s: {progress.line()}")
            return False
        if time.monotonic() - last_report > 3:
            say(f"waiting for {what}: {progress.line()}")
            last_report = time.monotonic()
        await asyncio.sleep(0.1)
    return True


async def warm_up(
    mode: str,
    run: str,
    subscriptions: list[dict[str, Any]],
    progress: Progress,
    timeout: float,
) -> bool:
    """Warm-up records to every subscription, once a second, until every client still
    connected saw one."""
    deadline = time.monotonic() + timeout
    round_ = 0
    baseline = progress.total(WARMED)

    def all_warm() -> bool:
        live = (
            progress.total(CONNECTED) - progress.total(CLOSED_1013) - progress.total(CLOSED_OTHER)
        )
        return progress.total(WARMED) - baseline >= live

    async with Feed(mode, run, subscriptions) as feed:
        while not all_warm():
            if time.monotonic() > deadline:
                say(f"warm-up incomplete after {timeout:g} s: {progress.line()}")
                return False
            for index in range(len(subscriptions)):
                feed.send(f"WARM-{mode}-{run}-{round_}-{index}", index, time.time())
            await feed.flush()
            round_ += 1
            say(f"warm-up round {round_} ({mode}): {progress.line()}")
            step_end = time.monotonic() + (1.0 if mode == "relay" else 3.0)
            while time.monotonic() < step_end:
                if all_warm():
                    break
                await asyncio.sleep(0.1)
    return True


async def measure(
    mode: str,
    run: str,
    subscriptions: list[dict[str, Any]],
    progress: Progress,
    rate: float,
    seconds: float,
    expected_total: int,
    drain_s: float,
    worker_pid: int,
    shares: CpuShares,
    steady_s: float = 0.0,
) -> dict[str, Any]:
    """Open-loop production; returns what was sent per subscription and how far behind
    schedule the producer ever was. The first ``steady_s`` seconds at the rate are warm-up
    records, not measured: a freshly started broker compiles its hot paths (the JVM's JIT)
    in its first minute of load, and the figure is of the steady state."""
    total = int(rate * seconds)
    per_subscription = [0] * len(subscriptions)
    behind_max = 0.0
    frames_before = progress.total(FRAMES)
    say(f"{mode}: producing {total} records at {rate:g}/s for {seconds:g} s")
    floor: BrokerFloor | None = None
    if mode == "relay":
        floor = BrokerFloor([s["topic"] for s in subscriptions[:FLOOR_TOPICS]], f"M-{mode}-{run}-")
        await floor.start()
    async with Feed(mode, run, subscriptions) as feed:
        if steady_s > 0:
            say(f"{mode}: {steady_s:g} s at {rate:g}/s before measuring (warm-up, not counted)")
            start = time.time()
            for n in range(int(rate * steady_s)):
                delay = start + n / rate - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                feed.send(f"WARM-{mode}-{run}-steady-{n}", n % len(subscriptions), time.time())
            await feed.flush()
        cpu_start, wall_start = cpu_seconds(worker_pid), time.monotonic()
        shares.start()
        start = time.time()
        next_report = time.monotonic() + 2
        for n in range(total):
            intended = start + n / rate
            delay = intended - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                behind_max = max(behind_max, -delay)
            index = n % len(subscriptions)
            feed.send(f"M-{mode}-{run}-{n:08d}", index, intended)
            per_subscription[index] += 1
            if time.monotonic() > next_report:
                next_report = time.monotonic() + 2
                say(
                    f"{mode}: sent {n + 1}/{total}, frames received "
                    f"{progress.total(FRAMES) - frames_before} (of {expected_total} expected "
                    f"in all); {progress.line()}"
                )
        await feed.flush()
    # let the last records arrive: stop when all are in, or nothing moved for a while
    say(f"{mode}: all sent; draining")
    deadline = time.monotonic() + drain_s
    last, last_move = -1, time.monotonic()
    while time.monotonic() < deadline:
        got = progress.total(FRAMES) - frames_before
        if got >= expected_total:
            break
        if got != last:
            last, last_move = got, time.monotonic()
        elif time.monotonic() - last_move > 5:
            break
        await asyncio.sleep(0.1)
    cpu = cpu_seconds(worker_pid) - cpu_start
    wall = time.monotonic() - wall_start
    cores = shares.stop()
    floor_latencies = (
        await floor.stop(sum(per_subscription[:FLOOR_TOPICS])) if floor is not None else []
    )
    say(f"{mode}: frames received {progress.total(FRAMES) - frames_before} of {expected_total}")
    return {
        "per_subscription": per_subscription,
        "behind_max_s": behind_max,
        "total": total,
        "worker_cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "load_average": os.getloadavg(),
        "broker_floor_latencies": floor_latencies,
        "cores": cores,
    }


FLOOR_TOPICS = 10
"""The broker floor reads this many of the subscription topics: enough for its percentiles,
few enough that its fetches (librdkafka has no incremental fetch sessions, so each carries
every partition it reads) add little to the broker's work."""


class BrokerFloor:
    """The broker's own produce -> read_committed fetch latency, measured in the same run: one
    plain librdkafka consumer of some subscription topics (no group, read_committed, as the
    relay's live feed reads) in a thread of its own, stamping each measured record on receipt
    against its intended send time, as the clients do. What the relay adds is the clients'
    latency above this."""

    def __init__(self, topic_names: list[str], prefix: str) -> None:
        self.topic_names = topic_names
        self.prefix = prefix.encode()
        self.latencies: list[float] = []
        self.consumer = Consumer(
            {
                "bootstrap.servers": BROKER,
                "group.id": f"fanout-floor-{uuid.uuid4().hex[:6]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 500,
            }
        )
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._read, name="broker-floor", daemon=True)

    async def start(self) -> None:
        def assign_at_end() -> None:
            metadata = self.consumer.list_topics(timeout=30)
            tps = []
            for name in self.topic_names:
                for partition in metadata.topics[name].partitions:
                    tp = KafkaTopicPartition(name, partition)
                    _, high = self.consumer.get_watermark_offsets(tp, timeout=30)
                    tps.append(KafkaTopicPartition(name, partition, high))
            self.consumer.assign(tps)

        await asyncio.to_thread(assign_at_end)
        self._thread.start()

    def _read(self) -> None:
        while not self._stopping.is_set():
            # what is fetched already, else wait for the first record (``consume`` with a
            # timeout would hold what it has until it is full or the timeout passes)
            messages = self.consumer.consume(1000, 0)
            if not messages:
                first = self.consumer.poll(0.2)
                messages = [] if first is None else [first]
            now = time.time()
            for message in messages:
                key = message.key()
                if message.error() is not None or key is None or not key.startswith(self.prefix):
                    continue
                value = message.value()
                assert value is not None
                sent = datetime.strptime(
                    orjson.loads(value)["exec_time"], "%Y-%m-%dT%H:%M:%S.%fZ"
                ).replace(tzinfo=UTC)
                self.latencies.append((now - sent.timestamp()) * 1000)

    async def stop(self, expected: int, wait_s: float = 10.0) -> list[float]:
        deadline = time.monotonic() + wait_s
        while len(self.latencies) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        self._stopping.set()
        await asyncio.to_thread(self._thread.join)
        self.consumer.close()
        return self.latencies


def summarize(
    mode: str,
    args: argparse.Namespace,
    sent: dict[str, Any],
    tallies: list[dict[str, Any]],
    latencies: list[float],
) -> dict[str, Any]:
    per_subscription = sent["per_subscription"]
    expected = received = unique = duplicates = missing = complete = 0
    for tally in tallies:
        want = per_subscription[tally["subscription"]]
        got = tally["frames"].get(mode, 0)
        distinct = tally["seen"].get(mode, 0)
        expected += want
        received += got
        unique += distinct
        duplicates += got - distinct
        missing += max(want - distinct, 0)
        complete += distinct == want
    ordered = sorted(latencies)
    closes = Counter(str(t["close_code"]) for t in tallies if t["close_code"] is not None)
    return {
        "mode": mode,
        "clients": len(tallies),
        "subscriptions": args.subscriptions,
        "clients_per_subscription": args.clients / args.subscriptions,
        "clients_offer_deflate": args.compress,
        "rate_per_s": args.rate,
        "rate_unit": (
            "confirmations/s written to the subscription topics"
            if mode == "relay"
            else "executions/s (each with its order) written to the input topics"
        ),
        "seconds": args.seconds,
        "records_produced": sent["total"],
        "producer_behind_schedule_max_ms": round(sent["behind_max_s"] * 1000, 2),
        "frames_expected": expected,
        "frames_received": received,
        "frames_unique": unique,
        "frames_missing": missing,
        "frames_duplicate": duplicates,
        "clients_complete": complete,
        "clients_closed_1013": closes.get("1013", 0),
        "close_codes": dict(closes),
        "clients_failed": sum(1 for t in tallies if t["error"]),
        "worker_cpu_s": sent["worker_cpu_s"],
        "worker_cpu_share": round(sent["worker_cpu_s"] / sent["wall_s"], 3),
        "worker_cpu_us_per_frame": (
            round(sent["worker_cpu_s"] * 1e6 / received, 1) if received else None
        ),
        "load_average_after": [round(x, 2) for x in sent["load_average"]],
        "cores_busy": sent.get("cores"),
        "latency_ms": {
            "samples": len(ordered),
            "mean": round(sum(ordered) / len(ordered), 2) if ordered else None,
            "p50": percentile(ordered, 0.50),
            "p90": percentile(ordered, 0.90),
            "p99": percentile(ordered, 0.99),
            "p999": percentile(ordered, 0.999),
            "max": round(ordered[-1], 2) if ordered else None,
        },
        "broker_floor_ms": latency_summary(sent.get("broker_floor_latencies") or []),
    }


def latency_summary(latencies: list[float]) -> dict[str, Any] | None:
    if not latencies:
        return None
    ordered = sorted(latencies)
    return {
        "samples": len(ordered),
        "p50": percentile(ordered, 0.50),
        "p90": percentile(ordered, 0.90),
        "p99": percentile(ordered, 0.99),
        "max": round(ordered[-1], 2),
    }


def show(result: dict[str, Any]) -> str:
    latency = result["latency_ms"]
    return "\n".join(
        [
            f"== {result['mode']}: {result['clients']} clients over {result['subscriptions']} "
            f"subscriptions, {result['rate_per_s']:g} {result['rate_unit']}, "
            f"{result['seconds']:g} s",
            f"   latency ms  p50 {latency['p50']}  p90 {latency['p90']}  p99 {latency['p99']}  "
            f"p99.9 {latency['p999']}  max {latency['max']}  ({latency['samples']} samples)",
            f"   frames      expected {result['frames_expected']}  received "
            f"{result['frames_received']}  missing {result['frames_missing']}  duplicate "
            f"{result['frames_duplicate']}",
            f"   clients     complete {result['clients_complete']}/{result['clients']}  "
            f"closed 1013 {result['clients_closed_1013']}  failed {result['clients_failed']}",
            f"   worker      {result['worker_cpu_s']} CPU-s ({result['worker_cpu_share']:.0%} of a "
            f"core), {result['worker_cpu_us_per_frame']} us per frame delivered; load average "
            f"{result['load_average_after'][0]}",
            f"   producer    at most {result['producer_behind_schedule_max_ms']} ms behind "
            "schedule",
        ]
        + (
            [
                f"   broker      produce -> read_committed fetch, same run: p50 {floor['p50']}  "
                f"p90 {floor['p90']}  p99 {floor['p99']}  max {floor['max']}  "
                f"({floor['samples']} samples)"
            ]
            if (floor := result.get("broker_floor_ms"))
            else []
        )
        + (
            [
                "   cores busy  "
                + ", ".join(f"{name} {value:.2f}" for name, value in cores.items())
                + f" (of {os.cpu_count()})"
            ]
            if (cores := result.get("cores_busy"))
            else []
        )
    )


def start_profiler(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        say("py-spy not found; --profile ignored (pip install py-spy)")
        return None
    say(f"profiling the worker (pid {pid}) for {seconds:g} s into {out}")
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "-p",
            str(pid),
            "-f",
            "raw",
            "-o",
            str(out),
            "-d",
            str(int(seconds)),
            "-r",
            "200",
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:6]
    workdir = Path(tempfile.mkdtemp(prefix="execdist-fanout-"))
    backlog = asyncio.run(input_backlog()) if "pipeline" in args.modes else 0
    if backlog:
        say(
            f"warning: the input topics already hold {backlog} records, which the new worker "
            "reads first; the pipeline figures will include that (make fanout starts a fresh "
            "broker)"
        )
    say(f"starting a worker against {BROKER} (log: {workdir / 'worker.log'})")
    worker, port = start_worker(workdir, args.web_port)
    say(f"worker pid {worker.pid} ready on port {port}")
    ctx = multiprocessing.get_context("spawn")
    progress_array = ctx.Array("q", args.processes * SLOTS, lock=False)
    progress = Progress(progress_array, args.processes)
    stop = ctx.Event()
    results: multiprocessing.Queue[Any] = ctx.Queue()
    processes: list[Any] = []
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
        },
        "started": stamp(time.time()),
        "input_records_before_start": backlog,
        "results": {},
    }
    try:
        say(f"creating {args.subscriptions} subscriptions")
        subscriptions = create_subscriptions(port, args.subscriptions, run_id)
        time.sleep(1.5)  # "in force on every worker within one second"
        targets = [
            (
                i % args.subscriptions,
                subscriptions[i % args.subscriptions]["id"],
                subscriptions[i % args.subscriptions]["token"],
            )
            for i in range(args.clients)
        ]
        for slot in range(args.processes):
            share = targets[slot :: args.processes]
            process = ctx.Process(
                target=client_process,
                args=(
                    slot,
                    port,
                    share,
                    progress_array,
                    stop,
                    results,
                    15 if args.compress else 0,
                ),
                daemon=True,
            )
            process.start()
            processes.append(process)
        say(f"{args.clients} clients connecting from {args.processes} processes")

        broker = broker_pid()
        shares = CpuShares(
            {
                "worker": [worker.pid],
                "broker": [] if broker is None else [broker],
                "clients": [p.pid for p in processes if p.pid is not None],
            }
        )

        async def phases() -> None:
            await wait_until(
                lambda: progress.total(CONNECTED) + progress.total(FAILED) >= args.clients,
                60 + args.clients / 50,
                progress,
                "the clients to connect",
            )
            for mode in args.modes:
                await warm_up(mode, run_id, subscriptions, progress, args.warmup_timeout)
                counts = [0] * args.subscriptions
                for i in range(int(args.rate * args.seconds)):
                    counts[i % args.subscriptions] += 1
                expected_total = sum(counts[s] for s, _, _ in targets)
                profiler = None
                if args.profile and mode in args.profile_modes:
                    profiler = start_profiler(
                        worker.pid,
                        args.seconds,
                        RESULTS / f"fanout-profile-{mode}.txt",
                    )
                sent = await measure(
                    mode,
                    run_id,
                    subscriptions,
                    progress,
                    args.rate,
                    args.seconds,
                    expected_total,
                    args.drain,
                    worker.pid,
                    shares,
                    args.steady,
                )
                if profiler is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        profiler.wait(15)
                report["results"][mode] = {"sent": sent}
                if worker.poll() is not None:
                    say(f"the worker exited (code {worker.returncode}); see {workdir}")
                    break

        asyncio.run(phases())
    finally:
        stop.set()
        collected: list[tuple[int, list[dict[str, Any]], dict[str, list[float]]]] = []
        for _ in processes:
            try:
                collected.append(results.get(timeout=60))
            except queue_module.Empty:
                say("a client process did not report back")
                break
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.terminate()
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
    tallies = [t for _, part, _ in sorted(collected, key=lambda c: c[0]) for t in part]
    for mode, entry in list(report["results"].items()):
        latencies = [x for _, _, lat in collected for x in lat.get(mode, [])]
        report["results"][mode] = summarize(mode, args, entry["sent"], tallies, latencies)
    errors = [t["error"] for t in tallies if t["error"]]
    if errors:
        report["client_errors_sample"] = errors[:5]
    report["worker_log"] = str(workdir / "worker.log")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument(
        "--rate",
        type=float,
        default=200.0,
        help="records per second (see the modes for which records)",
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument(
        "--modes",
        default="relay,pipeline",
        help="comma-separated: relay (sub topics directly), pipeline (inputs)",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=30.0,
        help="longest wait for the last frames after the last record",
    )
    parser.add_argument("--warmup-timeout", type=float, default=90.0)
    parser.add_argument(
        "--steady",
        type=float,
        default=15.0,
        help="seconds at the measured rate before measuring (warm-up records, not counted)",
    )
    parser.add_argument("--web-port", type=int, default=None)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record the worker with py-spy (raw) during the measured modes",
    )
    parser.add_argument("--profile-modes", default="relay,pipeline")
    parser.add_argument(
        "--compress",
        action="store_true",
        help="clients offer permessage-deflate, as browsers do (the worker declines it: a "
        "frame's bytes are written as they are to every client of the subscription)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "fanout.json")
    args = parser.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    args.profile_modes = [m.strip() for m in args.profile_modes.split(",") if m.strip()]
    if not set(args.modes) <= {"relay", "pipeline"} or not args.modes:
        parser.error("--modes takes relay and/or pipeline")
    if args.clients < args.subscriptions:
        parser.error("--clients must be at least --subscriptions")

    report = run(args)
    report["command"] = " ".join(["python -m bench.fanout", *(argv or sys.argv[1:])])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    lines = [show(result) for result in report["results"].values()]
    sys.stdout.write("\n".join(lines) + f"\n(written to {args.output})\n")
    return 0 if report["results"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
