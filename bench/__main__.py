"""``python -m bench [--quick]``: ceilings and pipeline in one run; writes the results.

Ceilings first (broker, exactly-once hop floor, aiokafka relays in the full run), then the
pipeline, then the exactly-once hop floor again at the pipeline's own fixed rates, so that each
pipeline latency has the floor at the same rate beside it (``python -m bench.ceilings`` for the
floor alone), and the processors alone (``bench.process_cost``) beside the worker's drains.

Expects the broker and registry of ``make bench`` (``EXECDIST_BROKER``,
``EXECDIST_SCHEMA_REGISTRY_URL``); ``make bench`` and ``make bench-quick`` start and stop them.
Writes ``bench/results/latest.json``, ``bench/results/latest.png`` and the generated part of
``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from typing import Any

from bench import process_cost
from bench.ceilings import CeilingPlan, broker_ceiling, eos_floor_at, floor_ceilings, relay_ceiling
from bench.common import RESULTS, say
from bench.pipeline import PipelinePlan, quiet_worker_with_interval, run_worker_count
from bench.report import machine, write_results

PROCESSORS_EVENTS = 20_000
"""Executions fed to the processors alone: about 10 s here, the count steady to about 1 %."""

PROFILES: dict[str, dict[str, Any]] = {
    "quick": {
        "ceilings": CeilingPlan(
            broker_records=300_000,
            broker_seconds=11,
            broker_latency_seconds=3,
            e2e_messages=200,
            relay_target_seconds=3,
            relay_latency_seconds=4,
            relay_transactional=False,
            relay_aiokafka=False,
            floors=((1, True), (4, True)),
            floor_target_seconds=3,
            floor_latency_seconds=4,
        ),
        "pipeline": PipelinePlan(fractions=(0.5,), rate_seconds=6, target_seconds=6),
        "configurations": [(1, [1, 100, 1000]), (2, [100])],
        "pipeline_budget_s": 260,
    },
    "full": {
        "ceilings": CeilingPlan(
            broker_records=2_000_000,
            broker_seconds=30,
            broker_latency_seconds=10,
            e2e_messages=2000,
            relay_target_seconds=10,
            relay_latency_seconds=15,
            relay_transactional=True,
            floors=((1, True), (4, True), (1, False), (4, False)),
            floor_target_seconds=5,
            floor_latency_seconds=10,
        ),
        "pipeline": PipelinePlan(
            fractions=(0.25, 0.5, 0.75), rates=(50, 100), rate_seconds=15, target_seconds=12
        ),
        "configurations": [(1, [1, 100, 1000]), (2, [1, 100, 1000])],
        "pipeline_budget_s": 960,
        # a quiet worker trading latency for CPU: EXECDIST_COMMIT_INTERVAL_MS at 100/s
        "commit_intervals": [(100.0, 15.0, 100)],
    },
}


def floor_at_pipeline_rates(runs: list[dict[str, Any]], plan: PipelinePlan) -> list[dict[str, Any]]:
    """The exactly-once hop floor (4 outputs, as the pipeline writes per execution) at each
    fixed rate of the reference configuration (1 worker, fewest subscriptions), measured after
    the workers have stopped: what the pipeline would have at that rate if its logic cost
    nothing."""
    single = [r for r in runs if r["workers"] == 1]
    if not single:
        return []
    fewest = min(r["subscriptions"] for r in single)
    rates = sorted({r["rate_eps"] for r in single if r["subscriptions"] == fewest})
    return [eos_floor_at(rate, 4, plan.rate_seconds) for rate in rates]


def processors_alone() -> dict[str, Any]:
    """``bench.process_cost``: the processors' own cost per execution, counted in instructions
    where perf can, so that it compares across hours (CPU seconds alone elsewhere)."""
    say(f"the processors alone: {PROCESSORS_EVENTS:,} executions (bench.process_cost)")
    return process_cost.measured(["--events", str(PROCESSORS_EVENTS)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the short run (under 3 minutes)")
    parser.add_argument(
        "--only", choices=("ceilings", "pipeline"), help="run one part (for development)"
    )
    args = parser.parse_args(argv)
    name = "quick" if args.quick else "full"
    profile = PROFILES[name]
    began = time.time()
    host = machine()  # the load and the host's speed before the run adds its own
    say(f"{name} run; results go to {RESULTS}")
    ceilings: dict[str, Any] = {}
    if args.only in (None, "ceilings"):
        plan: CeilingPlan = profile["ceilings"]
        ceilings.update(broker_ceiling(plan))
        ceilings.update(floor_ceilings(plan))
        if plan.relay_aiokafka:
            relay = relay_ceiling(plan, transactional=False)
            ceilings.update(
                {"relay_eps": relay["eps"], "relay_p99_ms": relay["fixed_rate"]["p99_ms"]}
            )
            ceilings["relay"] = relay
        if plan.relay_aiokafka and plan.relay_transactional:
            tx = relay_ceiling(plan, transactional=True)
            ceilings.update(
                {"relay_tx_eps": tx["eps"], "relay_tx_p99_ms": tx["fixed_rate"]["p99_ms"]}
            )
            ceilings["relay_transactional"] = tx
    saturations: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    interval_runs: list[dict[str, Any]] = []
    if args.only in (None, "pipeline"):
        pipeline: PipelinePlan = profile["pipeline"]
        deadline = time.monotonic() + profile["pipeline_budget_s"]
        for workers, counts in profile["configurations"]:
            measured_saturations, measured_runs = run_worker_count(
                workers, counts, pipeline, RESULTS / "logs", deadline
            )
            saturations += measured_saturations
            runs += measured_runs
        for rate, seconds, interval_ms in profile.get("commit_intervals", []):
            interval_runs.append(
                quiet_worker_with_interval(rate, seconds, interval_ms, RESULTS / "logs")
            )
        if runs:
            ceilings["eos_floor_at_pipeline_rates"] = floor_at_pipeline_rates(runs, pipeline)
        ceilings["processors"] = processors_alone()
    settings = {
        "profile": name,
        "ceilings": asdict(profile["ceilings"]),
        "pipeline": asdict(profile["pipeline"]),
        "configurations": profile["configurations"],
        "seconds": round(time.time() - began, 1),
    }
    paths = write_results(settings, ceilings, saturations, runs, interval_runs, host=host)
    say("done: " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
