"""How a worker's log lines look: one JSON object a line, or a human-readable line.

Every logger of the process (execdist's, Faust's, mode's, aiokafka's) goes through the
standard library's ``logging``; structlog's :class:`~structlog.stdlib.ProcessorFormatter` on the
root handler turns each record into the chosen format, so no caller needs to know about it.
A line carries ``time`` (UTC), ``level``, ``logger``, ``event`` (the message), the
``worker_id`` of the process, ``exception`` when there is one, and what the call passed as
``extra``: ``topic``, ``partition``, ``offset``, ``order_id``, ``exec_id``, ``reason`` where
they apply. Callers build ``extra`` only under ``log.isEnabledFor``, so a line the level drops
costs nothing on the hot path.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import IO, Any

import orjson
import structlog

LOG_FORMATS = ("json", "console")
"""``json``: for log shippers (the default); ``console``: for people (``make run``)."""


def configure_logging(
    log_format: str, level: int | str, worker_id: str, stream: IO[str] | None = None
) -> logging.Handler:
    """Make the root logger write ``log_format`` lines to ``stream`` (stderr by default) at
    ``level``, every line naming ``worker_id``; replaces the root's handlers. Returns the
    handler."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    stream = sys.stderr if stream is None else stream
    fields = {"worker_id": worker_id}
    last: list[Any]
    if log_format == "json":
        stamp = structlog.processors.TimeStamper(fmt="iso", utc=True, key="time")
        last = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(_json)]
    else:
        # the console renderer puts "timestamp" first on the line
        stamp = structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")
        last = [structlog.dev.ConsoleRenderer(colors=_is_terminal(stream))]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            _Static(fields),
            stamp,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *last],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return handler


class _Static:
    """Adds fields that hold for the whole process (the worker id) to every line."""

    def __init__(self, fields: Mapping[str, object]) -> None:
        self._fields = dict(fields)

    def __call__(
        self, logger: object, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in self._fields.items():
            event_dict.setdefault(key, value)
        return event_dict


def _json(event_dict: Mapping[str, Any], **_: Any) -> str:
    # orjson: the fastest well-kept encoder, already a dependency; anything it cannot encode
    # (an exception object passed as extra, say) is logged as its repr rather than lost
    return orjson.dumps(event_dict, default=repr).decode()


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
