"""The ceilings of this machine, measured in the same run as the pipeline.

* The broker alone, with Kafka's own tools from the jars ``scripts/infra.sh install`` resolved:
  ``ProducerPerformance`` unthrottled (throughput) and open-loop at a fixed rate (send-to-ack
  latency), and ``EndToEndLatency`` (one record at a time, produce to consume).
* A plain aiokafka relay (:mod:`bench.relay`): the most a Python worker could do here.
* The floor of one exactly-once hop (:mod:`bench.eos_relay`, confluent-kafka): a relay with no
  logic that writes K records per input in one transaction per batch, K=4 for the pipeline's
  confirmation, subscriber record and two changelog records. Its drain rate is the most an
  exactly-once Python process could do here, its latency at a rate the least the pipeline could
  have at that rate; :func:`eos_floor_at` measures it at any rate (the pipeline's, say).

Same record size (one execution's JSON), partitions (4) and acks (all) as the pipeline.

``python -m bench.ceilings`` measures the exactly-once floors alone and prints them as JSON (no
results file is written); ``python -m bench.ceilings --at RATE`` measures the floor at one rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    BROKER,
    KAFKA_LIBS,
    PARTITIONS,
    ROOT,
    CpuMeter,
    broker_pid,
    create_topics,
    rounded,
    say,
)
from bench.eos_relay import output_topics
from bench.load import CheckSpec, LoadSpec, Measurement, measure, payload_size

PERF_LINE = re.compile(
    r"(?P<records>\d+) records sent, (?P<eps>[\d.]+) records/sec \((?P<mbs>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th, (?P<p999>\d+) ms 99.9th"
)
PERF_WINDOW = re.compile(
    r"(?P<records>\d+) records sent, (?P<eps>[\d.]+) records/sec \((?P<mbs>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency\.$"
)
E2E_AVG = re.compile(r"Avg latency: ([\d.]+) ms")
E2E_PERCENTILES = re.compile(r"50th = (\d+), 99th = (\d+), 99.9th = (\d+)")


@dataclass(frozen=True)
class CeilingPlan:
    broker_records: int
    """Records for the unthrottled producer run (at most)."""
    broker_seconds: float
    """How long the unthrottled producer run may take."""
    broker_latency_seconds: float
    """Length of the fixed-rate producer run."""
    e2e_messages: int
    relay_target_seconds: float
    """How long the relay's backlog should take to drain."""
    relay_latency_seconds: float
    relay_transactional: bool
    relay_aiokafka: bool = True
    """Measure the aiokafka relay (:mod:`bench.relay`) too; the quick run leaves it out."""
    floors: tuple[tuple[int, bool], ...] = ((1, True), (4, True))
    """The exactly-once floors to measure, as (outputs per input, transactional)."""
    floor_target_seconds: float = 3.0
    """How long the floor's backlog should take to drain."""
    floor_latency_seconds: float = 5.0
    """Length of the floor's fixed-rate run (at half its drain rate)."""
    floor_backlog: int = 100_000
    """First backlog of a floor's drain, resized once if it drains too fast."""


def java_command(main_class: str, args: list[str]) -> list[str]:
    return [
        "java",
        "-Xmx512m",
        f"-Dlog4j.configuration=file:{ROOT / 'scripts' / 'kafka' / 'log4j.properties'}",
        "-cp",
        f"{KAFKA_LIBS}/*",
        main_class,
        *args,
    ]


