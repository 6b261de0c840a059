"""Profile one worker at saturation with py-spy: ``python -m bench.profile [--seconds 30]``.

Starts one worker with ``--subscriptions`` subscriptions (as :mod:`bench.pipeline` does), keeps
a backlog in front of it, records it with ``py-spy record -f raw --gil`` (collapsed stacks of
the thread holding the interpreter lock: the worker's Python runs one thread at a time, so
these are where its time goes) and writes ``bench/results/profile-worker.txt`` (the stacks,
for flame-graph tools) and ``bench/results/profile-worker.md`` (the functions with the most
self and total time, by sample count).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from bench.common import RESULTS, reset_topics, say
from bench.load import CONTEXT, LoadSpec, generator_main
from bench.pipeline import Cluster, create_subscriptions

FRAMEWORK = (
    "BaseEventLoop.run",
    "BaseEventLoop._run_once",
    "Handle._run",
    "Command.",
    "Context.invoke",
    "Group.invoke",
    "pass_context",
    "App.main",
    "Worker.execute_from_commandline",
    "main (execdist/cli.py)",
    "<module>",
    "Thread._bootstrap",
    "Thread.run",
)
"""Frames on nearly every stack (event loop, CLI, thread start): left out of the totals."""


def summarize(raw: Path, top: int = 25) -> str:
    """The functions with the most samples on top of the stack (self) and anywhere (total)."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        samples += count
        own[_short(frames[-1])] += count
        for name in {_short(f) for f in frames}:
            if not name.startswith(FRAMEWORK):
                total[name] += count
    lines = [f"{samples} samples", "", "| self % | function |", "| --- | --- |"]
    lines += [f"| {100 * n / samples:.1f} | `{name}` |" for name, n in own.most_common(top)]
    lines += ["", "| total % (event loop and CLI frames left out) | function |", "| --- | --- |"]
    lines += [f"| {100 * n / samples:.1f} | `{name}` |" for name, n in total.most_common(top)]
    return "\n".join(lines) + "\n"


def _short(frame: str) -> str:
    """``func (path/to/site-packages/pkg/mod.py:123)`` -> ``func (pkg/mod.py)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3.11/", "/wt-bench/", "/execdist/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument("--events", type=int, default=0, help="backlog size (default: adaptive)")
    parser.add_argument("--idle", action="store_true", help="sample every thread, waiting or not")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    asyncio.run(reset_topics())
    cluster = Cluster(1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    raw = RESULTS / "profile-worker.txt"
    try:
        say(f"worker ready after {cluster.start():.1f}s")
        asyncio.run(create_subscriptions(cluster.url, 0, args.subscriptions))
        # enough backlog for the recording even at a few thousand executions per second
        events = args.events or int(3000 * (args.seconds + 10))
        say(f"sending a backlog of {events:,} executions")
        results = CONTEXT.Queue()
        generator = CONTEXT.Process(
            target=generator_main,
            args=(
                LoadSpec(
                    run=f"F{uuid.uuid4().hex[:7]}",
                    events=events,
                    rate=None,
                    accounts=args.subscriptions,
                ),
                results,
            ),
            daemon=True,
        )
        generator.start()
        pid = cluster.pids()[0]
        say(f"recording worker {pid} for {args.seconds:g}s")
        command = [
            py_spy,
            "record",
            "-p",
            str(pid),
            "-d",
            str(int(args.seconds)),
            "-r",
            "100",
            "-f",
            "raw",
            "-o",
            str(raw),
        ]
        # Without --gil, py-spy also samples the worker's Kafka threads while they wait for
        # their next call or for the broker inside librdkafka (a queue's or a condition's
        # wait, which it takes for running code): about a quarter of all samples, none of
        # them work. --idle samples every thread, waiting or not.
        command.append("--idle" if args.idle else "--gil")
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        generator.kill()
    finally:
        cluster.stop(keep_logs=RESULTS / "logs" / "profile")
    summary = summarize(raw)
    (RESULTS / "profile-worker.md").write_text(summary)
    sys.stdout.write(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
