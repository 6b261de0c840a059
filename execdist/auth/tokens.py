"""Issuing and revoking admin and analyst tokens: the use cases behind ``/api/v1/tokens``.

A token is drawn here, shown to its caller once, and stored only as its sha256 on the
subscriptions topic, so that every worker follows it (:class:`SubscriptionStore`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from execdist.domain.access import ApiToken, TokenRequest, new_api_token
from execdist.domain.subscriptions import hash_token
from execdist.services.subscription_store import SubscriptionStore

TOKEN_PREFIX = "edt_"
"""Issued tokens start with this (subscription tokens with ``eds_``), so a token found in a
log or a repository can be recognised and revoked."""


@dataclass(frozen=True)
class IssuedToken:
    record: ApiToken
    token: str
    """The token itself: returned once, never stored."""

    def to_dict(self) -> dict[str, object]:
        return {**self.record.to_dict(), "token": self.token}


async def issue_token(store: SubscriptionStore, request: TokenRequest) -> IssuedToken:
    """Draw a token, store its hash and return once it is in force on this worker."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = new_api_token(
        request,
        token_id=f"tok_{secrets.token_hex(8)}",
        token_hash=hash_token(token),
        now=datetime.now(UTC),
    )
    await store.put_token(record)
    return IssuedToken(record, token)


async def revoke_token(store: SubscriptionStore, token_id: str) -> bool:
    """Revoke an issued token; False if there is none with that id."""
    if store.api_token(token_id) is None:
        return False
    await store.revoke_token(token_id)
    return True
