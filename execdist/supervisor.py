"""``execdist worker --processes N``: N ordinary workers on one host, and a small supervisor.

One Python process keeps one core busy at most, so a host with more cores runs more workers.
They share nothing but the broker: each child is a complete ``execdist worker --processes 1``,
an ordinary member of the consumer group with its own web port, gRPC port, worker id and
RocksDB folder, so partitions spread over them exactly as over workers on different hosts and
SREs keep scaling by partition.

The supervisor only starts the children and keeps them together:

* child ``i`` gets web port ``base + i``, gRPC port ``grpc_base + i`` and worker id
  ``<worker id>-<i>``; :func:`plan_children` lays this out and refuses ranges that overlap or
  leave the port space, and :func:`busy_ports` finds what is taken before anything starts;
* SIGTERM, SIGINT and SIGHUP stop every child (SIGHUP as SIGTERM: a closed terminal should
  stop the workers cleanly); SIGUSR1, SIGUSR2 and SIGQUIT (a stack dump) are passed on. The
  supervisor then waits for all of them and exits 0 if each stopped cleanly;
* if a child exits on its own, the others are stopped (killed if they take longer than
  :data:`STOP_GRACE_S`) and the supervisor exits 1 naming the child: a host that silently
  runs fewer workers than it was asked for hides a fault until the lag shows it;
* each child is its own process group, so a Ctrl-C in a terminal reaches the children once,
  through the supervisor, and on Linux each child is SIGKILLed by the kernel if the supervisor
  dies (``PR_SET_PDEATHSIG``): killing the supervisor's pid kills its workers, as it would
  with a single worker, and none is left behind holding ports and partitions.

Waiting is ``os.wait()``, which blocks until a child exits; signal handlers run in between
(PEP 475 restarts the call) and a SIGALRM timer bounds the stop after a failure. That needs a
single-threaded supervisor (a signal taken by another thread would not interrupt the wait):
it is, since it never loads Faust and ``asyncio.run`` has shut its executor down. Signals
ignored by whoever started the supervisor (``nohup``) stay ignored.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

from execdist.domain.errors import ExecDistError
from execdist.settings import Settings

STOP_GRACE_S = 30.0
"""After a child failed, how long the others get to leave the group cleanly before SIGKILL.
A worker stops in a few seconds; a stop still running after this is hung, and the service
manager is waiting on the supervisor to restart it."""

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PASSED_ON = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT)
"""Faust's diagnostics (stack dump, debugger). Their default action would kill the
supervisor, and with it every child, when someone sends them to the pid they know."""

_PR_SET_PDEATHSIG = 1


class PortPlanError(ExecDistError):
    """The port ranges the children need cannot be laid out as configured."""


@dataclass(frozen=True)
class ChildPlan:
    """What makes one child a worker of its own."""

    index: int
    web_port: int
    grpc_port: int
    worker_id: str


def plan_children(settings: Settings, processes: int) -> list[ChildPlan]:
    """Child ``i`` gets web port ``web_port + i``, gRPC port ``grpc_port + i`` and worker id
    ``<worker id>-<i>``; with one process, the settings' own ports and id unchanged."""
    if processes == 1:
        if settings.grpc_port == settings.web_port:
            raise PortPlanError(
                f"the gRPC port and the web port are both {settings.web_port}. "
                "Choose another with EXECDIST_GRPC_PORT or --web-port."
            )
        return [ChildPlan(0, settings.web_port, settings.grpc_port, settings.worker_id)]
    web = range(settings.web_port, settings.web_port + processes)
    grpc = range(settings.grpc_port, settings.grpc_port + processes)
    for name, ports, flag in (
        ("web", web, "--web-port or EXECDIST_WEB_PORT"),
        ("gRPC", grpc, "EXECDIST_GRPC_PORT"),
    ):
        if ports[-1] > 65535:
            raise PortPlanError(
                f"{processes} processes need {name} ports {ports[0]}-{ports[-1]}, past 65535. "
                f"Choose a lower first port with {flag}, or fewer processes with --processes."
            )
    if web.start < grpc.stop and grpc.start < web.stop:
        raise PortPlanError(
            f"{processes} processes need web ports {web[0]}-{web[-1]} and gRPC ports "
            f"{grpc[0]}-{grpc[-1]}, and these overlap. Move one range with --web-port "
            "(EXECDIST_WEB_PORT) or EXECDIST_GRPC_PORT so that the two are at least "
            f"{processes} apart."
        )
    return [ChildPlan(i, web[i], grpc[i], f"{settings.worker_id}-{i}") for i in range(processes)]


