"""The guard in front of a view, in-process: 401 and 403 in the contract's error shape, the
token from the header or ``?token=``, and the principal handed to the view."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

import faust
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from faust.web import Request, View
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from execdist.auth import Guard
from execdist.domain.access import Action, Principal, Scope, subscription_principal
from execdist.web.auth import access_control, principal_of
from execdist.web.views import api, json_response

ADMIN_TOKEN = "the-admin-token"
KNOWN = {
    "analyst-token": Principal("tok_00000000000000aa", Scope.ANALYST),
    "sub-a-token": subscription_principal("sub-a"),
}


class Tokens:
    def principal_for(self, token: str) -> Principal | None:
        return KNOWN.get(token)


@pytest_asyncio.fixture
async def client() -> AsyncIterator[TestClient]:
    app = faust.App("auth-test", web_enabled=True, store="memory://")
    requires = access_control(Guard(ADMIN_TOKEN, Tokens()))

    @app.page("/subs/{subscription_id}")
    class One(View):
        @api
        @requires(Action.READ_SUBSCRIPTION, "subscription_id")
        async def get(self, request: Request, subscription_id: str) -> web.StreamResponse:
            principal = principal_of(request)
            return json_response({"who": principal.id, "about": subscription_id})

        @api
        @requires(Action.MANAGE)
        async def delete(self, request: Request, subscription_id: str) -> web.StreamResponse:
            return web.Response(status=204)

    server = TestServer(cast(AiohttpWeb, app.web).web_app)
    async with TestClient(server) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def error_of(response: web.StreamResponse | object) -> dict[str, object]:
    body = await response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    return dict(body["error"])


async def test_no_token_is_401_in_the_error_shape(client: TestClient) -> None:
    response = await client.get("/subs/sub-a")
    assert response.status == 401
    assert (await error_of(response))["code"] == "unauthorized"


@pytest.mark.parametrize(
    "headers", [bearer("nope"), {"Authorization": "Basic abc"}, bearer(ADMIN_TOKEN + " x")]
)
async def test_a_token_that_is_not_valid_is_401(client: TestClient, headers: dict) -> None:
    assert (await client.get("/subs/sub-a", headers=headers)).status == 401


async def test_a_token_that_is_not_utf8_is_401(client: TestClient) -> None:
    response = await client.get(
        "/subs/sub-a", headers={"Authorization": b"Bearer \xff\xfe".decode("latin-1")}
    )
    assert response.status == 401


async def test_another_scope_is_403_and_says_why(client: TestClient) -> None:
    response = await client.get("/subs/sub-b", headers=bearer("sub-a-token"))
    assert response.status == 403
    error = await error_of(response)
    assert error["code"] == "forbidden"
    assert "sub-a" in str(error["message"])
    assert (await client.delete("/subs/sub-a", headers=bearer("analyst-token"))).status == 403


@pytest.mark.parametrize(
    ("token", "who"),
    [
        (ADMIN_TOKEN, "env:EXECDIST_ADMIN_TOKEN"),
        ("analyst-token", "tok_00000000000000aa"),
        ("sub-a-token", "subscription:sub-a"),
    ],
)
async def test_the_view_gets_the_principal(client: TestClient, token: str, who: str) -> None:
    for response in (
        await client.get("/subs/sub-a", headers=bearer(token)),
        await client.get("/subs/sub-a", params={"token": token}),
    ):
        assert response.status == 200
        assert await response.json() == {"who": who, "about": "sub-a"}
    assert (await client.delete("/subs/sub-a", headers=bearer(ADMIN_TOKEN))).status == 204