def java_tool(main_class: str, args: list[str], timeout: float) -> str:
    command = java_command(main_class, args)
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{main_class} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def producer_performance(
    topic: str, records: int, size: int, throughput: int, max_seconds: float | None = None
) -> dict[str, Any]:
    """Run ProducerPerformance; with ``max_seconds``, stop it then and sum up its 5-second
    reports (throughput, average and max latency only) instead of its final line."""
    command = java_command(
        "org.apache.kafka.tools.ProducerPerformance",
        [
            "--topic",
            topic,
            "--num-records",
            str(records),
            "--record-size",
            str(size),
            "--throughput",
            str(throughput),
            "--producer-props",
            f"bootstrap.servers={BROKER}",
            "acks=all",
            "linger.ms=1",
            "enable.idempotence=true",
        ],
    )
    started = time.monotonic()
    first_report: float | None = None  # the JVM's start-up does not count
    windows: list[re.Match[str]] = []
    summary: re.Match[str] | None = None
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            summary = PERF_LINE.search(line) or summary
            window = PERF_WINDOW.search(line)
            if window and summary is None:
                windows.append(window)
                first_report = first_report or time.monotonic()
            if (
                max_seconds is not None
                and first_report is not None
                and time.monotonic() - first_report > max_seconds
            ):
                process.terminate()
                break
        process.wait(30)
    if summary is not None:
        return {
            "records": int(summary["records"]),
            "eps": float(summary["eps"]),
            "mb_per_s": float(summary["mbs"]),
            "avg_ms": float(summary["avg"]),
            "p50_ms": float(summary["p50"]),
            "p99_ms": float(summary["p99"]),
            "p999_ms": float(summary["p999"]),
            "max_ms": float(summary["max"]),
        }
    if not windows:
        raise RuntimeError("ProducerPerformance reported nothing")
    if len(windows) > 1 and int(windows[-1]["records"]) > 0:
        windows = windows[1:]  # the first report includes the producer's warm-up
    sent = sum(int(w["records"]) for w in windows)
    # each report covers about 5 s (the tool's interval); records/eps gives it exactly
    seconds = sum(
        int(w["records"]) / float(w["eps"]) if float(w["eps"]) > 0 else 5.0 for w in windows
    )
    return {
        "records": sent,
        "eps": round(sent / seconds, 1) if seconds else 0.0,
        "mb_per_s": round(sum(float(w["mbs"]) for w in windows) / len(windows), 2),
        "avg_ms": round(sum(float(w["avg"]) for w in windows) / len(windows), 2),
        "p50_ms": None,
        "p99_ms": None,
        "p999_ms": None,
        "max_ms": max(float(w["max"]) for w in windows),
        "stopped_after_s": round(time.monotonic() - started, 1),
    }


def end_to_end_latency(topic: str, messages: int, size: int) -> dict[str, Any]:
    out = java_tool(
        "org.apache.kafka.tools.EndToEndLatency",
        [BROKER, topic, str(messages), "all", str(size)],
        timeout=300,
    )
    avg, percentiles = E2E_AVG.search(out), E2E_PERCENTILES.search(out)
    if avg is None or percentiles is None:
        raise RuntimeError(f"unexpected EndToEndLatency output: {out[-300:]}")
    return {
        "messages": messages,
        "avg_ms": float(avg[1]),
        "p50_ms": float(percentiles[1]),
        "p99_ms": float(percentiles[2]),
        "p999_ms": float(percentiles[3]),
    }


def broker_ceiling(plan: CeilingPlan) -> dict[str, Any]:
    size = payload_size()
    topic = f"bench.broker.{uuid.uuid4().hex[:6]}"
    asyncio.run(create_topics([topic, f"{topic}.e2e"], PARTITIONS))
    pid = broker_pid()
    say(
        f"broker ceiling: up to {plan.broker_records:,} records of {size} B or "
        f"{plan.broker_seconds:g}s, unthrottled, acks=all"
    )
    meter = CpuMeter([pid] if pid else []).start()
    unthrottled = producer_performance(
        topic, plan.broker_records, size, -1, max_seconds=plan.broker_seconds
    )
    cpu, _wall = meter.stop()
    broker_cpu_per_record = cpu / unthrottled["records"] if pid and cpu > 0 else None
    say(f"broker ceiling: {unthrottled['eps']:,.0f} records/s")
    rate = max(int(unthrottled["eps"] * 0.5), 1000)
    records = int(rate * plan.broker_latency_seconds)
    say(f"broker latency: open-loop at {rate:,} records/s for {plan.broker_latency_seconds:g}s")
    fixed = producer_performance(
        topic, records, size, rate, max_seconds=plan.broker_latency_seconds + 20
    )
    fixed["rate_eps"] = rate
    say(f"broker latency: p50 {fixed['p50_ms']} ms, p99 {fixed['p99_ms']} ms (send to ack)")
    say(f"broker end-to-end: {plan.e2e_messages} records one at a time")
    e2e = end_to_end_latency(f"{topic}.e2e", plan.e2e_messages, size)
    say(f"broker end-to-end: p50 {e2e['p50_ms']} ms, p99 {e2e['p99_ms']} ms")
    return {
        "broker_eps": unthrottled["eps"],
        "broker_record_bytes": size,
        "broker_unthrottled": unthrottled,
        "broker_fixed_rate": fixed,
        "broker_end_to_end": e2e,
        "broker_cpu_us_per_record": rounded(
            None if broker_cpu_per_record is None else broker_cpu_per_record * 1e6
        ),
    }


