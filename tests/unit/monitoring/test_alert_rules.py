"""The Prometheus alert rules: valid, passing their promtool unit tests, every alert tested,
and reading only metrics the worker exports."""

from __future__ import annotations

import yaml

from tests.unit.monitoring.fixtures import (
    ALERTS,
    PROMETHEUS_DIR,
    PROMETHEUS_OWN,
    exported_names,
    metric_names,
    promtool,
)


def _rules() -> list[dict[str, str]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", ALERTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_pass_their_tests_on_synthetic_series() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_example_prometheus_configuration_is_valid() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing() -> None:
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in _rules()} == fired


def test_the_issue_asks_for_these_alerts() -> None:
    assert {rule["alert"] for rule in _rules()} >= {
        "ExecdistInputLagGrowing",
        "ExecdistLatencyP99High",
        "ExecdistDeadLetters",
        "ExecdistWorkerDown",
        "ExecdistSubscriberNotAcknowledging",
    }


def test_the_rules_read_only_metrics_the_worker_exports() -> None:
    known = exported_names() | PROMETHEUS_OWN
    for rule in _rules():
        used = metric_names(rule["expr"])
        assert used, f"{rule['alert']}: no metric found in {rule['expr']!r}"
        assert used <= known, f"{rule['alert']} reads {sorted(used - known)}, not exported"
