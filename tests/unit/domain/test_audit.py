"""The audit trail's core: naming a change, what an entry keeps, its stored form, and paging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from execdist.domain.access import ENV_ADMIN_ID
from execdist.domain.audit import (
    AuditAction,
    AuditEntry,
    audit_action,
    audit_page,
    audited_state,
    record_change,
    status_type_of,
)
from execdist.domain.model import StatusType
from execdist.domain.subscriptions import (
    Subscription,
    apply_patch,
    hash_token,
    new_subscription,
    parse_create,
    parse_patch,
)

T0 = datetime(2024, 5, 1, 13, 30, tzinfo=UTC)
TOKEN = "eds_the-subscriptions-own-token"


def created() -> Subscription:
    return new_subscription(
        parse_create({"name": "desk", "filter": {"accounts": ["ACC-1"], "min_qty": "100"}}),
        subscription_id="sub-1",
        token_hash=hash_token(TOKEN),
        now=T0,
    )


def patched(subscription: Subscription, body: dict[str, object]) -> Subscription:
    return apply_patch(subscription, parse_patch(body), T0 + timedelta(minutes=1))


@pytest.mark.parametrize(
    ("body", "action"),
    [
        ({"filter": {"symbols": ["AAPL"]}}, AuditAction.UPDATED),
        ({"name": "renamed"}, AuditAction.UPDATED),
        ({"status": "PAUSED"}, AuditAction.PAUSED),
        ({"status": "PAUSED", "filter": None}, AuditAction.PAUSED),
    ],
)
def test_a_patch_is_named_by_what_it_does_to_the_status(
    body: dict[str, object], action: AuditAction
) -> None:
    before = created()
    assert audit_action(before, patched(before, body)) is action


def test_resuming_is_resumed_creating_and_deleting_are_themselves() -> None:
    active = created()
    paused = patched(active, {"status": "PAUSED"})
    assert audit_action(paused, patched(paused, {"status": "ACTIVE"})) is AuditAction.RESUMED
    assert audit_action(None, active) is AuditAction.CREATED
    assert audit_action(paused, None) is AuditAction.DELETED
    with pytest.raises(ValueError):
        audit_action(None, None)


def test_an_entry_keeps_the_filter_before_and_after_and_never_the_token() -> None:
    before = created()
    after = patched(before, {"filter": {"symbols": ["MSFT"]}})
    entry = record_change(before, after, actor="tok_00112233445566ff", now=T0)
    public = entry.to_dict()
    assert list(public) == ["time", "actor", "action", "before", "after"]
    assert public["actor"] == "tok_00112233445566ff"
    assert public["time"] == "2024-05-01T13:30:00.000000Z"
    assert public["before"] == audited_state(before)
    assert public["after"] == audited_state(after)
    assert audited_state(before)["filter"] == before.filter.to_dict()
    assert audited_state(after)["filter"] == after.filter.to_dict()
    assert audited_state(after)["version"] == 2
    stored = orjson.dumps(entry.to_stored())
    assert TOKEN.encode() not in stored
    assert hash_token(TOKEN).encode() not in stored


def test_created_has_nothing_before_and_deleted_nothing_after() -> None:
    subscription = created()
    creation = record_change(None, subscription, actor=ENV_ADMIN_ID, now=T0)
    deletion = record_change(subscription, None, actor=ENV_ADMIN_ID, now=T0)
    assert (creation.before, creation.action) == (None, AuditAction.CREATED)
    assert (deletion.after, deletion.action) == (None, AuditAction.DELETED)
    assert creation.subscription_id == deletion.subscription_id == "sub-1"


def test_the_stored_form_reads_back_equal() -> None:
    before = created()
    for entry in (
        record_change(None, before, actor=ENV_ADMIN_ID, now=T0),
        record_change(before, patched(before, {"status": "PAUSED"}), actor="tok_1", now=T0),
        record_change(before, None, actor="tok_2", now=T0),
    ):
        assert AuditEntry.from_stored(orjson.loads(orjson.dumps(entry.to_stored()))) == entry


def test_times_must_be_aware_and_are_written_in_utc() -> None:
    with pytest.raises(ValueError):
        record_change(None, created(), actor=ENV_ADMIN_ID, now=datetime(2024, 5, 1))
    paris = datetime(2024, 5, 1, 15, 30, tzinfo=timezone(timedelta(hours=2)))
    entry = record_change(None, created(), actor=ENV_ADMIN_ID, now=paris)
    assert entry.to_dict()["time"] == "2024-05-01T13:30:00.000000Z"


@pytest.mark.parametrize(
    ("action", "status_type"),
    [
        (AuditAction.CREATED, StatusType.SUBSCRIPTION_CREATED),
        (AuditAction.UPDATED, StatusType.SUBSCRIPTION_UPDATED),
        (AuditAction.PAUSED, StatusType.SUBSCRIPTION_UPDATED),
        (AuditAction.RESUMED, StatusType.SUBSCRIPTION_UPDATED),
        (AuditAction.DELETED, StatusType.SUBSCRIPTION_DELETED),
    ],
)
def test_each_change_is_announced_by_its_status_event(
    action: AuditAction, status_type: StatusType
) -> None:
    assert status_type_of(action) is status_type


def entries(positions: list[int]) -> list[tuple[int, AuditEntry]]:
    subscription = created()
    return [
        (position, record_change(None, subscription, actor=f"tok_{position}", now=T0))
        for position in positions
    ]


def test_a_page_ends_at_its_last_position_and_the_last_page_has_no_cursor() -> None:
    log = entries([3, 7, 8, 20])
    first = audit_page(log, after=None, limit=3)
    assert [e.actor for e in first.items] == ["tok_3", "tok_7", "tok_8"]
    assert first.last_position == 8
    second = audit_page(log, after=first.last_position, limit=3)
    assert [e.actor for e in second.items] == ["tok_20"]
    assert second.last_position is None
    exact = audit_page(log, after=None, limit=4)
    assert (len(exact.items), exact.last_position) == (4, None)
    assert audit_page([], after=None, limit=1).items == []
    with pytest.raises(ValueError):
        audit_page(log, after=None, limit=0)


@given(
    positions=st.lists(st.integers(0, 10_000), unique=True).map(sorted),
    limit=st.integers(1, 7),
)
def test_following_the_cursors_gives_every_entry_once_in_order(
    positions: list[int], limit: int
) -> None:
    log = entries(positions)
    seen: list[AuditEntry] = []
    after = None
    while True:
        page = audit_page(log, after=after, limit=limit)
        assert len(page.items) <= limit
        seen.extend(page.items)
        if page.last_position is None:
            break
        after = page.last_position
    assert seen == [entry for _, entry in log]
