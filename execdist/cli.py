"""``execdist worker``: run the workers of one host. Configuration comes from ``EXECDIST_*``
variables; Faust's worker options (``--web-port``, ``--loglevel`` ...) are passed through.

With ``--processes 1`` this process is the worker. With more, it is a small supervisor
(:mod:`execdist.supervisor`) of that many ``--processes 1`` children.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import replace

from execdist.logs import configure_logging
from execdist.settings import Settings, SettingsError, check_protected_mode, parse_processes
from execdist.supervisor import (
    ChildPlan,
    PortPlanError,
    Supervisor,
    busy_ports,
    child_command,
    child_env,
    plan_children,
)

USAGE = """usage: execdist worker [--processes N] [--web-port PORT] [--web-host HOST]
                       [faust worker options]

Runs the execdist workers of this host. Configure them with EXECDIST_* variables (see README.md).

  --processes N   worker processes to run (also EXECDIST_PROCESSES); default: one per core,
                  at most EXECDIST_TOPIC_PARTITIONS. Each is an ordinary member of the
                  consumer group. With N > 1 this process supervises them: process i serves
                  web port PORT+i and gRPC port EXECDIST_GRPC_PORT+i (all must be free), has
                  worker id <EXECDIST_WORKER_ID>-i and its data under
                  EXECDIST_DATA_DIR/worker-<its web port>. SIGTERM/SIGINT stop them all; if
                  one exits on its own, the others are stopped and the exit code is 1.
                  With 1 (the only choice for tools that signal the worker's pid), this
                  process is the worker.
  --web-port PORT HTTP port (of process 0); also EXECDIST_WEB_PORT.
  --web-host HOST interface to bind; also EXECDIST_WEB_HOST."""


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _worker_class(settings: Settings) -> type:
    """Faust's worker with execdist's log lines and without its start-up spinner.

    To spin on every log record, the spinner lowers the root logger to DEBUG for good, and
    then every debug call in aiokafka, Faust and mode builds a record that no handler writes:
    about 7 % of a busy worker's time in the fan-out profile. Without it the root logger keeps
    the ``--loglevel`` level.
    """
    import faust

    class Worker(faust.Worker):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            self.spinner = None
            super().on_setup_root_logger(logger, level)
            # mode has just set up its own handler; ours replaces it, at the level it chose
            configure_logging(settings.log_format, level, settings.worker_id)

    return Worker


def parse_worker_args(args: list[str]) -> tuple[Settings, str | None, list[str]] | str:
    """Settings from the environment with the command line's overrides, the ``--web-host``
    given (children get it as given), and the options left for Faust; or what is wrong."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--web-port", type=int)
    parser.add_argument("--web-host")
    parser.add_argument("--processes")
    known, rest = parser.parse_known_args(args)
    # Faust's own --web-bind stays in ``rest`` for Faust; it is only read here to know what the
    # worker will be reachable on.
    bind_parser = argparse.ArgumentParser(add_help=False)
    bind_parser.add_argument("--web-bind", "-b", action="append", default=[])
    binds = tuple(bind_parser.parse_known_args(rest)[0].web_bind)
    try:
        settings = Settings.from_env()
        if known.processes is not None:
            settings = replace(settings, processes=parse_processes(known.processes, "--processes"))
        if known.web_port is not None:
            settings = replace(settings, web_port=known.web_port)
        if known.web_host is not None:
            settings = replace(settings, web_host=known.web_host)
        check_protected_mode(settings, binds)
    except SettingsError as exc:
        return f"invalid configuration: {exc}"
    return settings, known.web_host, rest


