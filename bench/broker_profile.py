"""Where the broker's CPU goes: ``python -m bench.broker_profile [--subscriptions 1,1000]``.

The pipeline's saturation runs report the broker's CPU per execution, and it grows with the
number of subscriber topics. This says why, from a profile of the broker itself (Java Flight
Recorder, which every JDK has; ``jcmd`` starts it on the running broker): for each number of
subscriptions it starts one worker, warms it up at ``--rate`` executions/s (open loop), then
records the broker for ``--seconds`` three times at that rate:

* **with a screen's reader**: the bench's ``read_committed`` checker of every subscriber topic
  (one librdkafka consumer of all of them), fetching as a screen does: a fetch returns with
  the first record, so there is about one fetch per commit, each naming every partition;
* **with a batch reader**: the same checker, its fetches waiting for 1 MiB or 200 ms, as the
  pipeline bench's saturation drains read;
* **pipeline alone**: the generator only, so what is left is the worker's own traffic (its
  inputs, outputs, changelogs and transactions) and the broker's work for it.

For each it reports the broker's cores and CPU per execution, and the recorded samples by
broker thread, by the request handler they ran under (``KafkaApis.handleFetchRequest``,
``handleWriteTxnMarkersRequest`` …) and by the function on top. Writes
``bench/results/profile-broker.md``. JFR samples Java code only (not the kernel's share of the
broker's CPU), so the shares are of the broker's Java time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE = "jdk.ExecutionSample"
_THREAD = re.compile(r'sampledThread = "([^"]*)"')
_FRAME = re.compile(r"^\s+([\w$.<>]+)\([^)]*\)\s+line:", re.M)
_HANDLER = re.compile(r"KafkaApis\.(handle\w+)\(")
_NUMBERS = re.compile(r"\d+")


@dataclass
class BrokerProfile:
    """Execution samples of the broker's JVM, counted three ways."""

    samples: int = 0
    threads: collections.Counter[str] = field(default_factory=collections.Counter)
    handlers: collections.Counter[str] = field(default_factory=collections.Counter)
    top: collections.Counter[str] = field(default_factory=collections.Counter)

    def share(self, counter: collections.Counter[str], name: str) -> float:
        return counter[name] / self.samples if self.samples else 0.0


def parse_samples(text: str) -> BrokerProfile:
    """Count ``jfr print --events jdk.ExecutionSample`` output by thread (numbers folded, so
    the eight request handler threads are one row), by the outermost ``KafkaApis.handle…``
    on the stack (``other`` when none: network threads, the transaction marker sender …) and
    by the frame on top."""
    profile = BrokerProfile()
    for block in text.split(SAMPLE)[1:]:
        frames = _FRAME.findall(block)
        if not frames:
            continue
        profile.samples += 1
        thread = _THREAD.search(block)
        name = _NUMBERS.sub("N", thread.group(1)) if thread else "?"
        profile.threads[name] += 1
        handlers = _HANDLER.findall(block)
        # frames are listed innermost first: the last handler is the request's own
        profile.handlers[handlers[-1] if handlers else "other"] += 1
        profile.top[frames[0]] += 1
    return profile


def record(pid: int, name: str, seconds: int, out: Path) -> Path:
    """Start a Flight Recording of ``seconds`` on the running JVM ``pid``."""
    path = out / f"broker-{name}.jfr"
    path.unlink(missing_ok=True)
    subprocess.run(
        [
            "jcmd",
            str(pid),
            "JFR.start",
            f"name={name}",
            "settings=profile",
            f"duration={seconds}s",
            f"filename={path}",
        ],
        check=True,
        capture_output=True,
    )
    return path


