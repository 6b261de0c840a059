"""The access rules: every scope against every action, and the issued tokens' records."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from execdist.domain.access import (
    ENV_ADMIN_ID,
    MAX_TOKEN_NAME_LENGTH,
    Action,
    ApiToken,
    InvalidTokenRequest,
    Principal,
    Scope,
    TokenRequest,
    new_api_token,
    parse_token_request,
    permits,
    refusal,
    subscription_principal,
)
from execdist.domain.subscriptions import hash_token

T0 = datetime(2024, 5, 1, 13, 30, tzinfo=UTC)
ADMIN = Principal("tok_0000000000000001", Scope.ADMIN)
ANALYST = Principal("tok_0000000000000002", Scope.ANALYST)
MINE = subscription_principal("sub-a")

# (action, subscription the request is about) -> who may: the whole table, written out.
TABLE: list[tuple[Action, str | None, set[str]]] = [
    (Action.MANAGE, None, {"admin"}),
    (Action.MANAGE, "sub-a", {"admin"}),
    (Action.READ, None, {"admin", "analyst"}),
    (Action.READ_SUBSCRIPTION, "sub-a", {"admin", "analyst", "mine"}),
    (Action.READ_SUBSCRIPTION, "sub-b", {"admin", "analyst"}),
    (Action.READ_SUBSCRIPTION, None, {"admin", "analyst"}),
    (Action.STREAM, "sub-a", {"admin", "mine"}),
    (Action.STREAM, "sub-b", {"admin"}),
    (Action.STREAM, None, {"admin"}),
]
PRINCIPALS = {"admin": ADMIN, "analyst": ANALYST, "mine": MINE}


@pytest.mark.parametrize(("action", "subscription_id", "allowed"), TABLE)
def test_the_rule_table(action: Action, subscription_id: str | None, allowed: set[str]) -> None:
    got = {
        name
        for name, principal in PRINCIPALS.items()
        if permits(principal, action, subscription_id)
    }
    assert got == allowed


def test_the_table_covers_every_action() -> None:
    assert {action for action, _, _ in TABLE} == set(Action)


def test_refusals_say_why() -> None:
    assert "only read" in refusal(ANALYST, Action.MANAGE)
    assert "stream" in refusal(ANALYST, Action.STREAM)
    assert "'sub-a'" in refusal(MINE, Action.READ)


def test_principal_ids_never_hold_a_token() -> None:
    assert (MINE.id, MINE.scope, MINE.subscription_id) == (
        "subscription:sub-a",
        Scope.SUBSCRIPTION,
        "sub-a",
    )
    assert ENV_ADMIN_ID == "env:EXECDIST_ADMIN_TOKEN"


@pytest.mark.parametrize("scope", ["admin", "analyst"])
def test_a_token_request_takes_admin_or_analyst(scope: str) -> None:
    assert parse_token_request({"scope": scope, "name": "desk"}) == TokenRequest(
        Scope(scope), "desk"
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({"scope": "subscription", "name": "x"}, "scope"),
        ({"scope": "root", "name": "x"}, "scope"),
        ({"name": "x"}, "scope"),
        ({"scope": "analyst"}, "name"),
        ({"scope": "analyst", "name": "  "}, "name"),
        ({"scope": "analyst", "name": 5}, "name"),
        ({"scope": "analyst", "name": "x" * (MAX_TOKEN_NAME_LENGTH + 1)}, "name"),
        ({"scope": "analyst", "name": "x", "token": "mine"}, "token"),
    ],
)
def test_a_bad_token_request_names_the_field(body: object, field: str) -> None:
    with pytest.raises(InvalidTokenRequest) as refused:
        parse_token_request(body)
    assert refused.value.field == field


def test_an_issued_token_keeps_only_the_hash_and_round_trips() -> None:
    record = new_api_token(
        TokenRequest(Scope.ANALYST, "risk desk"),
        token_id="tok_00112233445566ff",
        token_hash=hash_token("edt_secret"),
        now=T0,
    )
    public = record.to_dict()
    assert public == {
        "id": "tok_00112233445566ff",
        "name": "risk desk",
        "scope": "analyst",
        "created_at": "2024-05-01T13:30:00.000000Z",
    }
    stored = record.to_dict(include_secret=True)
    assert stored["token_hash"] == hash_token("edt_secret")
    assert "edt_secret" not in repr(record) + str(stored)
    assert ApiToken.from_dict(stored) == record
    assert record.principal == Principal("tok_00112233445566ff", Scope.ANALYST)


@pytest.mark.parametrize(
    ("token_id", "token_hash", "now"),
    [
        ("tok_1", hash_token("t"), T0),
        ("tok_00112233445566ff", "edt_secret", T0),
        ("tok_00112233445566ff", hash_token("t"), T0.replace(tzinfo=None)),
    ],
)
def test_a_malformed_record_is_a_caller_bug(token_id: str, token_hash: str, now: datetime) -> None:
    with pytest.raises(ValueError):
        new_api_token(
            TokenRequest(Scope.ADMIN, "x"), token_id=token_id, token_hash=token_hash, now=now
        )
