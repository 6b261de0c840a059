"""``execdist worker``: run one worker. Configuration comes from ``EXECDIST_*`` variables;
Faust's worker options (``--web-port``, ``--loglevel`` ...) are passed through."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from dataclasses import replace

from execdist.settings import Settings, SettingsError

USAGE = """usage: execdist worker [--web-port PORT] [--web-host HOST] [faust worker options]

Runs one execdist worker. Configure it with EXECDIST_* variables (see README.md)."""


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _worker_class() -> type:
    """Faust's worker without its start-up spinner.

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

    return Worker


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        sys.stdout.write(USAGE + "\n")
        return 0 if argv else 2
    if argv[0] != "worker":
        sys.stderr.write(f"execdist: unknown command {argv[0]!r}\n{USAGE}\n")
        return 2
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--web-port", type=int)
    parser.add_argument("--web-host")
    known, rest = parser.parse_known_args(argv[1:])
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.stderr.write(f"execdist: invalid configuration: {exc}\n")
        return 2
    if known.web_port is not None:
        settings = replace(settings, web_port=known.web_port)
    if known.web_host is not None:
        settings = replace(settings, web_host=known.web_host)
    if not _port_free(settings.web_host, settings.web_port):
        sys.stderr.write(
            f"execdist: port {settings.web_port} on {settings.web_host} is already in use. "
            "Stop the process using it or choose another with --web-port or EXECDIST_WEB_PORT.\n"
        )
        return 2
    if settings.grpc_port == settings.web_port or not _port_free(
        settings.web_host, settings.grpc_port
    ):
        sys.stderr.write(
            f"execdist: gRPC port {settings.grpc_port} on {settings.web_host} is already in use. "
            "Stop the process using it or choose another with EXECDIST_GRPC_PORT.\n"
        )
        return 2

    # imported late: configuration errors answer before Faust loads
    from execdist.app import create_app
    from execdist.infra.kafka_admin import BrokerCheckFailed, ensure_topics

    try:
        asyncio.run(ensure_topics(settings))
    except BrokerCheckFailed as exc:
        sys.stderr.write(f"execdist: {exc}\n")
        return 2
    app = create_app(settings)
    app.conf.Worker = _worker_class()  # type: ignore[assignment]  # faust types it loosely
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
    app.main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
