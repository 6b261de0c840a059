"""Fan-out measurement: many concurrent WebSocket clients, latency from produce to receipt.

Starts one worker against the local broker (``make up``), creates subscriptions that each
match one account, connects ``--clients`` WebSocket clients spread evenly over them (in two
client processes, so the clients do not share one event loop with the producer), produces
orders and executions open-loop at ``--rate`` executions per second, and measures for every
frame the time from the execution's intended send time (its ``exec_time``) to its receipt.

    python -m bench.fanout --clients 1000 --subscriptions 10 --rate 50 --seconds 20

Writes ``bench/results/fanout.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import httpx
import orjson
from aiokafka import AIOKafkaProducer

RESULTS = Path(__file__).parent / "results"
BROKER = os.environ.get("EXECDIST_BROKER", "127.0.0.1:9092")
TOKEN = "bench-admin-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_worker(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "EXECDIST_BROKER": BROKER,
        "EXECDIST_APP_ID": f"bench-fanout-{uuid.uuid4().hex[:6]}",
        "EXECDIST_DATA_DIR": str(workdir / "data"),
        "EXECDIST_ADMIN_TOKEN": TOKEN,
        "EXECDIST_GRPC_PORT": str(free_port()),
        "EXECDIST_LOG_LEVEL": "warning",
    }
    log = (workdir / "worker.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "execdist"), "worker", "--web-port", str(port)],
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
    raise SystemExit(f"the worker did not become ready; see {workdir / 'worker.log'}")


def client_process(
    port: int, targets: list[tuple[str, str]], seconds: float, queue: multiprocessing.Queue
) -> None:
    """Runs the WebSocket clients of one process; puts (latencies_ms, frames, closed) on queue."""
    latencies: list[float] = []
    closed = 0

    async def one(subscription_id: str, token: str, ready: asyncio.Event) -> None:
        nonlocal closed
        url = (
            f"ws://127.0.0.1:{port}/api/v1/subscriptions/{subscription_id}/stream"
            f"?from=latest&token={token}"
        )
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            ready.set()
            deadline = time.time() + seconds + 15
            while time.time() < deadline:
                try:
                    message = await ws.receive(timeout=max(deadline - time.time(), 0.1))
                except TimeoutError:
                    break
                if message.type != aiohttp.WSMsgType.TEXT:
                    closed += 1
                    return
                frame = orjson.loads(message.data)
                if frame["type"] == "confirmation":
                    sent = datetime.fromisoformat(frame["data"]["exec_time"].replace("Z", "+00:00"))
                    latencies.append((time.time() - sent.timestamp()) * 1000)

    async def main() -> None:
        events = [asyncio.Event() for _ in targets]
        tasks = [
            asyncio.create_task(one(s, t, e)) for (s, t), e in zip(targets, events, strict=True)
        ]
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if errors:
            sys.stderr.write(f"[fanout] {len(errors)} clients failed, e.g. {errors[0]!r}\n")

    asyncio.run(main())
    queue.put((latencies, len(latencies), closed))


async def produce(rate: float, seconds: float, accounts: list[str]) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=BROKER, linger_ms=1, enable_idempotence=True)
    await producer.start()
    sent = 0
    start = time.perf_counter()
    try:
        total = int(rate * seconds)
        for n in range(total):
            intended = start + n / rate
            delay = intended - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            order_id = f"FAN-{uuid.uuid4().hex[:10]}"
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            account = accounts[n % len(accounts)]
            order = {
                "order_id": order_id,
                "account": account,
                "symbol": "AAPL",
                "side": "BUY",
                "quantity": "100",
                "order_type": "MARKET",
                "limit_price": None,
                "currency": "USD",
                "version": 1,
                "event_time": now,
            }
            execution = {
                "exec_id": f"{order_id}-1",
                "order_id": order_id,
                "seq": 1,
                "exec_type": "TRADE",
                "ref_exec_id": None,
                "last_qty": "100",
                "last_px": "187.45",
                "venue": "XNAS",
                "exec_time": now,
            }
            key = order_id.encode()
            await producer.send("orders", orjson.dumps(order), key=key)
            await producer.send("executions", orjson.dumps(execution), key=key)
            sent += 1
    finally:
        await producer.stop()
    return sent


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(int(q * len(ordered)), len(ordered) - 1)], 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--subscriptions", type=int, default=10)
    parser.add_argument("--rate", type=float, default=50.0, help="executions per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="execdist-fanout-"))
    process, port = start_worker(workdir)
    try:
        accounts = [f"FAN-ACC-{i:02d}" for i in range(args.subscriptions)]
        subscriptions = []
        for account in accounts:
            response = httpx.post(
                f"http://127.0.0.1:{port}/api/v1/subscriptions",
                json={"name": f"fanout-{uuid.uuid4().hex[:6]}", "filter": {"accounts": [account]}},
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=30,
            )
            response.raise_for_status()
            body = response.json()
            subscriptions.append((body["id"], body["token"]))
        targets = [subscriptions[i % len(subscriptions)] for i in range(args.clients)]
        queue: multiprocessing.Queue = multiprocessing.Queue()
        workers = [
            multiprocessing.Process(
                target=client_process,
                args=(port, targets[i :: args.processes], args.seconds, queue),
            )
            for i in range(args.processes)
        ]
        for worker in workers:
            worker.start()
        print(f"[fanout] {args.clients} clients connecting to {args.subscriptions} subscriptions")
        time.sleep(max(5.0, args.clients / 200))
        print(f"[fanout] producing {args.rate:g} executions/s for {args.seconds:g} s")
        produced = asyncio.run(produce(args.rate, args.seconds, accounts))
        latencies: list[float] = []
        frames = closed = 0
        for _ in workers:
            got, count, shut = queue.get(timeout=args.seconds + 120)
            latencies.extend(got)
            frames += count
            closed += shut
        for worker in workers:
            worker.join(10)
        expected_frames = produced * (args.clients // args.subscriptions)
        result = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "clients": args.clients,
            "subscriptions": args.subscriptions,
            "rate_eps": args.rate,
            "seconds": args.seconds,
            "executions": produced,
            "frames_expected": expected_frames,
            "frames_received": frames,
            "clients_closed": closed,
            "latency_ms": {
                "p50": percentile(latencies, 0.50),
                "p99": percentile(latencies, 0.99),
                "p999": percentile(latencies, 0.999),
                "max": round(max(latencies), 2) if latencies else None,
            },
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "fanout.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    finally:
        process.terminate()
        process.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
