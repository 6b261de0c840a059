"""Log lines: JSON objects with the worker id and, where they apply, partition, order_id and
exec_id; human-readable in the console format; nothing built for a line the level drops."""

from __future__ import annotations

import io
import logging
import random
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from execdist import topics
from execdist.agents.join import JoinProcessor
from execdist.codecs.input import InputDecoder
from execdist.demo import order_flow
from execdist.logs import configure_logging
from execdist.metrics import Metrics
from execdist.runtime.records import InputRecord
from execdist.settings import Settings, SettingsError
from execdist.tables.declarations import HISTORY, ORDER_STATE, TIMERS, table_specs
from execdist.tables.store import PartitionedState, RocksTables
from tests.unit.agents.test_join_punctuation import Recorder


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Give the root logger back as it was: the tests replace its handler."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def lines(root_logging: None) -> io.StringIO:
    stream = io.StringIO()
    configure_logging("json", logging.INFO, "worker-7", stream)
    return stream


def parsed(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_the_worker_id_and_the_extra_fields(
    lines: io.StringIO,
) -> None:
    logging.getLogger("execdist.agents.join").info(
        "dead-lettered %s", "executions:3@42", extra={"partition": 3, "order_id": "O-1"}
    )
    (line,) = parsed(lines)
    assert line["event"] == "dead-lettered executions:3@42"
    assert line["level"] == "info"
    assert line["logger"] == "execdist.agents.join"
    assert line["worker_id"] == "worker-7"
    assert line["partition"] == 3
    assert line["order_id"] == "O-1"
    assert str(line["time"]).endswith("Z")


def test_every_logger_of_the_process_is_formatted_alike(lines: io.StringIO) -> None:
    logging.getLogger("aiokafka.consumer").warning("a library speaks")
    (line,) = parsed(lines)
    assert line["logger"] == "aiokafka.consumer"
    assert line["worker_id"] == "worker-7"


def test_an_exception_is_kept_in_the_line(lines: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("execdist.runtime.engine").exception("processing failed")
    (line,) = parsed(lines)
    assert "ValueError: boom" in str(line["exception"])


def test_lines_under_the_level_are_not_written(lines: io.StringIO) -> None:
    logging.getLogger("execdist.runtime.engine").debug("batch of %d records", 12)
    assert lines.getvalue() == ""


def test_the_console_format_is_for_people(root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("console", logging.INFO, "worker-7", stream)
    logging.getLogger("execdist.agents.join").info("dead-lettered", extra={"partition": 3})
    text = stream.getvalue()
    assert text.count("\n") == 1
    assert "dead-lettered" in text and "partition=3" in text and "worker_id=worker-7" in text
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(text)


def test_the_format_is_a_setting_json_by_default() -> None:
    assert Settings.from_env({}).log_format == "json"
    assert Settings.from_env({"EXECDIST_LOG_FORMAT": "Console"}).log_format == "console"
    with pytest.raises(SettingsError, match="EXECDIST_LOG_FORMAT: expected one of json, console"):
        Settings.from_env({"EXECDIST_LOG_FORMAT": "xml"})


# ---- the join's lines -------------------------------------------------------------------


@pytest.fixture
def join(tmp_path: Path) -> JoinProcessor:
    settings = Settings(app_id="log-test", worker_id="worker-7")
    rocks = RocksTables(tmp_path, table_specs(settings.app_id), 8 * 1024 * 1024)
    tables = {
        name: PartitionedState(rocks, rocks.specs[name]) for name in (ORDER_STATE, TIMERS, HISTORY)
    }
    for name in tables:
        rocks.open(name, 2, fresh=True)
    return JoinProcessor(
        settings=settings,
        states=tables[ORDER_STATE],
        timers=tables[TIMERS],
        history=tables[HISTORY],
        out=Recorder(),
        decoder=InputDecoder(None),
        metrics=Metrics(),
    )


def _execution(order_id: str) -> tuple[bytes, dict[str, object]]:
    for record in order_flow(random.Random(5), order_id, allow_amend=False):
        if record.topic == topics.EXECUTIONS:
            return record.value, orjson.loads(record.value)
    raise AssertionError("the flow has an execution")


async def test_a_dead_letter_line_names_partition_order_and_execution(
    join: JoinProcessor, lines: io.StringIO
) -> None:
    value, execution = _execution("O-LOG-1")
    changed = orjson.dumps({**execution, "last_qty": "1"})
    # the same exec_id twice with different content: the second is a conflicting duplicate
    await join.process(InputRecord(topics.EXECUTIONS, 2, 40, b"O-LOG-1", value, None))
    await join.process(InputRecord(topics.EXECUTIONS, 2, 41, b"O-LOG-1", changed, None))
    (line,) = [line for line in parsed(lines) if str(line["event"]).startswith("dead-lettered")]
    assert line["worker_id"] == "worker-7"
    assert line["topic"] == topics.EXECUTIONS
    assert line["partition"] == 2
    assert line["offset"] == 41
    assert line["order_id"] == "O-LOG-1"
    assert line["exec_id"] == execution["exec_id"]
    assert line["reason"] == "CONFLICTING_DUPLICATE"


async def test_a_record_that_cannot_be_read_is_logged_without_an_exec_id(
    join: JoinProcessor, lines: io.StringIO
) -> None:
    await join.process(InputRecord(topics.EXECUTIONS, 2, 7, b"O-LOG-2", b"\xff not json", None))
    (line,) = parsed(lines)
    assert line["reason"] == "DECODE_ERROR"
    assert line["order_id"] == "O-LOG-2"
    assert "exec_id" not in line
    assert line["partition"] == 2


async def test_a_dead_letter_line_under_the_level_is_not_written(
    join: JoinProcessor, root_logging: None
) -> None:
    stream = io.StringIO()
    configure_logging("json", logging.WARNING, "worker-7", stream)
    await join.process(InputRecord(topics.EXECUTIONS, 2, 7, b"O-LOG-3", b"\xff", None))
    assert stream.getvalue() == ""
