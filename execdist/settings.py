"""Typed settings, read once from the ``EXECDIST_*`` environment variables.

Every variable has a working local default so that ``make run`` needs no configuration. Invalid
values stop the worker at start-up with a message naming the variable and what it accepts.
The admin token is a secret: it never appears in ``repr`` or logs.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

from execdist.domain.anomalies import AnomalyRules
from execdist.domain.errors import ExecDistError
from execdist.logs import LOG_FORMATS

PREFIX = "EXECDIST_"
DEFAULT_ADMIN_TOKEN = "dev-admin-token"
"""The admin token of a local development worker; published here, so never for a worker that
others can reach (:func:`check_protected_mode`)."""
MAX_PROCESSES = 256
"""More worker processes than this on one host is a typo, not a plan (each one is a whole
worker: a Kafka client, a RocksDB and two ports)."""


class SettingsError(ExecDistError):
    """A configuration variable has a value the service cannot use."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    """Everything a worker is configured with. Build it with :meth:`from_env`."""

    broker: str = "127.0.0.1:9092"
    """Kafka bootstrap servers, ``host:port[,host:port...]``."""
    schema_registry_url: str = "http://127.0.0.1:8081/apis/ccompat/v7"
    """Confluent-compatible schema registry base URL."""
    data_dir: Path = Path("./data")
    """Where this worker keeps its RocksDB tables; one folder per worker."""
    web_port: int = 6066
    """HTTP port of this worker (REST, WebSocket, metrics, blotter)."""
    web_host: str = "127.0.0.1"
    """Interface the HTTP server binds to."""
    advertised_host: str = ""
    """Host other workers use to reach this one (forwarded queries); defaults to web_host,
    or to the machine's hostname when web_host is 0.0.0.0."""
    grpc_port: int = 50051
    """gRPC port of this worker."""
    topic_partitions: int = 4
    """Partitions of orders, executions and every internal co-partitioned topic."""
    replication_factor: int = 1
    """Replication factor of the topics execdist creates."""
    admin_token: str = field(default=DEFAULT_ADMIN_TOKEN, repr=False)
    """Bearer token that may do everything."""
    orphan_timeout: timedelta = timedelta(seconds=30)
    """How long an execution waits for its order before it goes to the DLQ."""
    gap_timeout: timedelta = timedelta(seconds=10)
    """How long a sequence gap may stay open before the held executions are released."""
    order_retention: timedelta = timedelta(days=7)
    """How long an order with nothing held stays queryable after its last activity."""
    tick_interval: timedelta = timedelta(seconds=1)
    """How often each partition is checked for timeouts and expiry."""
    session_timeout: timedelta = timedelta(seconds=10)
    """How long the group waits for a silent worker before its partitions move elsewhere."""
    commit_interval: timedelta = timedelta(0)
    """The least time between two commits of a worker's transaction. 0 (the default) commits
    each batch as soon as it is processed, latency first; more puts the records of that long
    into one transaction (Kafka Streams' ``commit.interval.ms``), which costs a quiet worker
    far less CPU and its records up to that much latency."""
    backfill_slice: timedelta = timedelta(milliseconds=50)
    """Time each partition's tick may spend on subscription backfills."""
    anomaly_price_band_bps: Decimal = Decimal(500)
    """PRICE_DEVIATION: flag a fill more than this many basis points from its symbol's recent
    VWAP (0 turns the rule off)."""
    anomaly_size_factor: Decimal = Decimal(10)
    """SIZE_OUTLIER: flag a fill above this multiple of its account's recent average fill
    (0 turns the rule off)."""
    anomaly_half_life: timedelta = timedelta(minutes=5)
    """The anomaly statistics' memory: a fill counts half after this much exec_time."""
    anomaly_min_samples: Decimal = Decimal(20)
    """Fills (by weight) a symbol's or account's statistics must hold before they judge."""
    query_deadline: timedelta = timedelta(seconds=2)
    """How long a query across the book waits for the other workers' answers; a worker that
    has not answered by then makes the answer partial."""
    relay_client_queue: int = 2000
    """Frames a real-time client may have waiting before it is closed as too slow (1013)."""
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    """The ``source`` of this worker's status events."""
    app_id: str = "execdist"
    """Kafka consumer group and transactional-id prefix; all workers of one cluster share it."""
    log_level: str = "info"
    log_format: str = "json"
    """``json`` (one object a line, for log shippers) or ``console`` (for people)."""
    processes: int = 1
    """How many worker processes ``execdist worker`` runs on this host. :meth:`from_env`
    defaults it to :func:`default_processes`; a Settings built by hand describes one worker."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the ``EXECDIST_*`` variables (``os.environ`` by default)."""
        env = os.environ if env is None else env
        reader = _Reader(env)
        defaults = cls()
        topic_partitions = reader.integer("TOPIC_PARTITIONS", defaults.topic_partitions, 1, 1024)
        settings = cls(
            broker=reader.text("BROKER", defaults.broker),
            schema_registry_url=reader.url("SCHEMA_REGISTRY_URL", defaults.schema_registry_url),
            data_dir=Path(reader.text("DATA_DIR", str(defaults.data_dir))),
            web_port=reader.port("WEB_PORT", defaults.web_port),
            web_host=reader.text("WEB_HOST", defaults.web_host),
            advertised_host=reader.text("CANONICAL_HOST", ""),
            grpc_port=reader.port("GRPC_PORT", defaults.grpc_port),
            topic_partitions=topic_partitions,
            replication_factor=reader.integer(
                "REPLICATION_FACTOR", defaults.replication_factor, 1, 16
            ),
            admin_token=reader.token("ADMIN_TOKEN", defaults.admin_token),
            orphan_timeout=reader.seconds("ORPHAN_TIMEOUT_S", defaults.orphan_timeout),
            gap_timeout=reader.seconds("GAP_TIMEOUT_S", defaults.gap_timeout),
            order_retention=reader.seconds("ORDER_RETENTION_S", defaults.order_retention),
            tick_interval=reader.seconds("TICK_INTERVAL_S", defaults.tick_interval),
            session_timeout=reader.seconds("SESSION_TIMEOUT_S", defaults.session_timeout),
            commit_interval=timedelta(
                milliseconds=float(reader.number("COMMIT_INTERVAL_MS", Decimal(0), 0, 1000))
            ),
            backfill_slice=reader.seconds("BACKFILL_SLICE_S", defaults.backfill_slice),
            anomaly_price_band_bps=reader.number(
                "ANOMALY_PRICE_BAND_BPS", defaults.anomaly_price_band_bps, 0, 1_000_000
            ),
            anomaly_size_factor=reader.number(
                "ANOMALY_SIZE_FACTOR", defaults.anomaly_size_factor, 0, 1_000_000
            ),
            anomaly_half_life=reader.seconds("ANOMALY_HALF_LIFE_S", defaults.anomaly_half_life),
            anomaly_min_samples=reader.number(
                "ANOMALY_MIN_SAMPLES", defaults.anomaly_min_samples, 0, 1_000_000
            ),
            query_deadline=reader.seconds("QUERY_DEADLINE_S", defaults.query_deadline),
            relay_client_queue=reader.integer(
                "RELAY_CLIENT_QUEUE", defaults.relay_client_queue, 10, 1_000_000
            ),
            worker_id=reader.text("WORKER_ID", defaults.worker_id),
            app_id=reader.text("APP_ID", defaults.app_id),
            log_level=reader.choice(
                "LOG_LEVEL", defaults.log_level, ("debug", "info", "warning", "error")
            ),
            log_format=reader.choice("LOG_FORMAT", defaults.log_format, LOG_FORMATS),
            processes=reader.integer(
                "PROCESSES", default_processes(topic_partitions), 1, MAX_PROCESSES
            ),
        )
        for host_port in settings.broker.split(","):
            if ":" not in host_port or not host_port.rsplit(":", 1)[1].isdigit():
                raise SettingsError(
                    PREFIX + "BROKER",
                    f"expected host:port[,host:port...], got {settings.broker!r}",
                )
        return settings

    @property
    def anomaly_rules(self) -> AnomalyRules:
        return AnomalyRules(
            price_band_bps=self.anomaly_price_band_bps,
            size_factor=self.anomaly_size_factor,
            half_life_s=Decimal(self.anomaly_half_life // timedelta(microseconds=1)).scaleb(-6),
            min_samples=self.anomaly_min_samples,
        )

    @property
    def broker_url(self) -> str:
        """The broker list in the URL form Faust expects."""
        return ";".join(f"kafka://{hp.strip()}" for hp in self.broker.split(","))

    @property
    def canonical_url(self) -> str:
        """The URL other workers forward requests to."""
        host = self.advertised_host or self.web_host
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        return f"http://{host}:{self.web_port}"

    @property
    def bootstrap_servers(self) -> list[str]:
        return [hp.strip() for hp in self.broker.split(",")]


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the worker reachable from this machine only.

    ``localhost`` and loopback addresses only; any other name, and the wildcard addresses
    ``0.0.0.0`` and ``::``, may be reachable from elsewhere.
    """
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_protected_mode(settings: Settings, bind_hosts: tuple[str, ...] = ()) -> None:
    """Refuse the published default admin token on a worker bound to anything but loopback.

    ``bind_hosts``: addresses given on the command line besides ``settings.web_host``
    (Faust's ``--web-bind``). Raises :class:`SettingsError` saying how to set a token.
    """
    if settings.admin_token != DEFAULT_ADMIN_TOKEN:
        return
    exposed = [host for host in (settings.web_host, *bind_hosts) if not is_loopback(host)]
    if not exposed:
        return
    raise SettingsError(
        PREFIX + "ADMIN_TOKEN",
        f"this worker binds to {exposed[0]}, which is not a loopback address, and the admin "
        "token is the default one that anyone can read in the source. Set a secret of your "
        "own (at least 8 characters), e.g. "
        "export EXECDIST_ADMIN_TOKEN=\"$(python3 -c 'import secrets; "
        "print(secrets.token_urlsafe(32))')\", or bind to 127.0.0.1 with EXECDIST_WEB_HOST "
        "(--web-host) for local use.",
    )


def available_cores() -> int:
    """The cores this process may run on: the CPU affinity mask where the platform has one
    (``taskset``, a container's cpuset), else every core of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def default_processes(topic_partitions: int) -> int:
    """One worker process per core, but no more than there are partitions.

    Only as many workers as there are partitions can be busy: the rest of the group stands
    idle, and on one host an idle process buys no redundancy, just memory (Python, Kafka
    clients, a RocksDB block cache) and two ports. Ask for more with ``--processes`` if you
    mean it.
    """
    return max(1, min(available_cores(), topic_partitions, MAX_PROCESSES))


def parse_processes(raw: str, source: str) -> int:
    """A process count given on the command line, checked like the variables are."""
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_PROCESSES:
        raise SettingsError(
            source, f"expected a whole number from 1 to {MAX_PROCESSES}, got {raw!r}"
        )
    return value


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def _raw(self, name: str) -> str | None:
        value = self._env.get(PREFIX + name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str) -> str:
        return self._raw(name) or default

    def url(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not value.startswith(("http://", "https://")):
            raise SettingsError(PREFIX + name, f"expected an http(s):// URL, got {value!r}")
        return value.rstrip("/")

    def token(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if len(value) < 8:
            raise SettingsError(PREFIX + name, "must be at least 8 characters long")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(
                PREFIX + name, f"expected a whole number from {low} to {high}, got {raw!r}"
            ) from None
        if not low <= value <= high:
            raise SettingsError(
                PREFIX + name, f"expected a whole number from {low} to {high}, got {value}"
            )
        return value

    def number(self, name: str, default: Decimal, low: int, high: int) -> Decimal:
        """A decimal number from ``low`` to ``high``, read exactly as written."""
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = Decimal(raw)
        except InvalidOperation:
            value = Decimal("NaN")
        if value.is_nan() or not low <= value <= high:
            raise SettingsError(
                PREFIX + name, f"expected a number from {low} to {high}, got {raw!r}"
            )
        return value

    def port(self, name: str, default: int) -> int:
        return self.integer(name, default, 1, 65535)

    def seconds(self, name: str, default: timedelta) -> timedelta:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(
                PREFIX + name, f"expected a number of seconds greater than 0, got {raw!r}"
            ) from None
        if not value > 0 or value != value or value == float("inf"):
            raise SettingsError(
                PREFIX + name, f"expected a number of seconds greater than 0, got {raw!r}"
            )
        return timedelta(seconds=value)

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name, default).lower()
        if value not in allowed:
            raise SettingsError(
                PREFIX + name, f"expected one of {', '.join(allowed)}, got {value!r}"
            )
        return value
