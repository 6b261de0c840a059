"""The pipeline under load: workers, subscriptions, saturation and fixed-rate runs.

One configuration (W workers, S subscriptions) at a time, each from nothing: every topic is
deleted, ``execdist worker --processes W`` starts W worker processes with a fresh app id, S
subscriptions are created over REST, each matching one account (``ACC-i``); the generator
spreads orders round-robin over those accounts, so every execution comes out on
``execdist.confirmations`` and on exactly one subscriber topic whatever S is. The checker reads
all subscriber topics.

Saturation is found by draining a backlog, sized adaptively from a small probe so that the
drain takes about ``target_seconds`` whatever the worker's speed; then the fixed-rate runs go at
the given fractions of it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import instructions
from bench.common import (
    ADMIN_TOKEN,
    BROKER,
    REGISTRY_URL,
    CpuMeter,
    broker_pid,
    reset_topics,
    rounded,
    say,
)
from bench.load import CheckSpec, LoadSpec, Measurement, measure


@dataclass(frozen=True)
class PipelinePlan:
    fractions: tuple[float, ...]
    """Fixed rates, as fractions of the saturation rate found for the configuration."""
    rate_seconds: float
    """Length of each fixed-rate run."""
    target_seconds: float
    """How long the saturation backlog should take to drain."""
    rates: tuple[float, ...] = ()
    """Fixed rates in executions/s, whatever the saturation: the quiet end of the day (latency
    at 50/s, and the cores a worker keeps busy at 100/s)."""
    probe_events: int = 400
    max_events: int = 1_000_000
    grace_seconds: float = 20.0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports free now (a worker's children take web and
    gRPC ports ``base + i``)."""
    import socket

    for _ in range(50):
        base = free_port()
        if base + count > 65535:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no {count} consecutive free ports found")


@dataclass
class WorkerProcess:
    """``execdist worker --processes N``: the configuration's N worker processes on this host,
    as an SRE runs them (N group members under one supervisor; with N = 1 the worker itself)."""

    app_id: str
    workdir: Path
    processes: int = 1
    env: dict[str, str] = field(default_factory=dict)
    """Settings of this run beyond the bench's own (``EXECDIST_COMMIT_INTERVAL_MS``, say)."""
    process: subprocess.Popen[bytes] | None = None
    web_port: int = 0
    """Process i serves HTTP on ``web_port + i``."""

    def __post_init__(self) -> None:
        self.web_port = free_ports(self.processes)

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.web_port + i}" for i in range(self.processes)]

    @property
    def log_path(self) -> Path:
        return self.workdir / f"worker-{self.web_port}.log"

    def start(self) -> None:
        env = {
            **os.environ,
            "EXECDIST_BROKER": BROKER,
            "EXECDIST_SCHEMA_REGISTRY_URL": REGISTRY_URL,
            "EXECDIST_APP_ID": self.app_id,
            "EXECDIST_DATA_DIR": str(self.workdir / f"data-{self.web_port}"),
            "EXECDIST_ADMIN_TOKEN": ADMIN_TOKEN,
            "EXECDIST_GRPC_PORT": str(free_ports(self.processes)),
            "EXECDIST_WORKER_ID": f"bench-{self.web_port}",
            "EXECDIST_LOG_LEVEL": "warning",
            **self.env,
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "execdist"),
                    "worker",
                    "--processes",
                    str(self.processes),
                    "--web-port",
                    str(self.web_port),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        """The supervisor stops every worker and exits if one of them exits."""
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        try:
            return all(
                httpx.get(f"{url}/health/ready", timeout=1).status_code == 200 for url in self.urls
            )
        except httpx.HTTPError:
            return False

    def pids(self) -> list[int]:
        """The worker processes: the supervisor's children (with one, the process itself)."""
        if self.process is None:
            return []
        if self.processes == 1:
            return [self.process.pid]
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except OSError:
            return []

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(30 + 5 * self.processes)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Cluster:
    """The W worker processes of one configuration: ``execdist worker --processes W``."""

    def __init__(self, workers: int, env: dict[str, str] | None = None) -> None:
        self.app_id = f"bench-{uuid.uuid4().hex[:8]}"
        self.workdir = Path(tempfile.mkdtemp(prefix="execdist-bench-"))
        self.worker = WorkerProcess(self.app_id, self.workdir, workers, dict(env or {}))

    @property
    def urls(self) -> list[str]:
        """Each worker process's HTTP address."""
        return self.worker.urls

    @property
    def url(self) -> str:
        """The first worker process's HTTP address (any of them answers for the cluster)."""
        return self.worker.urls[0]

    def start(self, timeout: float = 120.0) -> float:
        started = time.monotonic()
        self.worker.start()
        deadline = started + timeout
        while not self.worker.ready():
            if not self.worker.alive():
                raise RuntimeError(f"a worker exited during start-up:\n{self.worker.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not ready within {timeout:.0f}s")
            time.sleep(0.3)
        return time.monotonic() - started

    def alive(self) -> bool:
        return self.worker.alive()

    def pids(self) -> list[int]:
        return self.worker.pids()

    def log_tail(self) -> str:
        return self.worker.log_tail()

    def stop(self, keep_logs: Path | None = None) -> None:
        self.worker.stop()
        if keep_logs is not None and self.worker.log_path.exists():
            keep_logs.mkdir(parents=True, exist_ok=True)
            shutil.copy(self.worker.log_path, keep_logs / self.worker.log_path.name)


