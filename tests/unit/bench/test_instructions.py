"""Instructions counted over one region of a program (``bench.instructions``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench import instructions

ROOT = Path(__file__).resolve().parents[3]
LOOP = textwrap.dedent(
    f"""
    import sys
    sys.path.insert(0, {str(ROOT)!r})
    from bench.instructions import counting
    total = 0
    for _ in range(100_000):  # outside the region: not counted
        total += 1
    with counting():
        for _ in range(int(sys.argv[1])):
            total += 1
    print(total)
    """
)


def test_perf_stat_output_is_read_for_the_instruction_count() -> None:
    stderr = "1176375792,,instructions:u,154732459,100.00,3.31,insn per cycle\n"
    assert instructions.parse(stderr) == 1_176_375_792


def test_an_event_perf_could_not_count_is_an_error_not_a_zero() -> None:
    with pytest.raises(instructions.Unavailable, match="counted no"):
        instructions.parse("<not supported>,,instructions:u,0,100.00,,\n")
    with pytest.raises(instructions.Unavailable, match="no instructions"):
        instructions.parse("perf: some other complaint\n")


def test_outside_perf_the_region_just_runs() -> None:
    ran = []
    with instructions.counting():
        ran.append(True)
    assert ran == [True]


def test_only_the_region_is_counted_and_it_grows_with_the_work_in_it() -> None:
    why = instructions.available()
    if why is not None:  # a machine without instruction counters says so, and why
        with pytest.raises(instructions.Unavailable):
            instructions.count([sys.executable, "-c", LOOP, "1"])
        return
    small, printed = instructions.count([sys.executable, "-c", LOOP, "100000"])
    large, _ = instructions.count([sys.executable, "-c", LOOP, "1000000"])
    assert printed.strip() == "200000"
    # ten times the iterations in the region: about ten times the instructions (9.6-10.6
    # seen here, on a loaded host too). Were the start-up and the loop outside the region (as
    # long as the small region's) counted, the ratio would be nearer 5.
    assert 8.0 < large / small < 12.0, (small, large)


def test_a_running_process_is_metered_from_start_to_stop() -> None:
    spinning = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        meter = instructions.Meter([spinning.pid]).start()
        if instructions.available() is not None:
            assert meter.stop() is None  # no counters here: no figure, rather than a zero
            return
        # perf attaches, counts while the process spins, and reports when stopped
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            time.sleep(0.05)
        counted = meter.stop()
        assert counted is not None and counted > 1_000_000
    finally:
        spinning.kill()
        spinning.wait()
    assert instructions.Meter([]).start().stop() is None
