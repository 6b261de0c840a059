"""The Grafana dashboard: well formed, its queries valid PromQL, covering what SREs watch, and
reading only metrics the worker exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.unit.monitoring.fixtures import (
    DASHBOARD,
    PROMETHEUS_OWN,
    exported_names,
    metric_names,
    promtool,
)


def _dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def _panels() -> list[dict[str, Any]]:
    return [panel for panel in _dashboard()["panels"] if panel["type"] != "row"]


def _exprs() -> list[str]:
    return [target["expr"] for panel in _panels() for target in panel["targets"]]


def _variable_queries() -> list[str]:
    return [
        variable["definition"]
        for variable in _dashboard()["templating"]["list"]
        if variable["type"] == "query"
    ]


def test_the_dashboard_reads_only_metrics_the_worker_exports() -> None:
    known = exported_names() | PROMETHEUS_OWN
    for expr in _exprs():
        used = metric_names(expr)
        assert used, f"no metric found in {expr!r}"
        assert used <= known, f"{expr!r} reads {sorted(used - known)}, not exported"
    for query in _variable_queries():
        match = re.fullmatch(r"label_values\((\w+),\s*\w+\)", query)
        assert match is not None, query
        assert match.group(1) in known


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule, with Grafana's variables filled in."""
    rules = [
        {
            "record": f"dashboard:query_{index}",
            "expr": expr.replace("$__rate_interval", "1m").replace("$instance", ".*"),
        }
        for index, expr in enumerate(_exprs())
    ]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_it_shows_what_the_issue_asks_for() -> None:
    used = set().union(*(metric_names(expr) for expr in _exprs()))
    assert {
        "execdist_input_records_total",  # throughput
        "execdist_confirmations_total",
        "execdist_distribution_latency_seconds_bucket",  # end-to-end latency percentiles
        "execdist_input_lag_records",  # lag per partition
        "execdist_relay_lag_records",  # lag per subscriber
        "execdist_dlq_records_total",  # DLQ by reason
        "execdist_status_events_total",  # sequence gaps
        "execdist_rebalances_total",  # rebalances
    } <= used
    exprs = "\n".join(_exprs())
    assert "by (reason)" in exprs
    assert "by (topic, partition)" in exprs
    assert 'type="SEQUENCE_GAP"' in exprs


def test_panels_are_laid_out_and_query_the_chosen_data_source() -> None:
    dashboard = _dashboard()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]
        assert panel["title"] and panel["description"] and panel["targets"]
    names = [variable["name"] for variable in dashboard["templating"]["list"]]
    assert names == ["datasource", "instance"]


def test_the_name_finder_ignores_functions_labels_and_variables() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (le, stage) (rate(a_bucket{x="y", i=~"$instance"}'
        "[$__rate_interval]))) > 0.5 and on (job) b unless c offset 5m"
    ) == {"a_bucket", "b", "c"}
    assert metric_names('up{job="execdist"} == 0') == {"up"}
    assert metric_names("topk(10, max by (subscription) (m))") == {"m"}