async def create_subscriptions(
    url: str, first: int, count: int, concurrency: int = 32
) -> list[str]:
    """Subscriptions ``first`` .. ``count - 1``, the i-th matching account ``ACC-i``; returns
    their topics in that order."""
    topics: list[str] = [""] * (count - first)
    gate = asyncio.Semaphore(concurrency)
    tag = uuid.uuid4().hex[:6]
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=120
    ) as http:

        async def one(i: int) -> None:
            async with gate:
                response = await http.post(
                    "/api/v1/subscriptions",
                    json={"name": f"bench-{tag}-{i}", "filter": {"accounts": [f"ACC-{i}"]}},
                )
            if response.status_code != 201:
                raise RuntimeError(f"creating a subscription failed: {response.text}")
            topics[i - first] = str(response.json()["topic"])

        await asyncio.gather(*(one(i) for i in range(first, count)))
    return topics


@dataclass
class Configuration:
    workers: int
    subscriptions: int


def run_worker_count(
    workers: int,
    subscription_counts: list[int],
    plan: PipelinePlan,
    logs: Path,
    deadline: float,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every subscription count with one cluster of ``workers`` workers, fewest first: the
    subscriptions of a step stay and the next step adds to them (each matches its own account,
    and the load only uses the accounts of the step's subscriptions).

    Returns (saturation records, fixed-rate runs). Steps that would start after ``deadline``
    (time.monotonic) are recorded as skipped.
    """
    saturations: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    if time.monotonic() > deadline:
        say(f"{workers}w: skipped, the run's time budget is spent")
        return [
            {"workers": workers, "subscriptions": n, "skipped": True} for n in subscription_counts
        ], runs
    deleted = asyncio.run(reset_topics())
    say(f"{workers}w: {deleted} topics deleted; starting {workers} worker(s)")
    cluster = Cluster(workers)
    try:
        startup = cluster.start()
    except RuntimeError as exc:
        cluster.stop(keep_logs=logs / f"{workers}w")
        say(f"{workers}w: failed to start: {exc}")
        return [
            {"workers": workers, "subscriptions": n, "error": f"start-up: {exc}"}
            for n in subscription_counts
        ], runs
    say(f"{workers}w: ready after {startup:.1f}s")
    sub_topics: list[str] = []
    try:
        for count in sorted(subscription_counts):
            config = Configuration(workers, count)
            label = f"{workers}w/{count}s"
            record: dict[str, Any] = {"workers": workers, "subscriptions": count}
            saturations.append(record)
            if time.monotonic() > deadline:
                say(f"{label}: skipped, the run's time budget is spent")
                record["skipped"] = True
                continue
            if not cluster.alive():
                record["error"] = "a worker had died earlier"
                continue
            began = time.monotonic()
            say(f"{label}: creating {count - len(sub_topics)} subscriptions")
            sub_topics += asyncio.run(create_subscriptions(cluster.url, len(sub_topics), count))
            time.sleep(2.0)  # in force on every worker within a second
            record["subscribe_s"] = round(time.monotonic() - began, 1)
            record["startup_s"] = round(startup, 1)
            say(f"{label}: {count} subscriptions in force after {record['subscribe_s']}s")
            record["warmup_s"] = warm_up_subscriptions(cluster, sub_topics, config, label)
            try:
                runs += run_configuration(cluster, sub_topics, config, plan, record, label)
            except RuntimeError as exc:
                record["error"] = str(exc)
                say(f"{label}: failed: {exc}")
    finally:
        cluster.stop(keep_logs=logs / f"{workers}w")
    return saturations, runs


WARMUP_PASSES = 2
"""Drains over every subscriber topic before a step's saturation drains. The second pass over
hundreds of new subscriber topics was slow in every run (a produce request unanswered for the
whole message timeout while the broker wrote the first pass's transaction markers, the
transaction failed and redone: BENCHMARKS.md, twenty-second pass), the passes after it fast:
a deployment's subscriber topics are long-lived, so the step measures after two passes."""


def warm_up_subscriptions(
    cluster: Cluster, sub_topics: list[str], config: Configuration, label: str
) -> float:
    """Drain :data:`WARMUP_PASSES` backlogs of one order (four executions) for each of the
    step's subscriptions, not measured; returns how long they took, in seconds."""
    began = time.monotonic()
    for number in range(1, WARMUP_PASSES + 1):
        run = f"W{uuid.uuid4().hex[:7]}"
        events = 4 * config.subscriptions
        say(f"{label}: warm-up pass {number} over every subscriber topic ({events:,} executions)")
        measure(
            LoadSpec(run=run, events=events, rate=None, accounts=config.subscriptions),
            CheckSpec(run=run, topics=sub_topics),
            timeout_s=DRAIN_MAX_S,
            grace_s=DRAIN_MAX_S,
            label=label,
            alive=cluster.alive,
            stall_s=DRAIN_STALL_S,
            max_s=DRAIN_MAX_S,
        )
    return round(time.monotonic() - began, 1)


DRAIN_STALL_S = 30.0
"""A drain or a fixed-rate run ends this long after its last record arrived, if not all have:
longer than a transaction the broker times out (10 s) and the worker redoes."""
DRAIN_MAX_S = 600.0
"""And lasts no longer than this in all, however slowly its records keep arriving."""

STAGES = {
    "wait": ("execdist_record_wait_seconds", ("topic", "executions")),
    "process": ("execdist_stage_seconds", ("stage", "process")),
    "commit": ("execdist_stage_seconds", ("stage", "commit")),
    "offsets": ("execdist_stage_seconds", ("stage", "offsets")),
    "produce": ("execdist_stage_seconds", ("stage", "produce")),
    "end": ("execdist_stage_seconds", ("stage", "end")),
}
"""The worker's histograms behind the latency breakdown: an execution's wait for its batch (per
record; the positions fold's records, a second hop that may lag, are not in it), then its
batch's processing and commit (per batch), and within the commit its three waits for the
broker: putting the offsets in, the records' acknowledgements, and the transaction's end."""
WITHIN_COMMIT = ("offsets", "produce", "end")
"""Stages that are parts of the commit, not after it."""


def scrape_stages(cluster: Cluster) -> dict[str, tuple[float, float]]:
    """(sum, count) of each stage's histogram, over the cluster's workers."""
    totals = {stage: (0.0, 0.0) for stage in STAGES}
    for url in cluster.urls:
        try:
            text = httpx.get(f"{url}/metrics", timeout=5).text
        except httpx.HTTPError:
            continue
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                for stage, (name, (label, value)) in STAGES.items():
                    if sample.labels.get(label) != value:
                        continue
                    total, count = totals[stage]
                    if sample.name == f"{name}_sum":
                        totals[stage] = (total + sample.value, count)
                    elif sample.name == f"{name}_count":
                        totals[stage] = (total, count + sample.value)
    return totals


def stage_breakdown(
    before: dict[str, tuple[float, float]],
    after: dict[str, tuple[float, float]],
    mean_ms: float | None,
) -> dict[str, float | None]:
    """Where a record's time went, in mean milliseconds: waiting for its batch (from its
    timestamp), its batch's processing, its batch's commit (with its offsets, produce and end
    parts), and the rest of the end-to-end
    mean (the generator's send, the broker, becoming visible to a read_committed reader)."""
    result: dict[str, float | None] = {}
    for stage in STAGES:
        total = after[stage][0] - before[stage][0]
        count = after[stage][1] - before[stage][1]
        result[f"{stage}_ms"] = rounded(total / count * 1000, 2) if count else None
    parts = [result[f"{stage}_ms"] for stage in STAGES if stage not in WITHIN_COMMIT]
    if mean_ms is not None and all(p is not None for p in parts):
        result["rest_ms"] = rounded(mean_ms - sum(p for p in parts if p is not None), 2)
    else:
        result["rest_ms"] = None
    return result


def run_configuration(
    cluster: Cluster,
    sub_topics: list[str],
    config: Configuration,
    plan: PipelinePlan,
    saturation: dict[str, Any],
    label: str,
) -> list[dict[str, Any]]:
    """Saturation (into ``saturation``) and the fixed-rate runs of one configuration."""
    runs: list[dict[str, Any]] = []
    eps = find_saturation(cluster, sub_topics, config, plan, saturation, label)
    if not cluster.alive():
        saturation["error"] = "a worker died during the saturation run"
        return runs
    if not saturation.get("complete"):
        saturation["error"] = "the backlog was not drained in time; fixed-rate runs skipped"
        return runs
    steps: list[tuple[float | None, float]] = [
        (fraction, max(eps * fraction, 1.0)) for fraction in plan.fractions
    ]
    steps += [(None, rate) for rate in plan.rates]
    for fraction, rate in steps:
        run = f"P{uuid.uuid4().hex[:7]}"
        what = "a fixed rate" if fraction is None else f"{fraction:.0%} of saturation"
        say(f"{label}: {what}, {rate:,.1f} executions/s for {plan.rate_seconds:g}s")
        meter = CpuMeter(cluster.pids()).start()
        stages_before = scrape_stages(cluster)
        timeout = plan.rate_seconds + plan.grace_seconds + 30
        result = measure(
            LoadSpec(
                run=run,
                events=max(int(rate * plan.rate_seconds), 1),
                rate=rate,
                accounts=config.subscriptions,
            ),
            CheckSpec(run=run, topics=sub_topics),
            timeout_s=timeout,
            grace_s=plan.grace_seconds,
            label=label,
            alive=cluster.alive,
            # a transaction the broker timed out and the worker redid arrives late, not never
            stall_s=DRAIN_STALL_S,
            max_s=timeout + DRAIN_STALL_S,
        )
        cpu, wall = meter.stop()
        summary = result.summary()
        record = {
            "workers": config.workers,
            "subscriptions": config.subscriptions,
            "fraction": fraction,
            "rate_eps": round(rate, 1),
            **summary,
            "worker_cores": round(cpu / wall, 2),
            "stages": stage_breakdown(stages_before, scrape_stages(cluster), summary["mean_ms"]),
            "complete": result.complete,
        }
        runs.append(record)
        say(
            f"{label}: p50 {record['p50_ms']} ms, p99 {record['p99_ms']} ms, "
            f"p99.9 {record['p999_ms']} ms, max {record['max_ms']} ms; delivered "
            f"{record['delivered']}, lost {record['lost']}, duplicates {record['duplicates']}"
        )
        if not cluster.alive():
            record["error"] = "a worker died during the run"
            say(f"{label}: a worker died:\n{cluster.log_tail()}")
            break
    return runs


SATURATION_ATTEMPTS = 6
CONVERGED = 0.2
"""A drain's pace within this fraction of the drain's before it: the worker is at its steady
rate, no longer warming up (new subscriber topics, caches, the first transactions)."""
STEADY_S = 1.0
"""A drain shorter than this, from the first sent to the last received, is too short to
compare a pace with: its records arrive in one or two transactions."""


def drain_pace(drain: Measurement) -> float:
    """Executions per second from the first sent to the last received: slower than the
    reported rate by one transaction's latency, never faster. A short drain's own arrivals come
    in a few clumps (one per committed transaction), so their span says little; this is what
    sizes the next backlog and says whether the rate has settled."""
    whole = drain.check.last_arrival - drain.load.first_stamp
    return drain.check.unique / whole if whole > 0 and drain.check.unique else 0.0


def _per_event(count: int | None, drain: Measurement) -> int | None:
    return round(count / drain.check.unique) if count and drain.check.unique else None


def find_saturation(
    cluster: Cluster,
    sub_topics: list[str],
    config: Configuration,
    plan: PipelinePlan,
    record: dict[str, Any],
    label: str,
) -> float:
    """Drain backlogs, each sized from the pace of the one before, until one takes at least
    half the target time at a pace that has settled (within :data:`CONVERGED` of the previous
    drain's, which lasted :data:`STEADY_S` at least); return its rate."""
    events = plan.probe_events
    eps = 0.0
    previous_pace = 0.0
    pid = broker_pid()
    for attempt in range(SATURATION_ATTEMPTS):
        run = f"S{uuid.uuid4().hex[:7]}"
        say(f"{label}: saturation, draining a backlog of {events:,} executions")
        meter = CpuMeter(cluster.pids()).start()
        broker_meter = CpuMeter([pid] if pid else []).start()
        counted = instructions.Meter(cluster.pids()).start()
        broker_counted = instructions.Meter([pid] if pid else []).start()
        limit = plan.target_seconds * 3 + 30
        drain = measure(
            LoadSpec(run=run, events=events, rate=None, accounts=config.subscriptions),
            CheckSpec(run=run, topics=sub_topics),
            timeout_s=limit,
            grace_s=limit,
            label=label,
            alive=cluster.alive,
            # a drain slower than the probe promised is measured to its end, not cut off
            stall_s=DRAIN_STALL_S,
            max_s=DRAIN_MAX_S,
        )
        cpu, wall = meter.stop()
        broker_cpu, _ = broker_meter.stop()
        worker_instructions, broker_instructions = counted.stop(), broker_counted.stop()
        eps = drain.check.steady_eps or drain.throughput_eps or 0.0
        span = drain.check.last_arrival - drain.check.first_arrival
        pace = drain_pace(drain)
        summary = drain.summary()
        record.update(
            {
                "saturation_eps": round(eps, 1),
                "backlog_events": drain.load.sent,
                "drain_s": round(span, 1),
                "complete": drain.complete,
                "lost": summary["lost"],
                "duplicates": summary["duplicates"],
                "worker_cpu_us_per_event": rounded(cpu / drain.check.unique * 1e6, 1)
                if drain.check.unique
                else None,
                "broker_cpu_us_per_event": rounded(broker_cpu / drain.check.unique * 1e6, 1)
                if drain.check.unique and pid
                else None,
                "worker_cores": round(cpu / wall, 2),
                # steadier than the CPU seconds above from hour to hour (bench.instructions)
                "worker_instructions_per_event": _per_event(worker_instructions, drain),
                "broker_instructions_per_event": _per_event(broker_instructions, drain),
                "attempts": attempt + 1,
            }
        )
        say(
            f"{label}: {eps:,.1f} executions/s over a {span:.1f}s drain, {pace:,.0f}/s from "
            f"the first sent ({record['worker_cores']} worker cores busy; lost "
            f"{summary['lost']}, duplicates {summary['duplicates']})"
        )
        if not drain.complete or not cluster.alive() or pace <= 0:
            break
        settled = previous_pace > 0 and abs(pace - previous_pace) <= CONVERGED * pace
        if (span >= plan.target_seconds * 0.5 and settled) or events >= plan.max_events:
            break
        whole = drain.check.last_arrival - drain.load.first_stamp
        previous_pace = pace if whole >= STEADY_S else 0.0
        # grow at least two-fold (a short drain's pace is low by a transaction's latency) and
        # at most sixteen-fold on one measurement
        events = min(max(int(pace * plan.target_seconds), events * 2), events * 16, plan.max_events)
    return eps


def quiet_worker_with_interval(
    rate: float, seconds: float, interval_ms: int, logs: Path
) -> dict[str, Any]:
    """One worker with one subscription and ``EXECDIST_COMMIT_INTERVAL_MS=interval_ms``,
    open-loop at ``rate`` executions/s: its cores and its latency, to set beside the default
    (latency first, one transaction per batch) at the same rate in the same run."""
    label = f"1w/1s, commit interval {interval_ms} ms"
    record: dict[str, Any] = {"commit_interval_ms": interval_ms, "rate_eps": rate}
    asyncio.run(reset_topics())
    cluster = Cluster(1, env={"EXECDIST_COMMIT_INTERVAL_MS": str(interval_ms)})
    try:
        cluster.start()
        sub_topics = asyncio.run(create_subscriptions(cluster.url, 0, 1))
        time.sleep(2.0)
        run = f"Q{uuid.uuid4().hex[:7]}"
        say(f"{label}: {rate:,.0f} executions/s for {seconds:g}s")
        meter = CpuMeter(cluster.pids()).start()
        result = measure(
            LoadSpec(run=run, events=max(int(rate * seconds), 1), rate=rate, accounts=1),
            CheckSpec(run=run, topics=sub_topics),
            timeout_s=seconds + 60,
            grace_s=20,
            label=label,
            alive=cluster.alive,
            stall_s=DRAIN_STALL_S,
            max_s=seconds + 60 + DRAIN_STALL_S,
        )
        cpu, wall = meter.stop()
        record.update({**result.summary(), "worker_cores": round(cpu / wall, 3)})
        say(
            f"{label}: {record['worker_cores']} worker cores, p50 {record['p50_ms']} ms, "
            f"p99 {record['p99_ms']} ms; lost {record['lost']}, duplicates "
            f"{record['duplicates']}"
        )
    except RuntimeError as exc:
        record["error"] = str(exc)
        say(f"{label}: failed: {exc}")
    finally:
        cluster.stop(keep_logs=logs / f"interval-{interval_ms}")
    return record