class RelayProcess:
    """One :mod:`bench.relay` process, started on demand."""

    def __init__(self, source: str, sink: str, transactional: bool) -> None:
        self.args = [
            sys.executable,
            "-m",
            "bench.relay",
            "--source",
            source,
            "--sink",
            sink,
            "--group",
            f"bench-relay-{uuid.uuid4().hex[:6]}",
        ] + (["--transactional"] if transactional else [])
        self.process: subprocess.Popen[bytes] | None = None
        self.meter: CpuMeter | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.args, cwd=ROOT)
        self.meter = CpuMeter([self.process.pid]).start()

    def alive(self) -> bool:
        return self.process is None or self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def next_backlog(drain: Measurement, eps: float, seconds: float, cap: int) -> int:
    """The backlog for a drain of about ``seconds`` (at most ``cap``): at the rate ``drain``
    measured, but never faster than its pace since the relay started (when its backlog was
    written). A small backlog that a transactional relay delivers in one committed clump
    arrives within milliseconds, and a rate from that span means nothing: 289,780 records/s
    for 5,000 once, then a backlog of 2,000,000 that could not be written in the time the
    drain had."""
    since_start = drain.check.last_arrival - drain.load.last_stamp
    pace = drain.check.unique / since_start if since_start > 0 else eps
    return min(int(min(eps, pace) * seconds), cap)


