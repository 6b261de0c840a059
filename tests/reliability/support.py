"""What several scenarios do to workers and ask of them: restarts, pauses, state queries."""

from __future__ import annotations

import asyncio
import signal

import httpx

from tests.integration.conftest import ADMIN_TOKEN, Worker
from tests.reliability.verifier import Feed, OutputTail, log

QUIET = {"EXECDIST_LOG_LEVEL": "warning"}
"""Worker environment for scenarios: the pipeline's own logging off the shared cores."""

COMMIT_INTERVALS_MS = ["0", "100"]
"""``EXECDIST_COMMIT_INTERVAL_MS`` of the crash and scaling scenarios: latency first (a commit
per batch), and batches sharing a transaction for 100 ms, whose processed-but-uncommitted
records must commit when partitions leave and be redone after a kill."""


def commit_interval_id(interval_ms: str) -> str:
    return "latency-first" if interval_ms == "0" else f"commit-interval-{interval_ms}ms"


def scenario(name: str, interval_ms: str) -> str:
    """A scenario's name in the results, with its commit interval when it has one."""
    return name if interval_ms == "0" else f"{name}, commit interval {interval_ms} ms"


async def ready(worker: Worker, timeout: float = 120.0) -> None:
    await asyncio.to_thread(worker.wait_ready, timeout)


async def crash_and_restart(worker: Worker) -> None:
    """SIGKILL, then start the same worker again (same data dir, same port) at once."""
    worker.kill()
    worker.start()
    await ready(worker)
    log(f"worker {worker.web_port} ready again after SIGKILL")


async def pause(worker: Worker, seconds: float) -> None:
    """SIGSTOP for ``seconds``, then SIGCONT."""
    worker.signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(seconds)
    finally:
        worker.signal(signal.SIGCONT)
    log(f"worker {worker.web_port} resumed (SIGCONT) after {seconds:.0f}s stopped")


async def state_mismatches(
    workers: list[Worker], feed: Feed, order_ids: list[str]
) -> tuple[list[str], list[str]]:
    """Ask every worker for each order; the answers must match the expected final fill state.

    Returns the wrong answers and the requests that got no answer at all (a 5xx or a timeout
    while partitions move: reported, but not counted as wrong), both described.
    """
    wrong: list[str] = []
    unanswered: list[str] = []
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for worker in workers:
        async with httpx.AsyncClient(base_url=worker.url, headers=headers, timeout=10) as http:
            for order_id in order_ids:
                try:
                    response = await http.get(f"/api/v1/orders/{order_id}")
                except httpx.HTTPError as exc:
                    unanswered.append(f"{worker.web_port} {order_id}: {exc!r}")
                    continue
                if response.status_code >= 500:
                    answer = f"{response.status_code} {response.text[:200]}"
                    unanswered.append(f"{worker.web_port} {order_id}: {answer}")
                    continue
                final = feed.final_state(order_id)
                if response.status_code != 200:
                    wrong.append(f"{worker.web_port} {order_id}: {response.status_code}")
                    continue
                body = response.json()
                got = (body["cum_qty"], body["order_status"], body["last_seq"])
                want = (final["cum_qty"], final["order_status"], final["seq"])
                if got != want:
                    wrong.append(f"{worker.web_port} {order_id}: {got} != {want}")
    return wrong, unanswered


def completed_orders(feed: Feed, tail: OutputTail, topic: str, limit: int) -> list[str]:
    """Orders whose last confirmation is already committed: their state must be final."""
    seen = {r.exec_id for r in tail.of(topic)}
    done = [o for o, items in feed.expected.items() if str(items[-1]["exec_id"]) in seen]
    step = max(len(done) // limit, 1)
    return done[::step][:limit]


async def status_of(worker: Worker) -> object:
    """The worker's ``GET /api/v1/status`` (who holds which partition, lag), for the report."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        async with httpx.AsyncClient(base_url=worker.url, headers=headers, timeout=10) as http:
            response = await http.get("/api/v1/status")
    except httpx.HTTPError as exc:
        return repr(exc)
    return response.json() if response.status_code == 200 else response.status_code