def read(path: Path, wait_s: float = 30.0) -> BrokerProfile:
    """The recording's samples, once the JVM has written it."""
    deadline = time.monotonic() + wait_s
    while not path.exists() or path.stat().st_size == 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the broker wrote no recording to {path}")
        time.sleep(0.2)
    time.sleep(0.5)  # written in one go at the end of the recording; let it finish
    text = subprocess.run(
        ["jfr", "print", "--events", SAMPLE, "--stack-depth", "64", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return parse_samples(text)


def table(title: str, profile: BrokerProfile, counter: collections.Counter[str], top: int) -> str:
    lines = [f"| {title} | share of samples |", "| --- | --- |"]
    lines += [
        f"| `{name}` | {100 * profile.share(counter, name):.1f} % |"
        for name, _ in counter.most_common(top)
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from bench.common import RESULTS, CpuMeter, broker_pid, reset_topics, say
    from bench.load import CONTEXT, CheckSpec, LoadSpec, generator_main, measure
    from bench.pipeline import Cluster, create_subscriptions

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscriptions", default="1,1000", help="comma-separated counts")
    parser.add_argument("--rate", type=float, default=800.0, help="executions/s, open loop")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument(
        "--warmup",
        type=int,
        default=20,
        help="seconds of load before each recording (the first one's at least a minute: a "
        "fresh broker's JIT compiles its hot paths during its first minute of load, and a new "
        "subscriber topic's first appends create its files)",
    )
    args = parser.parse_args(argv)
    missing = [tool for tool in ("jcmd", "jfr") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(
            f"no {' or '.join(missing)} on PATH: the broker profile needs a JDK's tools, not "
            "only a JRE (Debian: apt-get install openjdk-17-jdk-headless)"
        )
    pid = broker_pid()
    if pid is None:
        raise SystemExit("no broker pid: run it as `make bench-broker-profile`")
    RESULTS.mkdir(parents=True, exist_ok=True)
    events = int(args.rate * args.seconds)
    report = [
        "# Where the broker's CPU goes (`make bench-broker-profile`)",
        "",
        f"One worker, {args.rate:,.0f} executions/s open loop, {args.seconds} s per recording "
        "(Java Flight Recorder on the broker).",
    ]
    for index, count in enumerate(int(c) for c in args.subscriptions.split(",")):
        warmup = max(args.warmup, 60) if index == 0 else args.warmup
        asyncio.run(reset_topics())
        cluster = Cluster(1)
        try:
            cluster.start()
            topics = asyncio.run(create_subscriptions(cluster.url, 0, count))
            run = f"W{uuid.uuid4().hex[:6]}"
            say(f"{count} subscription(s): warming up for {warmup} s")
            measure(
                LoadSpec(run=run, events=int(args.rate * warmup), rate=args.rate, accounts=count),
                CheckSpec(run=run, topics=topics),
                timeout_s=warmup + 90,
                grace_s=60,
                label="warm-up",
            )
            phases = {
                "with a screen's reader": "screen",
                "with a batch reader": "batch",
                "pipeline alone": "alone",
            }
            for phase, short in phases.items():
                run = f"P{uuid.uuid4().hex[:6]}"
                name = f"{count}-{short}"
                say(f"{count} subscription(s), {phase}: recording the broker")
                broker = CpuMeter([pid]).start()
                path = record(pid, name, args.seconds, RESULTS)
                spec = LoadSpec(run=run, events=events, rate=args.rate, accounts=count)
                if short == "alone":
                    results = CONTEXT.Queue()
                    generator = CONTEXT.Process(target=generator_main, args=(spec, results))
                    generator.start()
                    generator.join()
                else:
                    measure(
                        spec,
                        CheckSpec(run=run, topics=topics, batch_reads=short == "batch"),
                        timeout_s=args.seconds + 90,
                        grace_s=60,
                        label=phase,
                    )
                cpu, wall = broker.stop()
                profile = read(path)
                say(
                    f"{count} subscription(s), {phase}: broker {cpu / wall:.2f} cores, "
                    f"{cpu / events * 1e6:,.0f} µs per execution, {profile.samples} samples"
                )
                report += [
                    "",
                    f"## {count} subscription(s), {phase}",
                    "",
                    f"Broker: {cpu / wall:.2f} cores, {cpu / events * 1e6:,.0f} µs of CPU per "
                    f"execution; {profile.samples} samples ({profile.samples / wall:.1f} a second: "
                    "they count the broker's Java time, which the JIT and the kernel are not).",
                    "",
                    table("request handler", profile, profile.handlers, 10),
                    "",
                    table("broker thread", profile, profile.threads, 6),
                    "",
                    table("function on top", profile, profile.top, 8),
                ]
        finally:
            cluster.stop(keep_logs=None)
    text = "\n".join(report) + "\n"
    (RESULTS / "profile-broker.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
