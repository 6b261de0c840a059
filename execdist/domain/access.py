"""Who may do what: token scopes, the principal a token stands for, and the one rule table.

Three kinds of principal send requests:

- **admin**: ``EXECDIST_ADMIN_TOKEN`` or a token issued with scope ``admin``; may do everything.
- **analyst**: a token issued with scope ``analyst``; reads the book, analytics, status,
  subscriptions (their public form, which never holds a token or a secret) and their audit,
  and changes nothing. Analysts do not open a subscription's stream: a stream is a delivery to
  the subscriber, and its acknowledgements move the subscription's acknowledged position.
- **subscription**: the token returned when a subscription is created; reads that
  subscription, its status and its streams, and nothing else.

:func:`permits` is the whole policy; every transport (REST, WebSocket, SSE, gRPC) asks it
through :class:`execdist.auth.Guard`, so the rules are written once. Issued tokens are kept
only as :func:`~execdist.domain.subscriptions.hash_token` of the token (:class:`ApiToken`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final

from execdist.domain.errors import DomainError
from execdist.domain.model import format_time, parse_stored_time

__all__ = [
    "ENV_ADMIN_ID",
    "MAX_TOKEN_NAME_LENGTH",
    "Action",
    "ApiToken",
    "InvalidTokenRequest",
    "Principal",
    "Scope",
    "TokenRequest",
    "new_api_token",
    "parse_token_request",
    "permits",
    "refusal",
    "subscription_principal",
]

ENV_ADMIN_ID: Final = "env:EXECDIST_ADMIN_TOKEN"
"""The principal id of the configured admin token (an audit log's actor, never the token)."""
MAX_TOKEN_NAME_LENGTH: Final = 200
_TOKEN_ID = re.compile(r"tok_[0-9a-f]{16}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class Scope(StrEnum):
    """What a token may do."""

    ADMIN = "admin"
    ANALYST = "analyst"
    SUBSCRIPTION = "subscription"


class Action(StrEnum):
    """What a request needs; each endpoint names one."""

    MANAGE = "manage"
    """Anything that changes state: subscriptions (create, change, delete) and tokens (all of
    their endpoints, listing included: the list says who holds access)."""
    READ = "read"
    """Read what is not one subscription's: orders, positions, analytics, cluster status, the
    list of subscriptions."""
    READ_SUBSCRIPTION = "read_subscription"
    """Read one subscription: the subscription, its status, its audit."""
    STREAM = "stream"
    """Receive one subscription's confirmations (WebSocket, SSE, gRPC)."""


@dataclass(frozen=True)
class Principal:
    """Who a valid token stands for."""

    id: str
    """``tok_…`` for an issued token, ``subscription:<id>`` for a subscription's token,
    :data:`ENV_ADMIN_ID` for ``EXECDIST_ADMIN_TOKEN``. Safe to log and to show."""
    scope: Scope
    subscription_id: str | None = None
    """The subscription a ``subscription`` token is scoped to; None for the other scopes."""


def subscription_principal(subscription_id: str) -> Principal:
    return Principal(f"subscription:{subscription_id}", Scope.SUBSCRIPTION, subscription_id)


_ANALYST_ACTIONS = frozenset({Action.READ, Action.READ_SUBSCRIPTION})


def permits(principal: Principal, action: Action, subscription_id: str | None = None) -> bool:
    """Whether ``principal`` may do ``action`` (on ``subscription_id`` where it names one)."""
    if principal.scope is Scope.ADMIN:
        return True
    if principal.scope is Scope.ANALYST:
        return action in _ANALYST_ACTIONS
    return (
        action in (Action.READ_SUBSCRIPTION, Action.STREAM)
        and subscription_id is not None
        and subscription_id == principal.subscription_id
    )


def refusal(principal: Principal, action: Action) -> str:
    """Why :func:`permits` said no, for the 403's message."""
    if principal.scope is Scope.ANALYST:
        if action is Action.STREAM:
            return "an analyst token does not open subscription streams"
        return "an analyst token may only read"
    return f"this token is scoped to subscription {principal.subscription_id!r} only"


# --- issued tokens ---------------------------------------------------------------------------


class InvalidTokenRequest(DomainError):
    """A ``POST /api/v1/tokens`` body the service refuses; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class TokenRequest:
    scope: Scope
    name: str


_ISSUABLE = (Scope.ADMIN, Scope.ANALYST)
_REQUEST_KEYS = ("scope", "name")


def parse_token_request(body: object) -> TokenRequest:
    """Validate ``{"scope": "admin"|"analyst", "name": "..."}``; nothing else is accepted.

    Subscription tokens are not issued here: creating a subscription returns its token.
    """
    if not isinstance(body, Mapping):
        raise InvalidTokenRequest("body", "the body must be a JSON object")
    for key in body:
        if key not in _REQUEST_KEYS:
            raise InvalidTokenRequest(
                str(key), f"unknown field; a token request has {', '.join(_REQUEST_KEYS)}"
            )
    scope = body.get("scope")
    if scope not in _ISSUABLE:
        raise InvalidTokenRequest(
            "scope",
            "scope must be 'admin' or 'analyst' (a subscription's token comes with the "
            "subscription)",
        )
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_TOKEN_NAME_LENGTH:
        raise InvalidTokenRequest(
            "name", f"name must be a non-blank string of at most {MAX_TOKEN_NAME_LENGTH} characters"
        )
    return TokenRequest(Scope(scope), name)


@dataclass(frozen=True)
class ApiToken:
    """An issued admin or analyst token, as stored: never the token, only its hash."""

    id: str
    """``tok_`` and 16 hex digits; the key of the token on the store and its principal id."""
    name: str
    """Who or what holds it, for people reading the list."""
    scope: Scope
    created_at: datetime
    token_hash: str = field(repr=False)
    """Hex sha256 of the token."""

    @property
    def principal(self) -> Principal:
        return Principal(self.id, self.scope)

    def to_dict(self, *, include_secret: bool = False) -> dict[str, object]:
        """The public form (API responses) or, with ``include_secret``, the stored form."""
        data: dict[str, object] = {
            "id": self.id,
            "name": self.name,
            "scope": self.scope.value,
            "created_at": format_time(self.created_at),
        }
        if include_secret:
            data["token_hash"] = self.token_hash
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ApiToken:
        """Read back the stored form (trusted)."""
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            scope=Scope(str(data["scope"])),
            created_at=parse_stored_time(data["created_at"]),
            token_hash=str(data["token_hash"]),
        )


def new_api_token(
    request: TokenRequest, *, token_id: str, token_hash: str, now: datetime
) -> ApiToken:
    """The record of a newly issued token; the caller draws the id and the token."""
    if not _TOKEN_ID.fullmatch(token_id):
        raise ValueError(f"token id {token_id!r} must be 'tok_' and 16 hex digits")
    if not _SHA256_HEX.fullmatch(token_hash):
        raise ValueError("token_hash must be hash_token(token); the token itself is never stored")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return ApiToken(token_id, request.name, request.scope, now, token_hash)
