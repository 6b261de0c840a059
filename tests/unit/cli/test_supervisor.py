"""The supervisor of ``execdist worker --processes N``, with small stand-ins for the workers.

The supervisor runs in a process of its own, as in production: it installs signal handlers and
reaps with ``os.wait()``, which must not happen inside pytest, and the signals the tests send
are process-directed, as ``kill`` sends them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

CHILD = r"""
import os, signal, sys, time
from pathlib import Path

workdir, index, behaviour, count = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])

def stopped(signum, frame):
    (workdir / f"stopped-{index}").write_text(signal.Signals(signum).name)
    sys.exit(0)

def usr1(signum, frame):
    (workdir / f"usr1-{index}").write_text("")

if behaviour == "serve":
    signal.signal(signal.SIGTERM, stopped)
    signal.signal(signal.SIGINT, stopped)
    signal.signal(signal.SIGUSR1, usr1)
elif behaviour == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
(workdir / f"ready-{index}").write_text(str(os.getpid()))
if behaviour.startswith("exit"):
    # exit once the others are ready, so that they are stopped, not caught starting
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all((workdir / f"ready-{i}").exists() for i in range(count)):
            break
        time.sleep(0.01)
    sys.exit(int(behaviour[4:]))
while True:
    signal.pause()
"""

DRIVER = r"""
import sys
from execdist.supervisor import ChildPlan, Supervisor

child, workdir, behaviours, grace = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4]
plans = [ChildPlan(i, 30000 + i, 40000 + i, f"w-{i}") for i in range(len(behaviours))]
supervisor = Supervisor(
    plans,
    command=lambda plan: [
        sys.executable, "-c", child, workdir, str(plan.index), behaviours[plan.index],
        str(len(behaviours)),
    ],
    env=lambda plan: dict(__import__("os").environ),
    stop_grace_s=float(grace),
)
sys.exit(supervisor.run())
"""


def _start_as_from_a_terminal(ignored: signal.Signals | None) -> None:
    """In the supervisor's process before it runs: the stop signals as a terminal leaves
    them, whatever started the tests (a background job of a script ignores SIGINT, nohup
    SIGHUP, and the supervisor keeps what it inherits ignored), then ``ignored`` ignored."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    if ignored is not None:
        signal.signal(ignored, signal.SIG_IGN)


class Supervised:
    """A supervisor of stand-in children: ``serve`` (stops on SIGTERM/SIGINT), ``plain`` (no
    handler), ``stubborn`` (ignores SIGTERM) or ``exitN`` (exits N once the others are up)."""

    def __init__(
        self, workdir: Path, behaviours: list[str], grace: float, ignored: signal.Signals | None
    ) -> None:
        self.workdir = workdir
        self.count = len(behaviours)
        self.process = subprocess.Popen(
            [sys.executable, "-c", DRIVER, CHILD, str(workdir), ",".join(behaviours), str(grace)],
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=partial(_start_as_from_a_terminal, ignored),
        )

    def wait_for(self, name: str, timeout: float = 10.0) -> str:
        path = self.workdir / name
        deadline = time.monotonic() + timeout
        while not path.exists():
            assert time.monotonic() < deadline, f"no {name} after {timeout}s"
            time.sleep(0.02)
        time.sleep(0.02)  # written and closed
        return path.read_text()

    def pids(self) -> list[int]:
        return [int(self.wait_for(f"ready-{i}")) for i in range(self.count)]

    def finish(self, timeout: float = 15.0) -> tuple[int, str]:
        _, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, err


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[list[Supervised]]:
    started: list[Supervised] = []
    yield started
    for each in started:
        if each.process.poll() is None:
            each.process.kill()
        each.process.communicate()


def start(
    started: list[Supervised],
    workdir: Path,
    *behaviours: str,
    grace: float = 5.0,
    ignored: signal.Signals | None = None,
) -> Supervised:
    supervisor = Supervised(workdir, list(behaviours), grace, ignored)
    started.append(supervisor)
    return supervisor