def busy_ports(
    host: str, plans: Sequence[ChildPlan], port_free: Callable[[str, int], bool]
) -> list[str]:
    """Every planned port that is taken, described for the user (``web 6067 (process 1)``)."""
    busy = []
    for plan in plans:
        for name, port in (("web", plan.web_port), ("gRPC", plan.grpc_port)):
            if not port_free(host, port):
                busy.append(f"{name} {port} (process {plan.index})")
    return busy


def child_command(plan: ChildPlan, web_host: str | None, faust_args: Sequence[str]) -> list[str]:
    """``execdist worker --processes 1`` with this child's web port; the interpreter is the
    supervisor's own, so the child runs the same installation."""
    command = [sys.executable, "-m", "execdist.cli", "worker", "--processes", "1"]
    command += ["--web-port", str(plan.web_port)]
    if web_host is not None:
        command += ["--web-host", web_host]
    return [*command, *faust_args]


def child_env(plan: ChildPlan, base: Mapping[str, str]) -> dict[str, str]:
    """The supervisor's environment with this child's ports and id.

    The web port is set here too, although ``--web-port`` wins, so that anything reading the
    child's environment sees the port it really serves on.
    """
    return {
        **base,
        "EXECDIST_PROCESSES": "1",
        "EXECDIST_WEB_PORT": str(plan.web_port),
        "EXECDIST_GRPC_PORT": str(plan.grpc_port),
        "EXECDIST_WORKER_ID": plan.worker_id,
    }


def _die_with_supervisor() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the kernel SIGKILL the child when the supervisor dies.

    Without it a SIGKILLed supervisor (an OOM kill, or a caller escalating after SIGTERM)
    would leave its workers running, unseen, holding their ports and partitions. Linux only;
    elsewhere the children outlive a supervisor that is killed outright.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    supervisor = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != supervisor:  # the supervisor died before prctl took effect
            os._exit(1)

    return preexec


