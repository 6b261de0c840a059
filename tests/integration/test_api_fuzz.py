"""The HTTP API against its own description (``execdist/web/openapi.json``), fuzzed.

Schemathesis generates requests from the description for every operation except the streams,
``/metrics`` and the blotter page: valid ones and, where an operation takes any input, invalid
ones, sent to one real worker with the admin token. Every answer must be no 5xx, a documented
status code with its documented content type and body schema, and an invalid request must be
refused. The operations on one subscription are fuzzed twice: with random ids (mostly unknown)
and with the id of a subscription that exists. Afterwards the worker must still be alive.

Schemathesis is driven through its programmatic API (``APIOperation.as_strategy`` and
``Case.call_and_validate``) inside plain sync tests with Hypothesis ``@given``, not through its
pytest plugin: bounded (``MAX_EXAMPLES`` per operation and mode), deterministic (derandomized,
fixed seed, no example database) and without a deadline, since every example is a real HTTP
request.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from aiokafka.admin import AIOKafkaAdminClient
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from execdist import topics
from execdist.web.docs import OPENAPI_DOCUMENT
from tests.integration.conftest import ADMIN_TOKEN, BROKER, Worker, delete_topics

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MAX_EXAMPLES = 25
SEED = 20240501
# Every created subscription gets a topic; the fuzzer may create dozens, so keep them small
# (the description allows up to 64 partitions, which is tested by the rejection of 65).
FUZZ_MAX_PARTITIONS = 2

# Streams never end (a generated request would hang until its timeout), /metrics is Prometheus
# text outside the JSON API, and the blotter page is for people.
SKIPPED = {
    ("GET", "/api/v1/subscriptions/{id}/stream"),
    ("GET", "/api/v1/subscriptions/{id}/events"),
    ("GET", "/metrics"),
    ("GET", "/"),
}


# What counts as refusing an invalid request: schemathesis's list (less 428 and 429, which this
# API never sends) plus 413, the documented answer to a body over 64 KiB.
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422"]


def _description() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(OPENAPI_DOCUMENT.read_text(encoding="utf-8"))
    fuzzed = copy.deepcopy(document)
    create = fuzzed["components"]["schemas"]["SubscriptionCreate"]["properties"]
    create["partitions"]["maximum"] = FUZZ_MAX_PARTITIONS
    return fuzzed


SCHEMA = schemathesis.openapi.from_dict(
    _description(),
    config=schemathesis.Config.from_dict(
        {
            # The admin token for bearerAuth: schemathesis sends it with the valid requests
            # and leaves it out, or breaks it, in the invalid ones that test authentication.
            "auth": {"openapi": {"bearerAuth": {"bearer": ADMIN_TOKEN}}},
            # A body over 64 KiB is refused with 413 (documented), which is a rejection too.
            "checks": {"negative_data_rejection": {"expected-statuses": REJECTED}},
        }
    ),
)
OPERATIONS = {
    f"{op.method.upper()} {op.path}": op
    for op in (result.ok() for result in SCHEMA.get_all_operations() if isinstance(result, Ok))
    if (op.method.upper(), op.path) not in SKIPPED
}
# Invalid examples need something to break: parameters, a body, or the token (a header).
NEGATIVE = sorted(
    label
    for label, op in OPERATIONS.items()
    if op.body or op.path_parameters or op.query or op.headers
)
# The operations on one subscription, fuzzed again with the id of one that exists.
ON_EXISTING = sorted(label for label in OPERATIONS if "{id}" in label)
CHECKS: list[Callable[..., Any]] = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]
NEGATIVE_CHECKS = [*CHECKS, schemathesis.checks.negative_data_rejection]

FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


async def _subscription_topics() -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKER)
    await admin.start()
    try:
        return {t for t in await admin.list_topics() if t.startswith(topics.SUBSCRIBER_PREFIX)}
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    # A fresh subscription store and worker registry; afterwards both go again, with the
    # fuzzer's subscription topics, so that nothing of this module leaks into the others.
    internal = [topics.SUBSCRIPTIONS, topics.WORKERS, topics.SUBSCRIPTION_AUDIT]
    asyncio.run(delete_topics(internal))
    before = asyncio.run(_subscription_topics())
    tmp: Path = tmp_path_factory.mktemp("api-fuzz")
    worker = Worker(
        app_id=f"execdist-fuzz-{uuid.uuid4().hex[:8]}",
        data_dir=tmp / "data",
        log_path=tmp / "worker.log",
    ).start()
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()
        created = asyncio.run(_subscription_topics()) - before
        asyncio.run(delete_topics([*internal, *sorted(created)]))


def assert_alive(worker: Worker) -> None:
    assert worker.process is not None
    assert worker.process.poll() is None, f"the worker died:\n{worker.log_tail()}"


def fuzz(
    worker: Worker,
    label: str,
    mode: GenerationMode,
    path_parameters: dict[str, str] | None = None,
) -> None:
    operation = OPERATIONS[label]
    checks = CHECKS if mode is GenerationMode.POSITIVE else NEGATIVE_CHECKS

    @FUZZ_SETTINGS
    @seed(SEED)
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    def run(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(base_url=worker.url, checks=checks, timeout=15)

    try:
        run()
    finally:
        assert_alive(worker)


@pytest.fixture
def subscription_id(worker: Worker) -> str:
    """A subscription of the test's own, so that the fuzzer also reaches one that exists."""
    response = httpx.post(
        f"{worker.url}/api/v1/subscriptions",
        json={"name": f"fuzz-target-{uuid.uuid4().hex[:8]}"},
        headers=ADMIN,
        timeout=15,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_valid_requests(worker: Worker, label: str) -> None:
    fuzz(worker, label, GenerationMode.POSITIVE)


@pytest.mark.parametrize("label", NEGATIVE)
def test_invalid_requests(worker: Worker, label: str) -> None:
    fuzz(worker, label, GenerationMode.NEGATIVE)


@pytest.mark.parametrize("label", ON_EXISTING)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_requests_about_an_existing_subscription(
    worker: Worker, subscription_id: str, label: str, mode: GenerationMode
) -> None:
    fuzz(worker, label, mode, path_parameters={"id": subscription_id})


def assert_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/v1/subscriptions"), ("PATCH", "/api/v1/subscriptions/{id}")],
)
def test_an_oversized_body_is_refused(
    worker: Worker, subscription_id: str, method: str, path: str, chunked: bool
) -> None:
    body = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
    response = httpx.request(
        method,
        worker.url + path.format(id=subscription_id),
        content=iter([body]) if chunked else body,
        headers={**ADMIN, "Content-Type": "application/json"},
        timeout=15,
    )
    assert_error(response, 413)
    assert_alive(worker)
    kept = httpx.get(f"{worker.url}/api/v1/subscriptions/{subscription_id}", headers=ADMIN)
    assert kept.json()["name"].startswith("fuzz-target-")


