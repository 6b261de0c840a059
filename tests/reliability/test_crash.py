"""Exactly once through crashes: two workers, one killed with SIGKILL at 20, 40 and 60 % of the
stream and restarted each time at once.

Every expected confirmation must be visible to a read_committed reader exactly once, in seq order
per order, on ``execdist.confirmations`` and on a subscriber's topic, and both workers must give
the final fill state of the orders afterwards.
"""

from __future__ import annotations

import pytest

from execdist import topics
from tests.integration.helpers import subscribe
from tests.reliability.support import (
    COMMIT_INTERVALS_MS,
    QUIET,
    commit_interval_id,
    crash_and_restart,
    scenario,
    state_mismatches,
)
from tests.reliability.verifier import Fault, Feed, OutputTail, log, stream, verify

pytestmark = [pytest.mark.integration, pytest.mark.reliability_quick]


@pytest.mark.parametrize("interval_ms", COMMIT_INTERVALS_MS, ids=commit_interval_id)
async def test_sigkill_three_times_loses_and_duplicates_nothing(cluster, interval_ms: str) -> None:
    env = {**QUIET, "EXECDIST_COMMIT_INTERVAL_MS": interval_ms}
    worker_a = cluster(**env)
    worker_b = cluster(**env)
    feed = Feed.seeded("KILL", seed=2024)
    subscription = await subscribe(worker_b, accounts=["ACC-EQ-01", "ACC-HF-07"])
    sub_topic = str(subscription["topic"])
    wanted = feed.matching(lambda c: c["account"] in ("ACC-EQ-01", "ACC-HF-07"))
    tail = await OutputTail([topics.CONFIRMATIONS, sub_topic]).start()

    name = f"SIGKILL worker {worker_a.web_port}, restart"
    faults = [Fault(at, name, lambda: crash_and_restart(worker_a)) for at in (0.2, 0.4, 0.6)]
    schedule = await stream(feed, faults)
    verdict = await verify(
        scenario("sigkill x3", interval_ms), feed, tail, schedule, {sub_topic: wanted}
    )

    sample = list(feed.expected)[:: max(len(feed.expected) // 40, 1)]
    wrong, unanswered = await state_mismatches([worker_a, worker_b], feed, sample)
    verdict.notes.append(
        f"state queries: {len(sample) * 2} asked, {len(wrong)} wrong, {len(unanswered)} unanswered"
    )
    verdict.notes.extend(unanswered[:3])
    verdict.record()
    log(f"wrong state answers: {wrong[:5]}")
    verdict.assert_clean()
    assert not wrong