def gone(pid: int) -> bool:
    """Exited (a zombie waiting for a reaper counts: it holds nothing)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize(
    ("sent", "received"),
    [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT"), (signal.SIGHUP, "SIGTERM")],
)
def test_a_stop_signal_reaches_every_child_and_a_clean_stop_exits_0(
    supervised: list[Supervised], tmp_path: Path, sent: signal.Signals, received: str
) -> None:
    supervisor = start(supervised, tmp_path, "serve", "serve", "serve")
    supervisor.pids()
    supervisor.process.send_signal(sent)
    code, err = supervisor.finish()
    assert code == 0, err
    assert [supervisor.wait_for(f"stopped-{i}") for i in range(3)] == [received] * 3


def test_a_child_killed_by_the_signal_passed_on_stopped_cleanly(
    supervised: list[Supervised], tmp_path: Path
) -> None:
    """A worker still starting has no handler yet; SIGTERM then ends it, as asked."""
    supervisor = start(supervised, tmp_path, "plain", "serve")
    supervisor.pids()
    supervisor.process.send_signal(signal.SIGTERM)
    code, err = supervisor.finish()
    assert (code, err) == (0, "")


def test_a_child_that_exits_stops_the_others_and_is_named(
    supervised: list[Supervised], tmp_path: Path
) -> None:
    supervisor = start(supervised, tmp_path, "serve", "exit3", "serve")
    pids = supervisor.pids()
    code, err = supervisor.finish()
    assert code == 1
    assert (
        f"worker process 1 (pid {pids[1]}, web port 30001) exited with code 3 without being "
        "asked to stop; stopping the other 2 worker processes. Its log above says why." in err
    )
    assert "--processes 1 --web-port 30001" in err
    assert supervisor.wait_for("stopped-0") == supervisor.wait_for("stopped-2") == "SIGTERM"


def test_a_child_killed_from_outside_is_reported_as_such(
    supervised: list[Supervised], tmp_path: Path
) -> None:
    supervisor = start(supervised, tmp_path, "serve", "plain")
    pids = supervisor.pids()
    os.kill(pids[1], signal.SIGKILL)
    code, err = supervisor.finish()
    assert code == 1
    assert f"(pid {pids[1]}, web port 30001) was killed by SIGKILL" in err
    assert "dmesg" in err


def test_a_child_that_will_not_stop_is_killed_after_the_grace(
    supervised: list[Supervised], tmp_path: Path
) -> None:
    supervisor = start(supervised, tmp_path, "stubborn", "exit1", grace=0.5)
    pids = supervisor.pids()
    code, err = supervisor.finish()
    assert code == 1
    assert f"worker process 0 (pid {pids[0]}) did not stop within 0.5s; killing it." in err
    assert "while stopping" not in err  # the kill is ours, already said


def test_diagnostic_signals_are_passed_on_not_fatal(
    supervised: list[Supervised], tmp_path: Path
) -> None:
    supervisor = start(supervised, tmp_path, "serve", "serve")
    supervisor.pids()
    supervisor.process.send_signal(signal.SIGUSR1)
    supervisor.wait_for("usr1-0")
    supervisor.wait_for("usr1-1")
    assert supervisor.process.poll() is None
    supervisor.process.send_signal(signal.SIGTERM)
    assert supervisor.finish()[0] == 0


def test_a_signal_ignored_by_whoever_started_it_stays_ignored(
    supervised: list[Supervised], tmp_path: Path
) -> None:
    """Under ``nohup`` a closed terminal must not stop the workers."""
    supervisor = start(supervised, tmp_path, "serve", "serve", ignored=signal.SIGHUP)
    supervisor.pids()
    supervisor.process.send_signal(signal.SIGHUP)
    with pytest.raises(subprocess.TimeoutExpired):
        supervisor.process.wait(0.5)
    assert not list(tmp_path.glob("stopped-*"))
    supervisor.process.send_signal(signal.SIGTERM)
    assert supervisor.finish()[0] == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_killing_the_supervisor_kills_its_children(
    supervised: list[Supervised], tmp_path: Path
) -> None:
    supervisor = start(supervised, tmp_path, "serve", "serve")
    pids = supervisor.pids()
    supervisor.process.kill()
    supervisor.finish()
    deadline = time.monotonic() + 5
    while not all(gone(pid) for pid in pids):
        assert time.monotonic() < deadline, "children outlived their supervisor"
        time.sleep(0.02)
