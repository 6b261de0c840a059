"""Settings are read once, validated, and say which variable is wrong and what it accepts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from execdist.domain.anomalies import AnomalyRules
from execdist.settings import Settings, SettingsError


def test_defaults_work_without_any_variable() -> None:
    settings = Settings.from_env({})
    assert settings.broker == "127.0.0.1:9092"
    assert settings.broker_url == "kafka://127.0.0.1:9092"
    assert settings.topic_partitions == 4
    assert settings.gap_timeout == timedelta(seconds=10)
    assert settings.commit_interval == timedelta(0)  # latency first
    assert settings.anomaly_rules == AnomalyRules()  # the documented defaults


def test_variables_are_read_and_converted() -> None:
    settings = Settings.from_env(
        {
            "EXECDIST_BROKER": "k1:9092,k2:9093",
            "EXECDIST_DATA_DIR": "/var/lib/execdist",
            "EXECDIST_WEB_PORT": "7000",
            "EXECDIST_TOPIC_PARTITIONS": "12",
            "EXECDIST_ORPHAN_TIMEOUT_S": "2.5",
            "EXECDIST_ADMIN_TOKEN": "a-long-secret",
            "EXECDIST_CANONICAL_HOST": "worker-3",
            "EXECDIST_ANOMALY_PRICE_BAND_BPS": "250.5",
            "EXECDIST_ANOMALY_SIZE_FACTOR": "0",
            "EXECDIST_ANOMALY_HALF_LIFE_S": "60",
            "EXECDIST_ANOMALY_MIN_SAMPLES": "5",
            "EXECDIST_COMMIT_INTERVAL_MS": "2.5",
        }
    )
    assert settings.bootstrap_servers == ["k1:9092", "k2:9093"]
    assert settings.broker_url == "kafka://k1:9092;kafka://k2:9093"
    assert settings.data_dir == Path("/var/lib/execdist")
    assert settings.topic_partitions == 12
    assert settings.orphan_timeout == timedelta(seconds=2.5)
    assert settings.commit_interval == timedelta(microseconds=2500)
    assert settings.canonical_url == "http://worker-3:7000"
    assert settings.anomaly_rules == AnomalyRules(
        price_band_bps=250.5, size_factor=0, half_life_s=60, min_samples=5
    )


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("EXECDIST_TOPIC_PARTITIONS", "zero", "whole number from 1 to 1024"),
        ("EXECDIST_TOPIC_PARTITIONS", "0", "whole number from 1 to 1024"),
        ("EXECDIST_WEB_PORT", "70000", "from 1 to 65535"),
        ("EXECDIST_GAP_TIMEOUT_S", "-1", "greater than 0"),
        ("EXECDIST_GAP_TIMEOUT_S", "nan", "greater than 0"),
        ("EXECDIST_SCHEMA_REGISTRY_URL", "localhost:8081", "http(s)://"),
        ("EXECDIST_BROKER", "localhost", "host:port"),
        ("EXECDIST_ADMIN_TOKEN", "short", "at least 8"),
        ("EXECDIST_LOG_LEVEL", "loud", "debug, info, warning, error"),
        ("EXECDIST_ANOMALY_PRICE_BAND_BPS", "-5", "number from 0 to 1000000"),
        ("EXECDIST_ANOMALY_SIZE_FACTOR", "big", "number from 0 to 1000000"),
        ("EXECDIST_ANOMALY_MIN_SAMPLES", "nan", "number from 0 to 1000000"),
        ("EXECDIST_ANOMALY_HALF_LIFE_S", "0", "greater than 0"),
        ("EXECDIST_COMMIT_INTERVAL_MS", "-1", "number from 0 to 1000"),
        ("EXECDIST_COMMIT_INTERVAL_MS", "5000", "number from 0 to 1000"),
    ],
)
def test_bad_values_name_the_variable_and_what_is_allowed(
    variable: str, value: str, says: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({variable: value})
    assert refused.value.variable == variable
    assert variable in str(refused.value)
    assert says in str(refused.value)


def test_the_admin_token_never_shows_in_repr() -> None:
    settings = Settings.from_env({"EXECDIST_ADMIN_TOKEN": "super-secret-token"})
    assert "super-secret-token" not in repr(settings)
