"""Waiting for the bench's broker to remove a deleted topic's files (``bench.common``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench import common
from bench.common import _topic_of, files_removed


def test_a_partition_folder_is_read_as_its_topic_whether_deleted_or_not() -> None:
    assert _topic_of("bench.floor.3dc1cd.out-0") == "bench.floor.3dc1cd.out"
    assert _topic_of("execdist.sub-ACC-7-12") == "execdist.sub-ACC-7"
    assert _topic_of("orders-3.0713f4860c3e42399702b50ae8cbdbc7-delete") == "orders"
    # the broker's own files are no topic's
    assert _topic_of("meta.properties") is None
    assert _topic_of("recovery-point-offset-checkpoint") is None


async def test_the_wait_ends_when_the_deleted_topics_folders_are_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "LOG_DIR", tmp_path)
    (tmp_path / "meta.properties").write_text("")
    (tmp_path / "kept-0").mkdir()  # a topic not deleted does not hold the wait
    doomed = tmp_path / "orders-1"
    doomed.mkdir()
    waiting = asyncio.create_task(files_removed({"orders"}))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    # the broker renames the folder first, then removes it
    renamed = doomed.rename(tmp_path / "orders-1.0713f4860c3e42399702b50ae8cbdbc7-delete")
    await asyncio.sleep(0.5)
    assert not waiting.done()
    renamed.rmdir()
    await asyncio.wait_for(waiting, timeout=5)


async def test_the_wait_gives_up_after_its_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(common, "LOG_DIR", tmp_path)
    monkeypatch.setattr(common, "FILES_REMOVED_S", 0.5)
    (tmp_path / "orders-0.0713f4860c3e42399702b50ae8cbdbc7-delete").mkdir()
    await asyncio.wait_for(files_removed({"orders"}), timeout=5)
    assert "still holds deleted topics' files" in capsys.readouterr().out


async def test_a_broker_whose_log_dir_is_elsewhere_is_not_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "LOG_DIR", tmp_path / "absent")
    await asyncio.wait_for(files_removed({"orders"}), timeout=1)
