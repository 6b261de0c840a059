"""The guard: the configured admin token, stored tokens, refusals, and the store's lookup."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from execdist.auth import Forbidden, Guard, Unauthenticated
from execdist.domain.access import (
    ENV_ADMIN_ID,
    Action,
    Principal,
    Scope,
    TokenRequest,
    new_api_token,
    subscription_principal,
)
from execdist.domain.subscriptions import hash_token, new_subscription, parse_create
from execdist.services.subscription_store import NotLoaded, SubscriptionStore
from execdist.settings import Settings

ADMIN_TOKEN = "the-admin-token"
T0 = datetime(2024, 5, 1, 13, 30, tzinfo=UTC)


class Tokens:
    def __init__(self, known: dict[str, Principal]) -> None:
        self.known = known
        self.asked: list[str] = []

    def principal_for(self, token: str) -> Principal | None:
        self.asked.append(token)
        return self.known.get(token)


ANALYST = Principal("tok_00000000000000aa", Scope.ANALYST)


def guard(**known: Principal) -> Guard:
    return Guard(ADMIN_TOKEN, Tokens(known))


def test_the_configured_admin_token_is_the_env_admin_and_needs_no_lookup() -> None:
    tokens = Tokens({})
    principal = Guard(ADMIN_TOKEN, tokens).authorize(ADMIN_TOKEN, Action.MANAGE)
    assert principal == Principal(ENV_ADMIN_ID, Scope.ADMIN)
    assert tokens.asked == []  # answers while the store is still loading


@pytest.mark.parametrize("token", [None, "", "nope", ADMIN_TOKEN + "x", "bad-\udcff"])
def test_no_token_or_an_unknown_one_is_unauthenticated(token: str | None) -> None:
    with pytest.raises(Unauthenticated):
        guard().authorize(token or None, Action.READ)


def test_a_stored_token_is_its_principal_and_its_scope_is_enforced() -> None:
    g = guard(analyst=ANALYST, mine=subscription_principal("sub-a"))
    assert g.authorize("analyst", Action.READ) == ANALYST
    assert g.authorize("mine", Action.STREAM, "sub-a").subscription_id == "sub-a"
    with pytest.raises(Forbidden) as refused:
        g.authorize("analyst", Action.MANAGE)
    assert refused.value.principal == ANALYST
    with pytest.raises(Forbidden):
        g.authorize("mine", Action.STREAM, "sub-b")


# --- the store's side: hashes in, principals out ----------------------------------------------


def loaded_store() -> SubscriptionStore:
    store = SubscriptionStore(Settings(), "unit-test-store")
    store.loaded.set()
    return store


def test_the_store_answers_for_subscription_tokens_and_issued_tokens() -> None:
    store = loaded_store()
    subscription = new_subscription(
        parse_create({"name": "desk"}),
        subscription_id="sub-a",
        token_hash=hash_token("eds_sub"),
        now=T0,
    )
    issued = new_api_token(
        TokenRequest(Scope.ANALYST, "risk"),
        token_id="tok_00000000000000aa",
        token_hash=hash_token("edt_analyst"),
        now=T0,
    )
    store._apply(b"sub-a", orjson.dumps(subscription.to_dict(include_secret=True)))
    store._apply(b"token:tok_00000000000000aa", orjson.dumps(issued.to_dict(include_secret=True)))
    assert store.get("sub-a") == subscription
    assert store.get("token:tok_00000000000000aa") is None  # a token is not a subscription
    assert store.principal_for("eds_sub") == subscription_principal("sub-a")
    assert store.principal_for("edt_analyst") == ANALYST
    assert store.principal_for("edt_other") is None
    assert store.api_tokens() == [issued]

    store._apply(b"token:tok_00000000000000aa", None)  # revoked: the tombstone
    assert store.principal_for("edt_analyst") is None
    assert store.api_tokens() == []
    assert store.principal_for("eds_sub") is not None


def test_the_store_refuses_to_answer_before_it_has_read_every_token() -> None:
    with pytest.raises(NotLoaded):
        SubscriptionStore(Settings(), "unit-test-store").principal_for("edt_anything")
