"""The bench report's account of the host: its load and its speed before and after a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.report import generated_section, host_after, machine, python_probe_us

LATEST = Path(__file__).resolve().parents[3] / "bench" / "results" / "latest.json"
NEWER_HOST = ("load_after", "python_probe_us_before", "python_probe_us_after")
NEWER_DRAIN = ("worker_instructions_per_event", "broker_instructions_per_event")


def older_run() -> dict[str, Any]:
    """The committed run, as a run from before the host probe, the instruction counts and the
    processors alone were recorded: what the report renders from an older ``latest.json``."""
    result: dict[str, Any] = json.loads(LATEST.read_text())
    for key in NEWER_HOST:
        result["machine"].pop(key, None)
    for item in result["saturation"]:
        for key in NEWER_DRAIN:
            item.pop(key, None)
    result["ceilings"].pop("processors", None)
    return result


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
    result = older_run()
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


def test_the_saturation_table_has_instructions_for_a_run_that_counted_them() -> None:
    result = older_run()
    assert "instructions/execution" not in generated_section(result)  # counted by no drain
    first, second = result["saturation"][0], result["saturation"][1]
    first["worker_instructions_per_event"] = 663_122
    first["broker_instructions_per_event"] = 410_488
    section = generated_section(result)
    head = next(line for line in section.splitlines() if line.startswith("| workers | subs"))
    row = next(line for line in section.splitlines() if line.startswith("| 1 | 1 | "))
    assert head.count("|") == row.count("|")
    columns = [cell.strip() for cell in head.strip("|").split("|")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[columns.index("worker instructions/execution")] == "663k"
    assert cells[columns.index("broker instructions/execution")] == "410k"
    other = f"| {second['workers']} | {second['subscriptions']} | "
    assert "| - | - |" in next(line for line in section.splitlines() if line.startswith(other))


def test_the_processors_alone_are_set_beside_the_whole_worker_when_the_run_measured_them() -> None:
    result = older_run()
    assert "processors alone" not in generated_section(result)  # a run from before them
    single = next(s for s in result["saturation"] if s["workers"] == 1 and s["subscriptions"] == 1)
    single["worker_instructions_per_event"] = 672_000
    result["ceilings"]["processors"] = {
        "executions": 20_000,
        "cpu_us_per_execution": 250.4,
        "instructions_per_execution": 481_000,
    }
    section = generated_section(result)
    assert (
        "- The processors alone (`bench.process_cost`: the join, the router, the sequencer and "
        "the tables, no Kafka), 20,000 executions: 250 µs of CPU and 481k instructions per "
        "execution; the whole worker's drain (1 subscription) 672k, so the engine, the Kafka "
        "client and the rest of the worker add 191k (28%)." in section
    )
    del result["ceilings"]["processors"]["instructions_per_execution"]  # no perf counters
    assert "20,000 executions: 250 µs of CPU per execution." in generated_section(result)


def test_the_committed_run_renders_as_benchmarks_md_shows_it() -> None:
    benchmarks = (LATEST.parents[2] / "BENCHMARKS.md").read_text()
    assert generated_section(json.loads(LATEST.read_text())) in benchmarks
