"""Reliability scenarios reuse the integration fixtures (real broker, real worker processes)."""

from tests.integration.conftest import broker_available, cluster, producer  # noqa: F401
