"""Tokens through two real workers: the whole matrix of endpoints, transports and scopes;
issuing and revoking, in force on the other worker within a second; only hashes stored;
protected mode.

The matrix sends every endpoint of the API (checked against ``openapi.json``) and the gRPC
relay each principal: none, a token that is not valid, ``EXECDIST_ADMIN_TOKEN``, an issued
admin token, an issued analyst token, the subscription's own token and another
subscription's token. A principal the endpoint admits gets its 2xx (or its stream's first
confirmation); a valid token of another scope gets 403 (PERMISSION_DENIED); no token or a bad
one gets 401 (UNAUTHENTICATED). Tokens are issued on the first worker and used on the second.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import aiohttp
import grpc
import httpx
import orjson
import pytest

from execdist import topics
from execdist.domain.subscriptions import hash_token
from execdist.grpc import execdist_pb2 as pb
from execdist.grpc import execdist_pb2_grpc as pb_grpc
from execdist.web.docs import OPENAPI_DOCUMENT
from tests.integration.conftest import ADMIN_TOKEN, EXECDIST, Worker, read_committed
from tests.integration.helpers import flows, produce, worker_pair

pytestmark = pytest.mark.integration

IN_FORCE_WITHIN_S = 1.0

# who may do what; "other" (another subscription's token) is admitted nowhere here
ADMINS = frozenset({"admin", "issued_admin"})
READERS = ADMINS | {"analyst"}
SUBSCRIPTION_READERS = READERS | {"own"}
STREAMERS = ADMINS | {"own"}
VALID = ("admin", "issued_admin", "analyst", "own", "other")
PRINCIPALS = ("none", "bogus", *VALID)


@dataclass
class World:
    """What the matrix runs against, set up once for the module."""

    first: Worker
    second: Worker
    tokens: dict[str, str | None]
    issued: dict[str, str]
    """Token ids of the issued tokens, by principal name."""
    subscription_id: str
    order_id: str
    account: str
    spare_tokens: list[str] = field(default_factory=list)


def admin_http(worker: Worker) -> httpx.Client:
    return httpx.Client(
        base_url=worker.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
    )


def create_subscription(worker: Worker) -> dict[str, object]:
    with admin_http(worker) as http:
        response = http.post("/api/v1/subscriptions", json={"name": f"tok-{uuid.uuid4().hex[:8]}"})
    assert response.status_code == 201, response.text
    return dict(response.json())


def issue(worker: Worker, scope: str, token: str = ADMIN_TOKEN) -> dict[str, object]:
    with httpx.Client(base_url=worker.url, timeout=10) as http:
        response = http.post(
            "/api/v1/tokens",
            json={"scope": scope, "name": f"{scope} {uuid.uuid4().hex[:6]}"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 201, response.text
    return dict(response.json())


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``condition`` held; fails after ``timeout``."""
    start = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what} did not happen within {timeout}s")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Worker]]:
    yield from worker_pair(
        tmp_path_factory,
        "tokens",
        extra_topics=(topics.SUBSCRIPTIONS, topics.WORKERS, topics.SUBSCRIPTION_AUDIT),
    )


@pytest.fixture(scope="module")
def world(workers: list[Worker]) -> World:
    first, second = workers
    own = create_subscription(first)
    other = create_subscription(first)
    issued_admin = issue(first, "admin")
    analyst = issue(first, "analyst")
    records = flows("TOKM", 4, 77)
    asyncio.run(produce(records))
    order = orjson.loads(next(r.value for r in records if r.topic == topics.ORDERS))
    world = World(
        first=first,
        second=second,
        tokens={
            "none": None,
            "bogus": "edt_this-is-not-a-token-of-ours",
            "admin": ADMIN_TOKEN,
            "issued_admin": str(issued_admin["token"]),
            "analyst": str(analyst["token"]),
            "own": str(own["token"]),
            "other": str(other["token"]),
        },
        issued={"issued_admin": str(issued_admin["id"]), "analyst": str(analyst["id"])},
        subscription_id=str(own["id"]),
        order_id=str(order["order_id"]),
        account=str(order["account"]),
    )
    # the order, its account's positions and the subscription's first records exist
    asyncio.run(read_committed([str(own["topic"])], lambda got: len(got) >= 1, 60))
    with admin_http(second) as http:
        for path in (f"/api/v1/orders/{world.order_id}", f"/api/v1/positions/{world.account}"):
            wait_until(lambda path=path: http.get(path).status_code == 200, 60, f"GET {path}")
    return world


