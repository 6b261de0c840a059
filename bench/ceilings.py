"""The ceilings of this machine, measured in the same run as the pipeline.

* The broker alone, with Kafka's own tools from the jars ``scripts/infra.sh install`` resolved:
  ``ProducerPerformance`` unthrottled (throughput) and open-loop at a fixed rate (send-to-ack
  latency), and ``EndToEndLatency`` (one record at a time, produce to consume).
* A plain aiokafka relay (:mod:`bench.relay`): the most a Python worker could do here.

Same record size (one execution's JSON), partitions (4) and acks (all) as the pipeline.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
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
            assert relay.meter is not None
            cpu, wall = relay.meter.stop()
            eps = drain.check.steady_eps or drain.throughput_eps or 0.0
            cpu_per_event = cpu / drain.check.unique if drain.check.unique else None
            span = drain.check.last_arrival - drain.check.first_arrival
            say(f"{name}: {eps:,.0f} records/s ({span:.1f}s drain, {cpu / wall:.2f} cores busy)")
            if span >= plan.relay_target_seconds * 0.5 or eps <= 0:
                break
            events = min(int(eps * plan.relay_target_seconds), 2_000_000)
        rate = max(eps * 0.5, 10.0)
        run = f"R{uuid.uuid4().hex[:7]}"
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