def port_problem(
    settings: Settings, plans: list[ChildPlan], port_free: Callable[[str, int], bool]
) -> str | None:
    """What to tell the user if a port the workers need is taken, else None."""
    host = settings.web_host
    busy = busy_ports(host, plans, port_free)
    if not busy:
        return None
    if len(plans) == 1:
        if busy[0].startswith("web"):
            return (
                f"port {settings.web_port} on {host} is already in use. Stop the process "
                "using it or choose another with --web-port or EXECDIST_WEB_PORT."
            )
        return (
            f"gRPC port {settings.grpc_port} on {host} is already in use. Stop the process "
            "using it or choose another with EXECDIST_GRPC_PORT."
        )
    return (
        f"{len(plans)} worker processes need web ports {plans[0].web_port}-{plans[-1].web_port}"
        f" and gRPC ports {plans[0].grpc_port}-{plans[-1].grpc_port} on {host}, but "
        f"{', '.join(busy)} {'is' if len(busy) == 1 else 'are'} in use. Stop what uses "
        f"{'it' if len(busy) == 1 else 'them'}, move the ranges with --web-port "
        "(EXECDIST_WEB_PORT) and EXECDIST_GRPC_PORT, or run fewer with --processes."
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        sys.stdout.write(USAGE + "\n")
        return 0 if argv else 2
    if argv[0] != "worker":
        sys.stderr.write(f"execdist: unknown command {argv[0]!r}\n{USAGE}\n")
        return 2
    parsed = parse_worker_args(argv[1:])
    if isinstance(parsed, str):
        sys.stderr.write(f"execdist: {parsed}\n")
        return 2
    settings, web_host, rest = parsed
    try:
        plans = plan_children(settings, settings.processes)
    except PortPlanError as exc:
        sys.stderr.write(f"execdist: {exc}\n")
        return 2
    problem = port_problem(settings, plans, _port_free)
    if problem is not None:
        sys.stderr.write(f"execdist: {problem}\n")
        return 2
    if settings.processes > settings.topic_partitions:
        sys.stderr.write(
            f"execdist: warning: {settings.processes} processes but "
            f"{settings.topic_partitions} partitions (EXECDIST_TOPIC_PARTITIONS): at least "
            f"{settings.processes - settings.topic_partitions} of them will stand idle.\n"
        )

    # imported late: configuration errors answer before Faust loads (and a supervisor never
    # loads it)
    from execdist.infra.kafka_admin import BrokerCheckFailed, ensure_topics

    try:
        tables = asyncio.run(ensure_topics(settings))
    except BrokerCheckFailed as exc:
        sys.stderr.write(f"execdist: {exc}\n")
        return 2
    if settings.processes > 1:
        # the children check the broker again, but a broker or topic problem is said once,
        # here, rather than N times, and before any child has started
        supervisor = Supervisor(
            plans,
            command=lambda plan: child_command(plan, web_host, rest),
            env=lambda plan: child_env(plan, os.environ),
        )
        return supervisor.run()

    from execdist.app import create_app

    app = create_app(settings, tables)
    app.conf.Worker = _worker_class(settings)  # type: ignore[assignment]  # faust types it loosely
    faust_args = [
        "worker",
        "--web-port",
        str(settings.web_port),
        "--web-host",
        settings.web_host,
        "--loglevel",
        {"warning": "warn"}.get(settings.log_level, settings.log_level),
        *rest,
    ]
    sys.argv = ["execdist", *faust_args]
    tune_garbage_collector()
    favour_the_event_loop()
    dump_stacks_on_sigquit()
    app.main()
    return 0


def dump_stacks_on_sigquit() -> None:
    """``kill -QUIT <pid>`` writes every thread's Python stack to the worker's stderr and the
    worker goes on, as a JVM's thread dump does: for a worker that seems stuck. Written from
    the signal handler itself, so it works while the event loop or the GIL is held up (SIGUSR1
    and SIGUSR2 are Faust's, and need a running loop)."""
    faulthandler.register(signal.SIGQUIT, all_threads=True, chain=False)


GC_YOUNG_THRESHOLD = 500_000
"""Allocations (net) between two collections of the youngest generation; Python's default is
700, which a worker passes several times per input record.

It is set above what a transaction holds alive while it is built and committed (the decoded
inputs, the states, the outputs waiting for the commit: up to about 260,000 objects in a
one-worker drain). A collection that falls inside a transaction scans all of that, finds it
alive and moves it to an older generation, where the next collection of that generation
scans it again; at 50,000 that happened about 200 times in an 80,000-execution drain, 0.85 s of
the event loop (about 10 us per execution). Above it, what a transaction allocated is freed by
reference counting at its commit and the count falls back: the same drain runs no collection
at all. A collection still comes once the survivors (the tables' caches growing) reach the
threshold; it then scans at most this many objects, about 35 ms once in a while.
"""


def tune_garbage_collector() -> None:
    """Collect cycles less often, and never scan what start-up built.

    What a worker allocates per record (decoded records, states, outputs) is freed by
    reference counting, not by the cycle collector, but every 700 net allocations the
    collector scanned the young objects, and now and then every object of the process (the
    app, its modules, the tables' caches). Freezing what exists once the app is built keeps
    it out of every later collection, and a larger young threshold makes collections rare:
    bench/process_cost 137-141 -> 129-132 us per execution. Cycles are still collected.
    """
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


SWITCH_INTERVAL_S = 0.02
"""How long a thread that wants the interpreter lock waits before it makes the thread holding
it hand it over (Python's default: 5 ms).

The event loop does the records' work; the worker's other threads want the lock for a moment
each: the producer's, once per record's delivery report while a commit flushes (confluent-kafka
takes the lock for every report), the consumer's and the relay feed's to hand a polled batch
over. The loop lets go of the lock at each of its turns (every 32 records at most) and whenever
it waits, and the others take it then; what the interval adds is a forced hand-over in the
middle of a batch, each one a wake-up of both threads. At 5 ms a saturated worker's event loop
was switched out about 150 times a second, at 20 ms about 90.

Measured in interleaved pairs (one worker, 1 subscription, the same code but this): drains of
160,000 executions 8,243 -> 8,966 executions/s on average over four pairs (event loop 114 ->
106 us per execution), and the three pairs before them 6,910 -> 7,817; at a fixed 4,000/s,
three pairs, p50 86 / 91 / 38 -> 54 / 45 / 32 ms, p99 687 / 455 / 154 -> 704 / 323 / 117 ms,
commits 42 / 42 / 20 -> 28 / 23 / 16 ms; at 100/s no difference (p50 9.3 against 9.5 ms,
p99 24 against 24-26)."""


def favour_the_event_loop() -> None:
    """Let the event loop keep the interpreter lock longer between forced hand-overs (see
    :data:`SWITCH_INTERVAL_S`)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


if __name__ == "__main__":
    raise SystemExit(main())
