"""The web side of authorisation: the token of a request, and the guard in front of a view.

The rules live in :mod:`execdist.domain.access` and the checks in :class:`execdist.auth.Guard`;
here they only meet aiohttp. Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from faust.web import Request, View

from execdist.auth import Forbidden, Guard, Unauthenticated
from execdist.domain.access import Action, Principal
from execdist.web.errors import HttpError

Handler = Callable[..., Awaitable[Any]]

_PRINCIPAL = web.RequestKey("execdist.principal", Principal)


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


def authorize(
    guard: Guard,
    request: Request | web.BaseRequest,
    action: Action,
    subscription_id: str | None = None,
) -> Principal:
    """The request's principal; 401 without a valid token, 403 outside its scope."""
    try:
        return guard.authorize(bearer_token(request), action, subscription_id)
    except Unauthenticated as exc:
        raise HttpError(401, "unauthorized", str(exc)) from None
    except Forbidden as exc:
        raise HttpError(403, "forbidden", str(exc)) from None


Requires = Callable[..., Callable[[Handler], Handler]]


def access_control(guard: Guard) -> Requires:
    """``requires(action, subscription_param=None)``: a decorator that lets a view run only
    for a principal that may do ``action`` (on the subscription named by the path parameter
    ``subscription_param``). It goes outside any forwarding, so a refused request is answered
    here and never forwarded; the view finds the principal with :func:`principal_of`."""

    def requires(
        action: Action, subscription_param: str | None = None
    ) -> Callable[[Handler], Handler]:
        def decorator(handler: Handler) -> Handler:
            @functools.wraps(handler)
            async def checked(self: View, request: Request, **kwargs: Any) -> Any:
                subscription_id = None if subscription_param is None else kwargs[subscription_param]
                principal = authorize(guard, request, action, subscription_id)
                native(request)[_PRINCIPAL] = principal
                return await handler(self, request, **kwargs)

            return checked

        return decorator

    return requires


def principal_of(request: Request | web.BaseRequest) -> Principal:
    """Who sent a request that passed ``requires``."""
    principal = native(request).get(_PRINCIPAL)
    if not isinstance(principal, Principal):
        raise RuntimeError("principal_of() is for views behind requires()")
    return principal
