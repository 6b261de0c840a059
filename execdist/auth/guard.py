"""The guard: a token and an action in, a :class:`Principal` or a refusal out."""

from __future__ import annotations

import hmac
from typing import Protocol

from execdist.domain.access import ENV_ADMIN_ID, Action, Principal, Scope, permits, refusal
from execdist.domain.errors import ExecDistError


class Unauthenticated(ExecDistError):
    """No token, or a token that is not valid (unknown, revoked, not text)."""


class Forbidden(ExecDistError):
    """A valid token whose scope does not cover the request."""

    def __init__(self, principal: Principal, message: str) -> None:
        super().__init__(message)
        self.principal = principal


class TokenLookup(Protocol):
    def principal_for(self, token: str) -> Principal | None:
        """The principal of a stored token, or None; may raise ``NotLoaded``."""


_ENV_ADMIN = Principal(ENV_ADMIN_ID, Scope.ADMIN)


class Guard:
    """Checks tokens against ``EXECDIST_ADMIN_TOKEN`` and the stored tokens' hashes."""

    def __init__(self, admin_token: str, tokens: TokenLookup) -> None:
        self._admin_token = admin_token.encode()
        self._tokens = tokens

    def authenticate(self, token: str | None) -> Principal:
        """The principal ``token`` stands for; :class:`Unauthenticated` if none."""
        if token is None:
            raise Unauthenticated("send 'Authorization: Bearer <token>'")
        try:
            raw = token.encode("utf-8")
        except UnicodeEncodeError:
            # aiohttp turns header bytes that are not UTF-8 into lone surrogates: no token
            # of ours looks like that
            raise Unauthenticated("the token is not valid") from None
        if hmac.compare_digest(raw, self._admin_token):
            return _ENV_ADMIN
        principal = self._tokens.principal_for(token)
        if principal is None:
            raise Unauthenticated("the token is not valid")
        return principal

    def authorize(
        self, token: str | None, action: Action, subscription_id: str | None = None
    ) -> Principal:
        """The principal, if it may do ``action``; else :class:`Unauthenticated` or
        :class:`Forbidden`."""
        principal = self.authenticate(token)
        if not permits(principal, action, subscription_id):
            raise Forbidden(principal, refusal(principal, action))
        return principal