def relay_ceiling(plan: CeilingPlan, transactional: bool) -> dict[str, Any]:
    """Drain a preloaded backlog through the relay (throughput), then run it open-loop at half
    that rate (latency)."""
    name = "relay (transactional)" if transactional else "relay"
    events = 5000
    eps = 0.0
    drain: Measurement | None = None
    cpu_per_event: float | None = None
    relay: RelayProcess | None = None
    try:
        for _attempt in range(3):
            # fresh topics each time: a new group reads its source from the start
            tag = uuid.uuid4().hex[:6]
            source, sink = f"bench.relay.{tag}.in", f"bench.relay.{tag}.out"
            asyncio.run(create_topics([source, sink], PARTITIONS))
            run = f"R{uuid.uuid4().hex[:7]}"
            say(f"{name}: draining a backlog of {events:,} executions")
            if relay is not None:
                relay.stop()
            relay = RelayProcess(source, sink, transactional)
            drain = measure(
                LoadSpec(
                    run=run, events=events, rate=None, executions_topic=source, orders_topic=None
                ),
                CheckSpec(run=run, topics=[sink], partitions=PARTITIONS),
                timeout_s=plan.relay_target_seconds * 4 + 30,
                grace_s=plan.relay_target_seconds * 4 + 30,
                label=name,
                alive=relay.alive,
                on_loaded=relay.start,
            )
            if relay.meter is None:
                raise RuntimeError(
                    f"{name}: the relay never started (its backlog of {events:,} was not "
                    "written before the drain's deadline)"
                )
            cpu, wall = relay.meter.stop()
            eps = drain.check.steady_eps or drain.throughput_eps or 0.0
            cpu_per_event = cpu / drain.check.unique if drain.check.unique else None
            span = drain.check.last_arrival - drain.check.first_arrival
            say(f"{name}: {eps:,.0f} records/s ({span:.1f}s drain, {cpu / wall:.2f} cores busy)")
            if span >= plan.relay_target_seconds * 0.5 or eps <= 0:
                break
            events = next_backlog(drain, eps, plan.relay_target_seconds, 2_000_000)
        rate = max(eps * 0.5, 10.0)
        run = f"R{uuid.uuid4().hex[:7]}"
        assert relay is not None  # the drain above started one
        say(f"{name}: open-loop at {rate:,.0f} records/s for {plan.relay_latency_seconds:g}s")
        fixed = measure(
            LoadSpec(
                run=run,
                events=int(rate * plan.relay_latency_seconds),
                rate=rate,
                executions_topic=source,
                orders_topic=None,
            ),
            CheckSpec(run=run, topics=[sink], partitions=PARTITIONS),
            timeout_s=plan.relay_latency_seconds + 60,
            grace_s=15,
            label=name,
            alive=relay.alive,
        )
    finally:
        if relay is not None:
            relay.stop()
    summary = fixed.summary()
    say(
        f"{name}: p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms, "
        f"lost {summary['lost']}, duplicates {summary['duplicates']}"
    )
    assert drain is not None
    return {
        "eps": round(eps, 1),
        "cpu_us_per_record": rounded(None if cpu_per_event is None else cpu_per_event * 1e6),
        "drain": {**drain.summary(), "events": drain.load.sent},
        "fixed_rate": {"rate_eps": round(rate, 1), **summary},
        "measured_at": time.strftime("%H:%M:%S"),
    }


RELAY_MODULES = {"sync": "bench.eos_relay", "aio": "bench.eos_relay_aio"}
"""The hop's relay by client classes: the synchronous ones, as the engine uses them, or
confluent-kafka's asyncio classes (for the comparison in BENCHMARKS.md)."""


def floor_name(outputs: int, transactional: bool, client: str = "sync") -> str:
    """The name the report gives a floor, e.g. ``exactly-once hop floor, confluent-kafka, 4
    outputs``."""
    kind = "exactly-once hop floor" if transactional else "at-least-once hop"
    library = "confluent-kafka" if client == "sync" else "confluent-kafka asyncio classes"
    return f"{kind}, {library}, {outputs} output{'s' if outputs > 1 else ''}"


def floor_key(outputs: int, transactional: bool) -> str:
    """The floor's key in ``ceilings`` of latest.json, e.g. ``eos_floor_k4``."""
    return f"{'eos_floor' if transactional else 'alo_hop'}_k{outputs}"


