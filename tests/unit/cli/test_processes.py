"""``execdist worker --processes N``: how N is chosen and how the children's ports are laid out.

All of it is decided before anything starts, so that a bad value or a taken port stops the
command with one message instead of a half-started host.
"""

from __future__ import annotations

import sys

import pytest

from execdist import cli, settings
from execdist.cli import parse_worker_args, port_problem
from execdist.settings import Settings, SettingsError
from execdist.supervisor import (
    ChildPlan,
    PortPlanError,
    child_command,
    child_env,
    plan_children,
)


@pytest.fixture(autouse=True)
def _no_processes_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EXECDIST_PROCESSES", "EXECDIST_TOPIC_PARTITIONS", "EXECDIST_WORKER_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(settings, "available_cores", lambda: 8)


def parsed(*args: str) -> tuple[Settings, str | None, list[str]]:
    result = parse_worker_args(list(args))
    assert not isinstance(result, str), result
    return result


def test_default_is_one_process_per_core_but_no_more_than_partitions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert parsed()[0].processes == 4  # 8 cores, 4 partitions by default
    monkeypatch.setenv("EXECDIST_TOPIC_PARTITIONS", "16")
    assert parsed()[0].processes == 8
    monkeypatch.setattr(settings, "available_cores", lambda: 1)
    assert parsed()[0].processes == 1


def test_the_variable_sets_it_and_the_option_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECDIST_PROCESSES", "3")
    assert parsed()[0].processes == 3
    assert parsed("--processes", "1")[0].processes == 1
    assert parsed("--processes=6")[0].processes == 6  # more than partitions: allowed, warned


@pytest.mark.parametrize("value", ["0", "-2", "two", "", "10000"])
def test_a_bad_option_says_what_is_accepted(value: str) -> None:
    problem = parse_worker_args(["--processes", value])
    assert isinstance(problem, str)
    assert "--processes" in problem
    assert "whole number from 1 to 256" in problem


def test_a_bad_variable_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECDIST_PROCESSES", "0")
    problem = parse_worker_args([])
    assert isinstance(problem, str)
    assert "EXECDIST_PROCESSES" in problem
    with pytest.raises(SettingsError):
        Settings.from_env({"EXECDIST_PROCESSES": "many"})


def test_faust_options_pass_through_and_web_host_is_kept_as_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    got, web_host, rest = parsed("--processes", "2", "--web-port", "7000", "--loglevel", "debug")
    assert (got.processes, got.web_port, web_host, rest) == (2, 7000, None, ["--loglevel", "debug"])
    monkeypatch.setenv("EXECDIST_ADMIN_TOKEN", "a-secret-of-our-own")
    got, web_host, _ = parsed("--web-host", "0.0.0.0")
    assert web_host == got.web_host == "0.0.0.0"


