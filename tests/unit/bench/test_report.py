"""The bench report's account of the host: its load and its speed before and after a run."""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import generated_section, host_after, machine, python_probe_us

LATEST = Path(__file__).resolve().parents[3] / "bench" / "results" / "latest.json"


def test_the_speed_probe_times_the_fixed_piece_of_python_in_microseconds() -> None:
    probe = python_probe_us()
    assert 1 < probe < 100_000, f"{probe} µs for sum(range(10000))"


def test_the_host_is_described_as_the_run_began_and_as_it_ended() -> None:
    before = machine()
    after = host_after(before)
    assert after["load_before"] == before["load_before"]
    assert after["python_probe_us_before"] == before["python_probe_us_before"]
    assert len(after["load_after"]) == 3
    assert after["python_probe_us_after"] > 0


def test_the_report_shows_the_host_speed_and_still_renders_a_run_from_before_it() -> None:
    result = json.loads(LATEST.read_text())
    older = generated_section(result)
    assert "Host speed" not in older and "after it" not in older
    result["machine"] = {
        **result["machine"],
        "load_after": [1.5, 2.0, 2.5],
        "python_probe_us_before": 91.2,
        "python_probe_us_after": 388.4,
    }
    section = generated_section(result)
    assert "after it [1.5, 2.0, 2.5]." in section
    assert "took 91.2 µs as the run began and 388.4 µs as it ended" in section