@pytest.mark.parametrize(
    "query",
    [
        "limit=%C2%B2",  # "²": str.isdigit() says yes, int() says no
        "limit=%EF%BC%91",  # fullwidth "1": int() takes it, the API does not
        "limit=" + "9" * 5000,  # more digits than int() converts
        "limit=0",
        "limit=501",
        "limit=-1",
        "status=active",
        "cursor=%FF%FE",
        "cursor=!!",
    ],
)
def test_bad_list_parameters_are_400(worker: Worker, query: str) -> None:
    response = httpx.get(f"{worker.url}/api/v1/subscriptions?{query}", headers=ADMIN, timeout=15)
    assert_error(response, 400)
    assert response.json()["error"]["field"] == query.split("=")[0]


@pytest.mark.parametrize(
    "path", ["/api/v1/status", "/api/v1/subscriptions", "/api/v1/orders/O-1", "/api/v1/positions/A"]
)
def test_a_token_that_is_not_utf8_is_401(worker: Worker, path: str) -> None:
    response = httpx.get(worker.url + path, headers={b"Authorization": b"Bearer \xff\xfe"})
    assert_error(response, 401)


@pytest.mark.parametrize(
    "path", ["/api/v1/no-such-thing", "/nope", "/api/v1/subscriptions/x/nope", "/api/v1/orders/.."]
)
def test_an_unknown_path_is_404(worker: Worker, path: str) -> None:
    assert_error(httpx.get(worker.url + path, headers=ADMIN, timeout=15), 404)


def test_an_unknown_method_is_405(worker: Worker) -> None:
    response = httpx.put(f"{worker.url}/api/v1/subscriptions", headers=ADMIN, json={})
    assert_error(response, 405)
    assert "POST" in response.headers["Allow"]


def test_the_worker_survived(worker: Worker) -> None:
    """Last in the module: after all of the above the worker is alive and answers."""
    assert_alive(worker)
    response = httpx.get(f"{worker.url}/health/live", timeout=5)
    assert response.status_code == 200
    assert response.json()["status"] == "live"