class EosRelayProcess:
    """One :mod:`bench.eos_relay` process on fresh topics; its CPU figures come from its own
    stats file (first record to last commit), so its start-up and idle polling do not count."""

    def __init__(self, outputs: int, transactional: bool, tag: str, client: str = "sync") -> None:
        if client == "aio" and not transactional:
            raise ValueError("the asyncio relay is exactly-once only")
        self.source, self.sink = f"bench.floor.{tag}.in", f"bench.floor.{tag}.out"
        self.outputs = outputs
        self.workdir = Path(tempfile.mkdtemp(prefix="execdist-floor-"))
        self.ready_file = self.workdir / "ready"
        self.stats_file = self.workdir / "stats.json"
        self.args = [
            sys.executable,
            "-m",
            RELAY_MODULES[client],
            "--source",
            self.source,
            "--sink",
            self.sink,
            "--group",
            f"bench-floor-{tag}",
            "--outputs",
            str(outputs),
            "--ready-file",
            str(self.ready_file),
            "--stats-file",
            str(self.stats_file),
        ] + ([] if transactional else ["--no-transactions"])
        self.process: subprocess.Popen[bytes] | None = None

    def create_topics(self) -> None:
        asyncio.run(create_topics([self.source, *output_topics(self.sink, self.outputs)]))

    def start(self) -> None:
        self.process = subprocess.Popen(self.args, cwd=ROOT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if not self.alive():
                raise RuntimeError("the exactly-once relay exited during start-up")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the exactly-once relay was not ready within {timeout:g}s")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.process is None or self.process.poll() is None

    def stop(self) -> dict[str, Any]:
        """Stop the relay (SIGTERM, as a clean stop) and return its stats (empty if none)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        try:
            stats: dict[str, Any] = json.loads(self.stats_file.read_text())
        except (OSError, ValueError):
            stats = {}
        shutil.rmtree(self.workdir, ignore_errors=True)
        return stats


def eos_floor_at(
    rate: float,
    outputs: int = 4,
    seconds: float = 6.0,
    transactional: bool = True,
    client: str = "sync",
) -> dict[str, Any]:
    """The exactly-once hop floor at ``rate`` records/s: p50/p99 (and the rest of
    :meth:`Measurement.summary`) of a fresh :mod:`bench.eos_relay` with ``outputs`` records per
    input, open-loop for ``seconds``, intended send time -> read_committed receipt, the same
    generator and checker as the pipeline's fixed-rate runs. The relay starts, joins its group
    and commits a warm-up transaction before the first record is sent, so start-up does not
    count. Call it with a pipeline run's ``rate_eps`` to set the floor beside that run."""
    name = floor_name(outputs, transactional, client)
    relay = EosRelayProcess(outputs, transactional, uuid.uuid4().hex[:6], client)
    relay.create_topics()
    try:
        relay.start()
        relay.wait_ready()
        run = f"F{uuid.uuid4().hex[:7]}"
        say(f"{name}: open-loop at {rate:,.0f} records/s for {seconds:g}s")
        fixed = measure(
            LoadSpec(
                run=run,
                events=max(int(rate * seconds), 1),
                rate=rate,
                executions_topic=relay.source,
                orders_topic=None,
            ),
            CheckSpec(run=run, topics=[relay.sink], partitions=PARTITIONS),
            timeout_s=seconds + 40,
            grace_s=15,
            label=name,
            alive=relay.alive,
        )
    finally:
        stats = relay.stop()
    summary = fixed.summary()
    say(
        f"{name}: at {rate:,.0f}/s p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms, "
        f"lost {summary['lost']}, duplicates {summary['duplicates']}"
    )
    return {
        "rate_eps": round(rate, 1),
        "outputs": outputs,
        "transactional": transactional,
        **summary,
        "cpu_us_per_record": stats.get("cpu_us_per_record"),
        "records_per_batch": round(stats["records"] / stats["batches"], 1)
        if stats.get("batches")
        else None,
    }


def eos_floor_ceiling(
    plan: CeilingPlan, outputs: int, transactional: bool, client: str = "sync"
) -> dict[str, Any]:
    """Drain a preloaded backlog through :mod:`bench.eos_relay` (records/s and CPU per record),
    then measure it open-loop at half that rate with :func:`eos_floor_at` (a fresh relay, so
    the drain's CPU figure is the drain's alone)."""
    name = floor_name(outputs, transactional, client)
    events = plan.floor_backlog
    eps = 0.0
    drain: Measurement | None = None
    stats: dict[str, Any] = {}
    for _attempt in range(2):
        relay = EosRelayProcess(outputs, transactional, uuid.uuid4().hex[:6], client)
        relay.create_topics()
        run = f"F{uuid.uuid4().hex[:7]}"
        say(f"{name}: draining a backlog of {events:,} records")
        try:
            drain = measure(
                LoadSpec(
                    run=run,
                    events=events,
                    rate=None,
                    executions_topic=relay.source,
                    orders_topic=None,
                ),
                CheckSpec(run=run, topics=[relay.sink], partitions=PARTITIONS),
                timeout_s=plan.floor_target_seconds * 4 + 60,
                grace_s=plan.floor_target_seconds * 4 + 30,
                label=name,
                alive=relay.alive,
                on_loaded=relay.start,
            )
        finally:
            stats = relay.stop()
        eps = drain.check.steady_eps or drain.throughput_eps or 0.0
        span = drain.check.last_arrival - drain.check.first_arrival
        say(
            f"{name}: {eps:,.0f} records/s ({span:.1f}s drain, "
            f"{stats.get('cpu_us_per_record')} µs CPU per record in the relay)"
        )
        if span >= plan.floor_target_seconds * 0.5 or eps <= 0:
            break
        events = next_backlog(drain, eps, plan.floor_target_seconds, 1_000_000)
    assert drain is not None
    # The open-loop generator is one aiokafka process on the same cores; above about half of
    # what it sends flat out it falls behind its schedule and measures itself, not the relay.
    generated = drain.load.sent / drain.load.send_seconds if drain.load.send_seconds else eps
    rate = max(min(eps, generated) * 0.5, 10.0)
    fixed = eos_floor_at(rate, outputs, plan.floor_latency_seconds, transactional, client)
    return {
        "name": name,
        "outputs": outputs,
        "transactional": transactional,
        "client": client,
        "eps": round(eps, 1),
        "cpu_us_per_record": stats.get("cpu_us_per_record"),
        "relay_own_eps": round(stats["records"] / stats["wall_s"], 1)
        if stats.get("wall_s")
        else None,
        "relay_stats": stats,
        "drain": {**drain.summary(), "events": drain.load.sent},
        "generator_eps": round(generated, 1),
        "fixed_rate": fixed,
        "measured_at": time.strftime("%H:%M:%S"),
    }


def floor_ceilings(plan: CeilingPlan, client: str = "sync") -> dict[str, Any]:
    """Every floor of ``plan.floors``, under :func:`floor_key` keys, with ``<key>_eps`` and
    ``<key>_p99_ms`` at the top level for a quick look."""
    found: dict[str, Any] = {}
    for outputs, transactional in plan.floors:
        key = floor_key(outputs, transactional) + ("" if client == "sync" else f"_{client}")
        floor = eos_floor_ceiling(plan, outputs, transactional, client)
        found[key] = floor
        found[f"{key}_eps"] = floor["eps"]
        found[f"{key}_p99_ms"] = floor["fixed_rate"]["p99_ms"]
    return found


def main(argv: list[str] | None = None) -> int:
    """Floors without the rest of the benchmark, for development and for one-off comparisons."""
    parser = argparse.ArgumentParser(
        description="Measure the exactly-once hop floor (confluent-kafka) and print JSON."
    )
    parser.add_argument("--quick", action="store_true", help="the quick profile's floors")
    parser.add_argument("--at", type=float, metavar="RATE", help="only the floor at this rate")
    parser.add_argument("--outputs", type=int, default=4, help="with --at: records per input")
    parser.add_argument("--seconds", type=float, default=6.0, help="with --at: run length")
    parser.add_argument("--no-transactions", dest="transactions", action="store_false")
    parser.add_argument(
        "--client",
        choices=sorted(RELAY_MODULES),
        default="sync",
        help="the relay's client classes: sync (bench.eos_relay, as the engine uses them) or "
        "aio (confluent_kafka.aio, bench.eos_relay_aio)",
    )
    parser.add_argument(
        "--floors",
        help="outputs[:alo],... e.g. '1,4,1:alo,4:alo' (default: the profile's floors)",
    )
    args = parser.parse_args(argv)
    if args.at is not None:
        result: dict[str, Any] = eos_floor_at(
            args.at, args.outputs, args.seconds, args.transactions, args.client
        )
    else:
        from bench.__main__ import PROFILES

        plan: CeilingPlan = PROFILES["quick" if args.quick else "full"]["ceilings"]
        if args.floors:
            floors = []
            for item in args.floors.split(","):
                outputs, _, mode = item.partition(":")
                floors.append((int(outputs), mode != "alo"))
            plan = CeilingPlan(**{**asdict(plan), "floors": tuple(floors)})
        result = floor_ceilings(plan, args.client)
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