@pytest.mark.parametrize(
    "args",
    [
        ["--web-host", "0.0.0.0"],
        ["--web-host", "::"],
        ["--web-host", "10.1.2.3"],
        ["--web-host", "worker-1.internal"],
        ["--web-bind", "0.0.0.0"],
        ["-b", "192.168.0.7"],
    ],
)
def test_protected_mode_refuses_the_default_admin_token_off_loopback(
    monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.delenv("EXECDIST_ADMIN_TOKEN", raising=False)
    problem = parse_worker_args(args)
    assert isinstance(problem, str)
    assert "EXECDIST_ADMIN_TOKEN" in problem
    assert "export EXECDIST_ADMIN_TOKEN=" in problem  # says how to set one
    assert "dev-admin-token" not in problem
    monkeypatch.setenv("EXECDIST_ADMIN_TOKEN", "a-secret-of-our-own")
    assert not isinstance(parse_worker_args(args), str)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost"])
def test_protected_mode_lets_the_default_admin_token_serve_loopback(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.delenv("EXECDIST_ADMIN_TOKEN", raising=False)
    got, _, _ = parsed("--web-host", host)
    assert got.admin_token == "dev-admin-token"


def test_one_process_keeps_the_settings_ports_and_id() -> None:
    one = Settings(web_port=6066, grpc_port=50051, worker_id="host-1")
    assert plan_children(one, 1) == [ChildPlan(0, 6066, 50051, "host-1")]
    with pytest.raises(PortPlanError, match="both 6066"):
        plan_children(Settings(web_port=6066, grpc_port=6066), 1)


def test_child_i_gets_base_plus_i_and_an_id_of_its_own() -> None:
    plans = plan_children(Settings(web_port=6066, grpc_port=50051, worker_id="host-1"), 3)
    assert plans == [
        ChildPlan(0, 6066, 50051, "host-1-0"),
        ChildPlan(1, 6067, 50052, "host-1-1"),
        ChildPlan(2, 6068, 50053, "host-1-2"),
    ]


@pytest.mark.parametrize(
    ("web", "grpc", "says"),
    [
        (6066, 6068, "overlap"),  # 6066-6069 and 6068-6071
        (6068, 6066, "overlap"),
        (65534, 50051, "past 65535"),
        (6066, 65533, "past 65535"),
    ],
)
def test_ranges_that_cannot_work_are_refused_with_what_to_change(
    web: int, grpc: int, says: str
) -> None:
    with pytest.raises(PortPlanError, match=says) as refused:
        plan_children(Settings(web_port=web, grpc_port=grpc), 4)
    assert "--web-port" in str(refused.value) or "EXECDIST_GRPC_PORT" in str(refused.value)


def test_adjacent_ranges_are_fine() -> None:
    plans = plan_children(Settings(web_port=7000, grpc_port=7004), 4)
    assert [p.grpc_port for p in plans] == [7004, 7005, 7006, 7007]


def test_every_busy_port_is_named_with_its_process() -> None:
    config = Settings(web_port=6066, grpc_port=50051)
    plans = plan_children(config, 3)
    taken = {6067, 50053}
    problem = port_problem(config, plans, lambda host, port: port not in taken)
    assert problem is not None
    assert "web ports 6066-6068 and gRPC ports 50051-50053" in problem
    assert "web 6067 (process 1), gRPC 50053 (process 2) are in use" in problem
    assert "--processes" in problem
    assert port_problem(config, plans, lambda host, port: True) is None


def test_one_process_keeps_its_messages() -> None:
    config = Settings(web_port=6066, grpc_port=50051)
    plans = plan_children(config, 1)
    web = port_problem(config, plans, lambda host, port: port != 6066)
    assert web is not None and web.startswith("port 6066 on 127.0.0.1 is already in use")
    grpc = port_problem(config, plans, lambda host, port: port != 50051)
    assert grpc is not None and grpc.startswith("gRPC port 50051")


def test_a_child_is_an_ordinary_single_process_worker() -> None:
    plan = ChildPlan(1, 6067, 50052, "host-1-1")
    assert child_command(plan, None, ["--loglevel", "info"]) == [
        sys.executable,
        *("-m", "execdist.cli", "worker", "--processes", "1", "--web-port", "6067"),
        *("--loglevel", "info"),
    ]
    assert child_command(plan, "0.0.0.0", [])[-2:] == ["--web-host", "0.0.0.0"]
    env = child_env(plan, {"EXECDIST_PROCESSES": "4", "EXECDIST_BROKER": "k:9092"})
    assert env == {
        "EXECDIST_PROCESSES": "1",
        "EXECDIST_BROKER": "k:9092",
        "EXECDIST_WEB_PORT": "6067",
        "EXECDIST_GRPC_PORT": "50052",
        "EXECDIST_WORKER_ID": "host-1-1",
    }


def test_refusals_exit_2_before_any_broker_is_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EXECDIST_BROKER", "127.0.0.1:1")  # nothing listens: must not be reached
    assert cli.main(["worker", "--processes", "0"]) == 2
    assert "--processes" in capsys.readouterr().err
    monkeypatch.setattr(cli, "_port_free", lambda host, port: port != 6067)
    assert cli.main(["worker", "--processes", "2", "--web-port", "6066"]) == 2
    assert "web 6067 (process 1) is in use" in capsys.readouterr().err


def test_usage_explains_the_port_layout(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    usage = capsys.readouterr().out
    assert "--processes N" in usage
    assert "PORT+i" in usage and "EXECDIST_GRPC_PORT+i" in usage


def test_the_worker_collects_cycles_rarely_and_never_scans_what_start_up_built() -> None:
    import gc

    from execdist.cli import GC_YOUNG_THRESHOLD, tune_garbage_collector

    before = gc.get_threshold()
    try:
        tune_garbage_collector()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > 0
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1  # cycles made afterwards are still collected
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_worker_hands_the_interpreter_lock_over_less_often_than_python_does() -> None:
    from execdist.cli import SWITCH_INTERVAL_S, favour_the_event_loop

    before = sys.getswitchinterval()
    try:
        favour_the_event_loop()
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S)
        assert SWITCH_INTERVAL_S > 0.005  # Python's default
    finally:
        sys.setswitchinterval(before)