def headers(world: World, principal: str) -> dict[str, str]:
    token = world.tokens[principal]
    return {} if token is None else {"Authorization": f"Bearer {token}"}


# --- REST: one row per operation ----------------------------------------------------------


@dataclass(frozen=True)
class Row:
    method: str
    template: str
    """The operation's path in openapi.json."""
    allowed: frozenset[str]
    status: int
    """What an admitted principal gets."""
    path: Callable[[World, bool], str]
    """The path to send; the flag says the principal is admitted (a DELETE then gets a
    resource of its own to delete)."""
    body: Callable[[], object] | None = None


def fresh_subscription(world: World, admitted: bool) -> str:
    if not admitted:
        return f"/api/v1/subscriptions/{world.subscription_id}"
    return f"/api/v1/subscriptions/{create_subscription(world.first)['id']}"


def fresh_token(world: World, admitted: bool) -> str:
    if not admitted:
        return f"/api/v1/tokens/{world.issued['analyst']}"
    return f"/api/v1/tokens/{issue(world.first, 'analyst')['id']}"


def new_name() -> object:
    return {"name": f"tok-{uuid.uuid4().hex[:8]}"}


SUBSCRIPTION = "/api/v1/subscriptions/{id}"
ROWS = [
    Row(
        "POST", "/api/v1/subscriptions", ADMINS, 201, lambda w, a: "/api/v1/subscriptions", new_name
    ),
    Row("GET", "/api/v1/subscriptions", READERS, 200, lambda w, a: "/api/v1/subscriptions"),
    Row(
        "POST",
        "/api/v1/subscriptions/dry-run",
        ADMINS,
        200,
        lambda w, a: "/api/v1/subscriptions/dry-run",
        lambda: {"since": "2024-01-01T00:00:00Z", "max_records": 10},
    ),
    Row(
        "GET",
        SUBSCRIPTION,
        SUBSCRIPTION_READERS,
        200,
        lambda w, a: f"/api/v1/subscriptions/{w.subscription_id}",
    ),
    Row(
        "PATCH",
        SUBSCRIPTION,
        ADMINS,
        200,
        lambda w, a: f"/api/v1/subscriptions/{w.subscription_id}",
        lambda: {"status": "ACTIVE"},
    ),
    Row("DELETE", SUBSCRIPTION, ADMINS, 204, fresh_subscription),
    Row(
        "GET",
        SUBSCRIPTION + "/status",
        SUBSCRIPTION_READERS,
        200,
        lambda w, a: f"/api/v1/subscriptions/{w.subscription_id}/status",
    ),
    Row(
        "GET",
        SUBSCRIPTION + "/audit",
        SUBSCRIPTION_READERS,
        200,
        lambda w, a: f"/api/v1/subscriptions/{w.subscription_id}/audit",
    ),
    Row(
        "GET",
        SUBSCRIPTION + "/reconcile",
        SUBSCRIPTION_READERS,
        200,
        lambda w, a: f"/api/v1/subscriptions/{w.subscription_id}/reconcile?from_seq=1&to_seq=10",
    ),
    Row("GET", "/api/v1/orders", READERS, 200, lambda w, a: "/api/v1/orders?status=all"),
    Row("GET", "/api/v1/analytics", READERS, 200, lambda w, a: "/api/v1/analytics?by=venue"),
    Row(
        "GET",
        "/api/v1/orders/{order_id}",
        READERS,
        200,
        lambda w, a: f"/api/v1/orders/{w.order_id}",
    ),
    Row(
        "GET",
        "/api/v1/orders/{order_id}/confirmations",
        READERS,
        200,
        lambda w, a: f"/api/v1/orders/{w.order_id}/confirmations",
    ),
    Row("GET", "/api/v1/positions", READERS, 200, lambda w, a: "/api/v1/positions?limit=5"),
    Row(
        "GET",
        "/api/v1/positions/{account}",
        READERS,
        200,
        lambda w, a: f"/api/v1/positions/{w.account}",
    ),
    Row("GET", "/api/v1/status", READERS, 200, lambda w, a: "/api/v1/status"),
    Row(
        "POST",
        "/api/v1/tokens",
        ADMINS,
        201,
        lambda w, a: "/api/v1/tokens",
        lambda: {"scope": "analyst", "name": "matrix"},
    ),
    Row("GET", "/api/v1/tokens", ADMINS, 200, lambda w, a: "/api/v1/tokens"),
    Row("DELETE", "/api/v1/tokens/{id}", ADMINS, 204, fresh_token),
]
STREAMS = {
    ("GET", SUBSCRIPTION + "/stream"): STREAMERS,
    ("GET", SUBSCRIPTION + "/events"): STREAMERS,
}
PUBLIC = {
    ("GET", "/"),
    ("GET", "/docs"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/metrics"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
}


def expected(allowed: frozenset[str], principal: str, admitted_status: int) -> int:
    if principal in allowed:
        return admitted_status
    return 403 if principal in VALID else 401


def test_the_matrix_covers_every_operation_of_the_api() -> None:
    document = json.loads(OPENAPI_DOCUMENT.read_text(encoding="utf-8"))
    described = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    covered = {(row.method, row.template) for row in ROWS} | set(STREAMS) | PUBLIC
    assert covered == described


@pytest.mark.parametrize("principal", PRINCIPALS)
@pytest.mark.parametrize("row", ROWS, ids=lambda row: f"{row.method} {row.template}")
def test_rest_matrix(world: World, row: Row, principal: str) -> None:
    want = expected(row.allowed, principal, row.status)
    path = row.path(world, want < 300)
    body = None if row.body is None else row.body()
    with httpx.Client(base_url=world.second.url, timeout=10) as http:
        response = http.request(row.method, path, json=body, headers=headers(world, principal))
    assert response.status_code == want, response.text
    # no answer ever holds a token it was not created with, nor any token's hash
    for token in world.tokens.values():
        if token is not None:
            assert token not in response.text
            assert hash_token(token) not in response.text
    if want >= 400:
        error = response.json()["error"]
        assert error["code"] == {401: "unauthorized", 403: "forbidden"}[want]
    elif principal == "analyst":
        assert not keys_of(response.json()) & {"token", "token_hash", "secret"}


def keys_of(value: object) -> set[str]:
    """Every object key anywhere in a JSON value."""
    if isinstance(value, dict):
        return set(value) | {k for item in value.values() for k in keys_of(item)}
    if isinstance(value, list):
        return {k for item in value for k in keys_of(item)}
    return set()


# --- the streams: WebSocket, SSE and gRPC ---------------------------------------------------


@pytest.mark.parametrize("principal", PRINCIPALS)
async def test_websocket_matrix(world: World, principal: str) -> None:
    want = expected(STREAMERS, principal, 101)
    url = (
        f"ws://127.0.0.1:{world.second.web_port}/api/v1/subscriptions/"
        f"{world.subscription_id}/stream?from=earliest"
    )
    async with aiohttp.ClientSession() as session:
        if want != 101:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(url, headers=headers(world, principal))
            assert refused.value.status == want
            return
        # the token as browsers send it, in the query
        async with session.ws_connect(f"{url}&token={world.tokens[principal]}") as ws:
            frame = orjson.loads((await ws.receive(timeout=15)).data)
    assert frame["type"] == "confirmation"


@pytest.mark.parametrize("principal", PRINCIPALS)
async def test_sse_matrix(world: World, principal: str) -> None:
    want = expected(STREAMERS, principal, 200)
    url = f"{world.second.url}/api/v1/subscriptions/{world.subscription_id}/events"
    async with (
        httpx.AsyncClient(timeout=15) as http,
        http.stream(
            "GET", url, params={"from": "earliest"}, headers=headers(world, principal)
        ) as response,
    ):
        assert response.status_code == want
        if want != 200:
            assert (await response.aread()) and response.json()["error"]["code"] in (
                "unauthorized",
                "forbidden",
            )
            return
        assert response.headers["content-type"].startswith("text/event-stream")
        text = ""
        async for chunk in response.aiter_text():
            text += chunk
            if "event: confirmation" in text:
                break
    assert "event: confirmation" in text


@pytest.mark.parametrize("principal", PRINCIPALS)
async def test_grpc_matrix(world: World, principal: str) -> None:
    want = expected(STREAMERS, principal, 0)
    token = world.tokens[principal]
    metadata = () if token is None else (("authorization", f"Bearer {token}"),)
    request = pb.SubscribeRequest(subscription_id=world.subscription_id, **{"from": "earliest"})
    async with grpc.aio.insecure_channel(f"127.0.0.1:{world.second.grpc_port}") as channel:
        call = pb_grpc.DistributionStub(channel).Subscribe(request, metadata=metadata)
        try:
            if want == 0:
                response = await asyncio.wait_for(call.read(), 15)
                assert response.WhichOneof("kind") == "confirmation"
                return
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await asyncio.wait_for(call.read(), 15)
        finally:
            call.cancel()
    assert (
        refused.value.code()
        == {
            401: grpc.StatusCode.UNAUTHENTICATED,
            403: grpc.StatusCode.PERMISSION_DENIED,
        }[want]
    )


# --- issuing and revoking --------------------------------------------------------------------


def status_with(worker: Worker, token: str) -> int:
    with httpx.Client(base_url=worker.url, timeout=5) as http:
        return http.get("/api/v1/status", headers={"Authorization": f"Bearer {token}"}).status_code


def test_an_issued_token_is_in_force_and_revoked_on_every_worker_within_a_second(
    world: World,
) -> None:
    first, second = world.first, world.second
    issued = issue(first, "analyst")
    token, token_id = str(issued["token"]), str(issued["id"])
    assert token.startswith("edt_")
    assert set(issued) == {"id", "name", "scope", "created_at", "token"}
    took = wait_until(lambda: status_with(second, token) == 200, 5, "the token working there")
    assert took < IN_FORCE_WITHIN_S

    with admin_http(second) as http:
        listed = http.get("/api/v1/tokens", params={"limit": "500"}).json()
        assert listed["next_cursor"] is None
        mine = [item for item in listed["items"] if item["id"] == token_id]
        assert mine == [{k: issued[k] for k in ("id", "name", "scope", "created_at")}]
        assert token not in json.dumps(listed)
        assert http.delete(f"/api/v1/tokens/{token_id}").status_code == 204
        assert http.delete(f"/api/v1/tokens/{token_id}").status_code == 404
        assert token_id not in {item["id"] for item in http.get("/api/v1/tokens").json()["items"]}
    took = wait_until(lambda: status_with(first, token) == 401, 5, "the token refused there")
    assert took < IN_FORCE_WITHIN_S


def test_only_the_hash_of_a_token_is_stored_beside_the_subscriptions(world: World) -> None:
    issued = issue(world.first, "admin")
    token, key = str(issued["token"]), f"token:{issued['id']}".encode()
    records = asyncio.run(
        read_committed([topics.SUBSCRIPTIONS], lambda got: any(r.key == key for r in got), 30)
    )
    stored = [orjson.loads(r.value) for r in records if r.key == key]
    assert stored and stored[-1]["token_hash"] == hash_token(token)
    assert stored[-1]["scope"] == "admin"
    for record in records:  # no token of any kind is on the topic
        for secret in (token, *(t for t in world.tokens.values() if t)):
            assert secret.encode() not in (record.value or b"")


def test_tokens_pages_and_refuses_what_it_cannot_issue(world: World) -> None:
    for _ in range(3):
        issue(world.first, "analyst")
    with admin_http(world.second) as http:
        seen: list[str] = []
        cursor = ""
        while True:
            page = http.get("/api/v1/tokens", params={"limit": "2", "cursor": cursor}).json()
            assert len(page["items"]) <= 2
            seen += [item["id"] for item in page["items"]]
            if page["next_cursor"] is None:
                break
            cursor = page["next_cursor"]
        assert seen == sorted(set(seen)) and len(seen) >= 4
        for body, field_name in (
            ({"scope": "subscription", "name": "x"}, "scope"),
            ({"scope": "analyst"}, "name"),
            ({"scope": "analyst", "name": "x", "token": "mine"}, "token"),
        ):
            response = http.post("/api/v1/tokens", json=body)
            assert response.status_code == 400
            assert response.json()["error"]["field"] == field_name
    # an issued admin token may issue tokens too
    assert issue(world.second, "analyst", token=str(world.tokens["issued_admin"]))["scope"] == (
        "analyst"
    )


# --- protected mode ----------------------------------------------------------------------------


def test_a_worker_off_loopback_refuses_the_default_admin_token(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "EXECDIST_ADMIN_TOKEN"}
    env["EXECDIST_DATA_DIR"] = str(tmp_path)
    result = subprocess.run(
        [EXECDIST, "worker", "--processes", "1", "--web-host", "0.0.0.0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "EXECDIST_ADMIN_TOKEN" in result.stderr
    assert "export EXECDIST_ADMIN_TOKEN=" in result.stderr
    assert not list(tmp_path.iterdir())  # refused before anything was started or written
