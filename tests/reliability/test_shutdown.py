"""Clean stops and pauses: a worker stopped with SIGTERM, and one of two workers paused with
SIGSTOP for longer than the session timeout, then resumed.

SIGTERM is a clean shutdown: the worker commits what it has and leaves the group, so its
partitions move at once (no wait for the session timeout) and nothing is output twice.
A worker paused past the session timeout loses its partitions to the other one, whose new
transactional producers fence it: when it resumes, whatever it still tries to commit is refused,
so nothing it wrote is committed twice.
"""

from __future__ import annotations

import asyncio

import pytest

from execdist import topics
from tests.integration.conftest import Worker
from tests.reliability.support import QUIET, pause, status_of
from tests.reliability.verifier import Fault, Feed, OutputTail, log, stream, verify

pytestmark = pytest.mark.integration

SESSION_TIMEOUT_S = 6.0
"""For the SIGSTOP scenario: short, so that a pause of 15 s is well beyond it."""
HANDOVER_SESSION_TIMEOUT_S = 10.0
"""For the SIGTERM scenario: a crashed worker's partitions would stall at least this long."""


@pytest.mark.reliability_quick
async def test_sigterm_is_a_clean_handover(cluster) -> None:
    env = {**QUIET, "EXECDIST_SESSION_TIMEOUT_S": str(HANDOVER_SESSION_TIMEOUT_S)}
    worker_a = cluster(**env)
    cluster(**env)
    feed = Feed.seeded("TERM", seed=31)
    tail = await OutputTail([topics.CONFIRMATIONS]).start()
    exit_codes: list[int | None] = []

    async def stop(worker: Worker) -> None:
        exit_codes.append(await asyncio.to_thread(worker.stop))
        log(f"worker {worker.web_port} exited with {exit_codes[-1]} after SIGTERM")

    # the stopped worker stays down: what is measured is the handover alone
    faults = [Fault(0.4, f"SIGTERM worker {worker_a.web_port}", lambda: stop(worker_a))]
    schedule = await stream(feed, faults)
    verdict = await verify("sigterm", feed, tail, schedule)
    verdict.notes.append(f"exit code after SIGTERM: {exit_codes}")
    verdict.record()
    verdict.assert_clean()
    assert exit_codes == [0]
    # a clean handover does not wait for the group to notice a silent member
    assert max(verdict.recovery_s) < HANDOVER_SESSION_TIMEOUT_S, verdict.summary()


async def test_sigstop_past_the_session_timeout_fences_the_paused_worker(cluster) -> None:
    env = {**QUIET, "EXECDIST_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S)}
    worker_a = cluster(**env)
    worker_b = cluster(**env)
    feed = Feed.seeded("STOP", seed=47)
    tail = await OutputTail([topics.CONFIRMATIONS]).start()
    paused_for = SESSION_TIMEOUT_S * 2 + 3
    faults = [
        Fault(
            0.3,
            f"SIGSTOP worker {worker_b.web_port} for {paused_for:.0f}s, then SIGCONT",
            lambda: pause(worker_b, paused_for),
        )
    ]
    schedule = await stream(feed, faults)
    verdict = await verify("sigstop > session timeout", feed, tail, schedule)
    alive = [w.process is not None and w.process.poll() is None for w in (worker_a, worker_b)]
    text = worker_b.log_path.read_text(errors="replace")
    # the pipeline's words for a refused commit (older and current wording)
    fenced = sum(text.count(m) for m in ("belongs to another worker", "handing it back"))
    verdict.notes.append(f"workers alive at the end: {alive}; paused worker fenced {fenced} times")
    if verdict.lost:
        verdict.notes.append(f"status after the drain: {await status_of(worker_a)}")
    verdict.record()
    verdict.assert_clean()
