"""Instructions counted over one region of a Python program, with ``perf stat``.

CPU seconds on this shared host vary several times over from hour to hour; the instructions a
piece of code executes barely do (``bench.process_cost`` repeats within about a percent), so
they are what a before-and-after of the hot path compares. :func:`count` runs a command under
``perf stat``, counting the user-space instructions of all its threads (RocksDB's included)
only while the command has counting switched on; the command switches it on and off around
the region it measures with :func:`counting`, which does nothing when not run by
:func:`count`. :class:`Meter` counts running processes (a worker, the broker) over an interval.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path

CONTROL = "EXECDIST_PERF_CONTROL"
"""Environment variable naming the control and acknowledgement FIFOs (``ctl,ack``)."""
EVENT = "instructions:u"


class Unavailable(RuntimeError):
    """``perf`` is missing or cannot count instructions on this machine."""


@cache
def available() -> str | None:
    """Why instructions cannot be counted here, or None when they can."""
    if shutil.which("perf") is None:
        return "perf is not installed (Debian: apt-get install linux-perf)"
    probe = subprocess.run(
        ["perf", "stat", "-x,", "-e", EVENT, "true"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0 or "<not supported>" in probe.stderr or EVENT not in probe.stderr:
        return f"perf cannot count {EVENT} here: {probe.stderr.strip()[:200]}"
    return None


def count(command: Sequence[str]) -> tuple[int, str]:
    """Run ``command`` under ``perf stat``; return the instructions counted while it had
    counting on, and what it printed on stdout. Raises :class:`Unavailable` when perf cannot
    count, and ``CalledProcessError`` when the command fails."""
    why = available()
    if why is not None:
        raise Unavailable(why)
    with tempfile.TemporaryDirectory() as folder:
        ctl, ack = Path(folder) / "ctl", Path(folder) / "ack"
        os.mkfifo(ctl)
        os.mkfifo(ack)
        perf = ["perf", "stat", "-x,", "-e", EVENT, "-D", "-1", "--control"]
        done = subprocess.run(
            [*perf, f"fifo:{ctl},{ack}", "--", *command],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, CONTROL: f"{ctl},{ack}"},
        )
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, command, done.stdout, done.stderr)
    return parse(done.stderr), done.stdout


def parse(stderr: str) -> int:
    """The instruction count in ``perf stat -x,`` output."""
    for line in stderr.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2] == EVENT:
            if not fields[0].isdigit():
                raise Unavailable(f"perf counted no {EVENT}: {line}")
            return int(fields[0])
    raise Unavailable(f"no {EVENT} in perf's output: {stderr.strip()[:200]}")


class Meter:
    """The user-space instructions of running processes over an interval (``perf stat -p``);
    :meth:`stop` gives ``None`` where perf cannot count, or a process was gone before the
    start."""

    def __init__(self, pids: Sequence[int]) -> None:
        self._pids = list(pids)
        self._perf: subprocess.Popen[str] | None = None

    def start(self) -> Meter:
        if self._pids and available() is None:
            self._perf = subprocess.Popen(
                ["perf", "stat", "-x,", "-e", EVENT, "-p", ",".join(map(str, self._pids))],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        return self

    def stop(self) -> int | None:
        perf, self._perf = self._perf, None
        if perf is None:
            return None
        perf.send_signal(signal.SIGINT)  # perf prints its counts and exits
        try:
            _, stderr = perf.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            perf.kill()
            perf.communicate()
            return None
        try:
            return parse(stderr)
        except Unavailable:
            return None


@contextmanager
def counting() -> Iterator[None]:
    """Count instructions inside the block when run by :func:`count`; else do nothing."""
    fifos = os.environ.get(CONTROL)
    if not fifos:
        yield
        return
    ctl_path, ack_path = fifos.split(",")
    with open(ctl_path, "w") as ctl, open(ack_path) as ack:

        def tell(command: str) -> None:
            ctl.write(command + "\n")
            ctl.flush()
            ack.readline()  # perf has done it

        tell("enable")
        try:
            yield
        finally:
            tell("disable")
