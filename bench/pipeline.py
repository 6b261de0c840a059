"""The pipeline under load: workers, subscriptions, saturation and fixed-rate runs.

One configuration (W workers, S subscriptions) at a time, each from nothing: every topic is
deleted, W ``execdist worker`` processes start with a fresh app id, S subscriptions are created
over REST, each matching one account (``ACC-i``); the generator spreads orders round-robin over
those accounts, so every execution comes out on ``execdist.confirmations`` and on exactly one
subscriber topic whatever S is. The checker reads all subscriber topics.

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
from bench.load import CheckSpec, LoadSpec, measure


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


@dataclass
class WorkerProcess:
    """One ``execdist worker`` of the configuration under test."""

    app_id: str
    workdir: Path
    web_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Settings of this run beyond the bench's own (``EXECDIST_COMMIT_INTERVAL_MS``, say)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

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
            "EXECDIST_GRPC_PORT": str(free_port()),
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
                    "1",
                    "--web-port",
                    str(self.web_port),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Cluster:
    """The W workers of one configuration."""

    def __init__(self, workers: int, env: dict[str, str] | None = None) -> None:
        self.app_id = f"bench-{uuid.uuid4().hex[:8]}"
        self.workdir = Path(tempfile.mkdtemp(prefix="execdist-bench-"))
        self.workers = [
            WorkerProcess(self.app_id, self.workdir, env=dict(env or {})) for _ in range(workers)
        ]

    def start(self, timeout: float = 120.0) -> float:
        started = time.monotonic()
        for worker in self.workers:
            worker.start()
        deadline = started + timeout
        pending = list(self.workers)
        while pending:
            pending = [w for w in pending if not w.ready()]
            dead = [w for w in self.workers if not w.alive()]
            if dead:
                raise RuntimeError(f"a worker exited during start-up:\n{dead[0].log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not ready within {timeout:.0f}s")
            time.sleep(0.3)
        return time.monotonic() - started

    def alive(self) -> bool:
        return all(w.alive() for w in self.workers)

    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers if w.process is not None]

    def stop(self, keep_logs: Path | None = None) -> None:
        for worker in self.workers:
            worker.stop()
        if keep_logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for worker in self.workers:
                if worker.log_path.exists():
                    shutil.copy(worker.log_path, keep_logs / worker.log_path.name)
        shutil.rmtree(self.workdir, ignore_errors=True)


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
            sub_topics += asyncio.run(
                create_subscriptions(cluster.workers[0].url, len(sub_topics), count)
            )
            time.sleep(2.0)  # in force on every worker within a second
            record["subscribe_s"] = round(time.monotonic() - began, 1)
            record["startup_s"] = round(startup, 1)
            say(f"{label}: {count} subscriptions in force after {record['subscribe_s']}s")
            try:
                runs += run_configuration(cluster, sub_topics, config, plan, record, label)
            except RuntimeError as exc:
                record["error"] = str(exc)
                say(f"{label}: failed: {exc}")
    finally:
        cluster.stop(keep_logs=logs / f"{workers}w")
    return saturations, runs


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
    "end": ("execdist_stage_seconds", ("stage", "end")),
}
"""The worker's histograms behind the latency breakdown: an execution's wait for its batch (per
record; the positions fold's records, a second hop that may lag, are not in it), then its
batch's processing and commit (per batch), and within the commit its two calls to the broker:
putting the offsets in, and ending the transaction (waiting for the records' acknowledgements
first)."""
WITHIN_COMMIT = ("offsets", "end")
"""Stages that are parts of the commit, not after it."""


def scrape_stages(cluster: Cluster) -> dict[str, tuple[float, float]]:
    """(sum, count) of each stage's histogram, over the cluster's workers."""
    totals = {stage: (0.0, 0.0) for stage in STAGES}
    for worker in cluster.workers:
        try:
            text = httpx.get(f"{worker.url}/metrics", timeout=5).text
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
    timestamp), its batch's processing, its batch's commit (with its offsets and end parts),
    and the rest of the end-to-end
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
            dead = next(w for w in cluster.workers if not w.alive())
            say(f"{label}: a worker died:\n{dead.log_tail()}")
            break
    return runs


def find_saturation(
    cluster: Cluster,
    sub_topics: list[str],
    config: Configuration,
    plan: PipelinePlan,
    record: dict[str, Any],
    label: str,
) -> float:
    """Drain backlogs until one takes at least half the target time; return its rate."""
    events = plan.probe_events
    eps = 0.0
    pid = broker_pid()
    for attempt in range(4):
        run = f"S{uuid.uuid4().hex[:7]}"
        say(f"{label}: saturation, draining a backlog of {events:,} executions")
        meter = CpuMeter(cluster.pids()).start()
        broker_meter = CpuMeter([pid] if pid else []).start()
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
        eps = drain.check.steady_eps or drain.throughput_eps or 0.0
        span = drain.check.last_arrival - drain.check.first_arrival
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
                "attempts": attempt + 1,
            }
        )
        say(
            f"{label}: {eps:,.1f} executions/s over a {span:.1f}s drain "
            f"({record['worker_cores']} worker cores busy; lost {summary['lost']}, "
            f"duplicates {summary['duplicates']})"
        )
        if not drain.complete or not cluster.alive():
            break
        if span >= plan.target_seconds * 0.5 or events >= plan.max_events or eps <= 0:
            break
        # a short drain's rate is rough (its records arrive in a few clumps, one per commit
        # or per fetch of a batch reader): grow the backlog at most 16-fold on it
        events = min(max(int(eps * plan.target_seconds), events * 2), events * 16, plan.max_events)
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
        sub_topics = asyncio.run(create_subscriptions(cluster.workers[0].url, 0, 1))
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