def describe_exit(returncode: int) -> str:
    """``exited with code 1`` or ``was killed by SIGKILL``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"


def why(returncode: int) -> str:
    """Where the user finds out why a child ended."""
    if returncode < 0:
        return (
            "A signal from outside ended it: see the kernel log (`dmesg`, for the OOM killer) "
            "and who else signals this host's processes."
        )
    return "Its log above says why."


@dataclass
class _Child:
    plan: ChildPlan
    process: subprocess.Popen[bytes]
    killed: bool = False
    """SIGKILLed by the supervisor because it did not stop in time (already reported)."""


class Supervisor:
    """Starts one process per plan and keeps them together until all have exited.

    ``command`` and ``env`` build each child's argv and environment; tests substitute small
    stand-ins for the worker. The supervisor reaps with ``os.wait()``, so it must be the only
    thing in its process that starts children.
    """

    def __init__(
        self,
        plans: Sequence[ChildPlan],
        command: Callable[[ChildPlan], list[str]],
        env: Callable[[ChildPlan], dict[str, str]],
        stop_grace_s: float = STOP_GRACE_S,
        say: Callable[[str], object] | None = None,
    ) -> None:
        self._plans = list(plans)
        self._command = command
        self._env = env
        self._stop_grace_s = stop_grace_s
        self._say = say or (lambda text: sys.stderr.write(text))
        self._running: dict[int, _Child] = {}
        self._stopping: signal.Signals | None = None
        """The signal the children were asked to stop with, once they were."""
        self._failed = False

    def run(self) -> int:
        """Start every child, wait for all of them; 0 if they stopped because we were asked
        to and each stopped cleanly, 1 otherwise."""
        handlers: dict[signal.Signals, Callable[[int, FrameType | None], None]] = {
            **dict.fromkeys(STOP_SIGNALS, self._on_stop_signal),
            **dict.fromkeys(PASSED_ON, self._on_passed_on_signal),
        }
        # a signal ignored by whoever started us (nohup, a shell's background job) stays
        # ignored, as it would be for a single worker
        handlers = {s: h for s, h in handlers.items() if signal.getsignal(s) != signal.SIG_IGN}
        handlers[signal.SIGALRM] = self._on_grace_expired
        previous = {sig: signal.getsignal(sig) for sig in handlers}
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        try:
            self._start_all()
            while self._running:
                pid, status = os.wait()
                child = self._running.pop(pid, None)
                if child is not None:
                    child.process.returncode = os.waitstatus_to_exitcode(status)
                    self._on_exit(child)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            for sig, before in previous.items():
                signal.signal(sig, signal.SIG_DFL if before is None else before)
        return 1 if self._failed else 0

    def _start_all(self) -> None:
        preexec = _die_with_supervisor()
        for plan in self._plans:
            if self._stopping is not None:  # a signal or a failed child came while starting
                return
            try:
                process = subprocess.Popen(
                    self._command(plan),
                    env=self._env(plan),
                    process_group=0,
                    preexec_fn=preexec,
                )
            except OSError as exc:
                self._say(
                    f"execdist: could not start worker process {plan.index} "
                    f"(web port {plan.web_port}): {exc}. Stopping the others; fix the cause "
                    "(memory, process limits) or start fewer with --processes.\n"
                )
                self._failed = True
                self._stop_all(signal.SIGTERM, grace=True)
                return
            self._running[process.pid] = _Child(plan, process)
            if self._stopping is not None:
                # the signal came while Popen ran, before the handler could see this child
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, self._stopping)

    def _on_exit(self, child: _Child) -> None:
        code = child.process.returncode
        assert code is not None
        plan = child.plan
        if self._stopping is None:
            self._failed = True
            others = len(self._running)
            stopping = (
                f"stopping the other {others} worker process{'es' if others != 1 else ''}"
                if others
                else "no other worker process is left"
            )
            self._say(
                f"execdist: worker process {plan.index} (pid {child.process.pid}, web port "
                f"{plan.web_port}) {describe_exit(code)} without being asked to stop; "
                f"{stopping}. {why(code)} Fix that and start `execdist worker` again; "
                f"`execdist worker --processes 1 --web-port {plan.web_port}` runs that worker "
                "alone.\n"
            )
            self._stop_all(signal.SIGTERM, grace=True)
        elif code not in (0, -signal.SIGTERM, -signal.SIGINT) and not child.killed:
            # killed by the signal we passed on (still starting, no handler yet) is a clean
            # stop; anything else is not
            self._failed = True
            self._say(
                f"execdist: worker process {plan.index} (pid {child.process.pid}, web port "
                f"{plan.web_port}) {describe_exit(code)} while stopping. {why(code)}\n"
            )

    def _stop_all(self, sig: signal.Signals, grace: bool) -> None:
        self._stopping = sig
        for child in list(self._running.values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.process.pid, sig)
        if grace and self._running:
            signal.setitimer(signal.ITIMER_REAL, self._stop_grace_s)

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        # SIGHUP means the terminal went away; the workers stop as they do on SIGTERM
        sig = signal.SIGTERM if signum == signal.SIGHUP else signal.Signals(signum)
        self._stop_all(sig, grace=False)

    def _on_passed_on_signal(self, signum: int, frame: FrameType | None) -> None:
        for child in list(self._running.values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.process.pid, signum)

    def _on_grace_expired(self, signum: int, frame: FrameType | None) -> None:
        for child in list(self._running.values()):
            self._say(
                f"execdist: worker process {child.plan.index} (pid {child.process.pid}) did "
                f"not stop within {self._stop_grace_s:g}s; killing it.\n"
            )
            child.killed = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.process.pid, signal.SIGKILL)
