"""Workers scaled 1 -> 2 -> 1 while the stream runs: the partitions (and their state) move to the
new worker and back, and the state queries stay right on every worker throughout."""

from __future__ import annotations

import asyncio

import pytest

from execdist import topics
from tests.integration.conftest import Worker
from tests.reliability.support import (
    COMMIT_INTERVALS_MS,
    QUIET,
    commit_interval_id,
    completed_orders,
    ready,
    scenario,
    state_mismatches,
)
from tests.reliability.verifier import Fault, Feed, OutputTail, log, stream, verify

pytestmark = [pytest.mark.integration, pytest.mark.reliability_quick]


@pytest.mark.parametrize("interval_ms", COMMIT_INTERVALS_MS, ids=commit_interval_id)
async def test_scale_out_and_in_while_streaming(cluster, interval_ms: str) -> None:
    env = {**QUIET, "EXECDIST_COMMIT_INTERVAL_MS": interval_ms}
    first = cluster(**env)
    second = cluster(start=False, **env)
    feed = Feed.seeded("SCALE", seed=5)
    tail = await OutputTail([topics.CONFIRMATIONS]).start()
    wrong: list[str] = []
    unanswered: list[str] = []
    asked = 0

    serving = [first]  # the workers whose web server is up

    async def scale_out() -> None:
        second.start()
        await ready(second)
        serving.append(second)
        log(f"worker {second.web_port} joined")

    async def scale_in() -> None:
        serving.remove(second)
        code = await asyncio.to_thread(second.stop)
        log(f"worker {second.web_port} left (exit code {code})")

    async def query(workers: list[Worker]) -> None:
        nonlocal asked
        orders = completed_orders(feed, tail, topics.CONFIRMATIONS, 10)
        bad, missing = await state_mismatches(workers, feed, orders)
        asked += len(orders) * len(workers)
        wrong.extend(bad)
        unanswered.extend(missing)

    async def every_so_often(index: int) -> None:
        # state queries while the stream runs, against whichever workers are up
        if index % 4000 == 0 and index:
            await query(list(serving))

    faults = [
        Fault(0.25, f"scale out: start worker {second.web_port}", scale_out),
        Fault(0.7, f"scale in: SIGTERM worker {second.web_port}", scale_in),
    ]
    schedule = await stream(feed, faults, between=every_so_often)
    verdict = await verify(scenario("scale 1 -> 2 -> 1", interval_ms), feed, tail, schedule)
    second.start()
    await ready(second)
    await query([first, second])
    verdict.notes.append(
        f"state queries: {asked} asked, {len(wrong)} wrong, {len(unanswered)} unanswered"
    )
    verdict.notes.extend(wrong[:3] + unanswered[:3])
    verdict.record()
    verdict.assert_clean()
    assert not wrong
