"""Bearer-token checks. Tokens are compared in constant time and never logged."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from aiohttp import web
from faust.web import Request

from execdist.web.errors import HttpError


def native(request: Request | web.BaseRequest) -> web.BaseRequest:
    """The aiohttp request behind a Faust view's request: Faust's web driver here is aiohttp,
    and the views use what only aiohttp's requests have (query, transport, content length)."""
    if not isinstance(request, web.BaseRequest):
        raise TypeError(f"expected an aiohttp request, got {type(request).__name__}")
    return request


def bearer_token(request: Request | web.BaseRequest) -> str | None:
    """The token from ``Authorization: Bearer`` or, for browsers' streams, ``?token=``."""
    request = native(request)
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    token = request.query.get("token")
    return token or None


def is_admin(token: str | None, admin_token: str) -> bool:
    return token is not None and hmac.compare_digest(
        token.encode("utf-8", "surrogateescape"), admin_token.encode()
    )


ScopeLookup = Callable[[str], str | None]
"""Maps a subscription token to the subscription it is scoped to, or ``None``."""


def require_admin(
    request: Request | web.BaseRequest, admin_token: str, scope_of: ScopeLookup | None = None
) -> None:
    """401 without a valid token, 403 with a valid token of a narrower scope."""
    token = bearer_token(request)
    if token is None:
        raise HttpError(401, "unauthorized", "send 'Authorization: Bearer <token>'")
    if is_admin(token, admin_token):
        return
    if scope_of is not None and scope_of(token) is not None:
        raise HttpError(403, "forbidden", "this token is scoped to one subscription")
    raise HttpError(401, "unauthorized", "the token is not valid")
