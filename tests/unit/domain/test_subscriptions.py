"""Subscriptions: filter semantics, request validation with field names, JSON round trips."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from execdist.domain import Confirmation, DomainError, ExecType, OrderStatus, Side
from execdist.domain.subscriptions import (
    DRY_RUN_DEFAULT_RECORDS,
    DRY_RUN_MAX_RECORDS,
    CreateRequest,
    Filter,
    InvalidSubscription,
    OutputFormat,
    PatchRequest,
    Subscription,
    SubscriptionStatus,
    apply_patch,
    hash_token,
    new_subscription,
    parse_create,
    parse_dry_run,
    parse_patch,
    token_matches,
    topic_for,
)

T0 = datetime(2024, 5, 1, 13, 30, tzinfo=UTC)
TOKEN = "tok-s3cret"


def make_confirmation(
    account: str = "ACC-1",
    symbol: str = "AAPL",
    venue: str = "XNAS",
    side: Side = Side.BUY,
    exec_type: ExecType = ExecType.TRADE,
    last_qty: str = "100",
) -> Confirmation:
    """A confirmation with the fields a filter looks at chosen, the rest fixed."""
    return Confirmation(
        confirmation_id="EX-1",
        exec_id="EX-1",
        order_id="ORD-1",
        account=account,
        symbol=symbol,
        side=side,
        venue=venue,
        exec_type=exec_type,
        ref_exec_id=None if exec_type is ExecType.TRADE else "EX-0",
        seq=1,
        last_qty=Decimal(last_qty),
        last_px=Decimal("187.45"),
        cum_qty=Decimal(last_qty),
        leaves_qty=Decimal(0),
        avg_px=Decimal("187.45"),
        order_qty=Decimal(last_qty),
        order_status=OrderStatus.FILLED,
        exec_time=T0,
        confirmed_at=T0,
    )


def make_subscription(
    subscription_id: str = "sub-1",
    filter_: Filter | None = None,
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
) -> Subscription:
    subscription = new_subscription(
        CreateRequest(name=f"name of {subscription_id}", filter=filter_ or Filter()),
        subscription_id=subscription_id,
        token_hash=hash_token(TOKEN),
        now=T0,
    )
    return dataclasses.replace(subscription, status=status)


def invalid(call: object, *args: object) -> InvalidSubscription:
    """The InvalidSubscription raised by ``call(*args)``."""
    assert callable(call)
    with pytest.raises(InvalidSubscription) as caught:
        call(*args)
    return caught.value


# --- Filter.matches -------------------------------------------------------------------------


def test_the_empty_filter_matches_everything() -> None:
    assert Filter().matches_all
    for confirmation in (
        make_confirmation(),
        make_confirmation("X", "Y", "Z", Side.SELL_SHORT, ExecType.BUST, "0"),
    ):
        assert Filter().matches(confirmation)


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        (Filter(accounts=frozenset({"ACC-1", "ACC-2"})), True),
        (Filter(accounts=frozenset({"ACC-2"})), False),
        (Filter(symbols=frozenset({"AAPL"})), True),
        (Filter(symbols=frozenset({"MSFT"})), False),
        (Filter(venues=frozenset({"XNAS", "XNYS"})), True),
        (Filter(venues=frozenset({"XNYS"})), False),
        (Filter(sides=frozenset({Side.BUY})), True),
        (Filter(sides=frozenset({Side.SELL, Side.SELL_SHORT})), False),
        (Filter(exec_types=frozenset({ExecType.TRADE, ExecType.BUST})), True),
        (Filter(exec_types=frozenset({ExecType.CORRECT})), False),
        (Filter(min_qty=Decimal(100)), True),  # >=, so equal matches
        (Filter(min_qty=Decimal("100.00000001")), False),
        (Filter(min_qty=Decimal(0)), True),
        # fields combine with AND
        (Filter(accounts=frozenset({"ACC-1"}), symbols=frozenset({"AAPL"})), True),
        (Filter(accounts=frozenset({"ACC-1"}), symbols=frozenset({"MSFT"})), False),
        (Filter(accounts=frozenset({"ACC-1"}), min_qty=Decimal(101)), False),
    ],
)
def test_each_field_matches_any_of_its_values_and_fields_combine_with_and(
    filter_: Filter, expected: bool
) -> None:
    assert filter_.matches(make_confirmation(last_qty="100")) is expected


# --- Filter.parse ---------------------------------------------------------------------------


def test_a_missing_null_or_empty_filter_matches_all() -> None:
    assert Filter.parse(None) == Filter()
    assert Filter.parse({}) == Filter()
    empty: dict[str, object] = {
        "accounts": [],
        "symbols": None,
        "venues": [],
        "sides": [],
        "exec_types": [],
    }
    assert Filter.parse(empty) == Filter()


def test_parse_builds_sets_enums_and_exact_decimals() -> None:
    parsed = Filter.parse(
        {
            "accounts": ["A", "B", "A"],
            "symbols": ["AAPL"],
            "venues": ["XNAS"],
            "sides": ["SELL", "SELL_SHORT"],
            "exec_types": ["TRADE"],
            "min_qty": "100.50",
        }
    )
    assert parsed == Filter(
        accounts=frozenset({"A", "B"}),
        symbols=frozenset({"AAPL"}),
        venues=frozenset({"XNAS"}),
        sides=frozenset({Side.SELL, Side.SELL_SHORT}),
        exec_types=frozenset({ExecType.TRADE}),
        min_qty=Decimal("100.5"),
    )
    assert str(parsed.min_qty) == "100.5"  # canonical: no trailing zeros


@pytest.mark.parametrize(
    ("value", "expected"),
    [(10, Decimal(10)), ("0", Decimal(0)), ("-0", Decimal(0)), ("1e3", Decimal(1000)),
     ("0.00000001", Decimal("0.00000001")), (".5", Decimal("0.5"))],
)  # fmt: skip
def test_min_qty_accepts_decimal_strings_and_integers(value: object, expected: Decimal) -> None:
    assert Filter.parse({"min_qty": value}).min_qty == expected


def test_the_sides_error_names_the_item_and_the_allowed_values() -> None:
    error = invalid(Filter.parse, {"sides": ["BUY", "HOLD"]})
    assert error.field == "filter.sides[1]"
    assert error.message == "filter.sides[1] must be one of BUY, SELL, SELL_SHORT, got 'HOLD'"
    assert isinstance(error, DomainError)


@pytest.mark.parametrize(
    ("data", "field", "fragment"),
    [
        (["accounts"], "filter", "must be a JSON object or null, got an array"),
        ("AAPL", "filter", "got a string"),
        ({"acounts": ["A"]}, "filter.acounts", "not a known field; allowed: accounts, symbols"),
        ({"accounts": "ACC-1"}, "filter.accounts", "must be a list, got a string"),
        ({"symbols": {"AAPL": 1}}, "filter.symbols", "must be a list, got an object"),
        ({"venues": ["XNAS", 7]}, "filter.venues[1]", "must be a string, got an integer"),
        ({"accounts": [None]}, "filter.accounts[0]", "must be a string, got null"),
        ({"accounts": ["A", ""]}, "filter.accounts[1]", "must not be empty"),
        ({"symbols": ["  "]}, "filter.symbols[0]", "must not be empty"),
        ({"accounts": ["x" * 129]}, "filter.accounts[0]", "at most 128 characters, got 129"),
        ({"accounts": ["a"] * 1001}, "filter.accounts", "at most 1000 values, got 1001"),
        ({"sides": ["buy"]}, "filter.sides[0]", "one of BUY, SELL, SELL_SHORT, got 'buy'"),
        ({"sides": "BUY"}, "filter.sides", "must be a list"),
        ({"exec_types": [1]}, "filter.exec_types[0]", "one of TRADE, CORRECT, BUST, got 1"),
        ({"min_qty": 10.5}, "filter.min_qty", "JSON number 10.5"),
        ({"min_qty": True}, "filter.min_qty", "got a boolean"),
        ({"min_qty": ["1"]}, "filter.min_qty", "got an array"),
        ({"min_qty": "-1"}, "filter.min_qty", "must be 0 or greater, got '-1'"),
        ({"min_qty": -5}, "filter.min_qty", "must be 0 or greater"),
        ({"min_qty": "NaN"}, "filter.min_qty", "finite decimal"),
        ({"min_qty": "Infinity"}, "filter.min_qty", "finite decimal"),
        ({"min_qty": " 1"}, "filter.min_qty", "finite decimal"),
        ({"min_qty": "1" * 65}, "filter.min_qty", "finite decimal"),
        ({"min_qty": "1e30"}, "filter.min_qty", "at most 18 digits before"),
        ({"min_qty": "0.000000001"}, "filter.min_qty", "8 after"),
    ],
)
def test_parse_refuses_bad_filters_naming_the_field(
    data: object, field: str, fragment: str
) -> None:
    error = invalid(Filter.parse, data)
    assert error.field == field
    assert error.message.startswith(field)
    assert fragment in error.message


def test_limits_are_inclusive() -> None:
    parsed = Filter.parse({"accounts": [f"A{i}" for i in range(1000)], "symbols": ["x" * 128]})
    assert len(parsed.accounts) == 1000


def test_to_dict_sorts_and_names_everything() -> None:
    filter_ = Filter(
        accounts=frozenset({"B", "A"}),
        sides=frozenset({Side.SELL_SHORT, Side.BUY}),
        exec_types=frozenset({ExecType.TRADE, ExecType.BUST}),
        min_qty=Decimal("5.000"),
    )
    assert filter_.to_dict() == {
        "accounts": ["A", "B"],
        "symbols": [],
        "venues": [],
        "sides": ["BUY", "SELL_SHORT"],
        "exec_types": ["BUST", "TRADE"],
        "min_qty": "5",
        "expr": None,
    }
    assert Filter().to_dict()["min_qty"] is None


_names = st.frozensets(st.text("ABCxyz-9", min_size=1, max_size=6), max_size=4)
_filters = st.builds(
    Filter,
    accounts=_names,
    symbols=_names,
    venues=_names,
    sides=st.frozensets(st.sampled_from(Side)),
    exec_types=st.frozensets(st.sampled_from(ExecType)),
    min_qty=st.none() | st.decimals(min_value=0, max_value=10**9, places=8),
)


@given(_filters)
def test_a_filter_parses_back_from_its_json_form(filter_: Filter) -> None:
    assert Filter.parse(filter_.to_dict()) == filter_
    assert Filter.from_dict(filter_.to_dict()) == filter_


# --- Subscription JSON ----------------------------------------------------------------------


def test_the_public_form_never_shows_the_token_or_its_hash() -> None:
    subscription = make_subscription(filter_=Filter(symbols=frozenset({"AAPL"})))
    public = subscription.to_dict()
    assert public == {
        "id": "sub-1",
        "name": "name of sub-1",
        "filter": Filter(symbols=frozenset({"AAPL"})).to_dict(),
        "format": "json",
        "status": "ACTIVE",
        "topic": "execdist.sub.sub-1",
        "partitions": 1,
        "created_at": "2024-05-01T13:30:00.000000Z",
        "updated_at": "2024-05-01T13:30:00.000000Z",
        "version": 1,
        "fields": None,
        "backfill_from": None,
        "consumer_group": None,
        "delivery": {"type": "kafka"},
    }
    assert TOKEN not in repr(subscription)
    assert subscription.token_hash not in repr(subscription)
    stored = subscription.to_dict(include_secret=True)
    assert stored["token_hash"] == hash_token(TOKEN)


@given(
    filter_=_filters,
    format_=st.sampled_from(OutputFormat),
    status=st.sampled_from(SubscriptionStatus),
    partitions=st.integers(1, 64),
    version=st.integers(1, 10**6),
)
def test_a_subscription_reads_back_from_its_stored_form(
    filter_: Filter,
    format_: OutputFormat,
    status: SubscriptionStatus,
    partitions: int,
    version: int,
) -> None:
    subscription = dataclasses.replace(
        make_subscription(filter_=filter_),
        format=format_,
        status=status,
        partitions=partitions,
        version=version,
        updated_at=T0 + timedelta(microseconds=version),
    )
    assert Subscription.from_dict(subscription.to_dict(include_secret=True)) == subscription


def test_the_stored_form_requires_the_token_hash() -> None:
    with pytest.raises(KeyError):
        Subscription.from_dict(make_subscription().to_dict())


# --- create ---------------------------------------------------------------------------------


def test_create_needs_only_a_name() -> None:
    assert parse_create({"name": "desk A"}) == CreateRequest(
        name="desk A", filter=Filter(), format=OutputFormat.JSON, partitions=1
    )
    assert parse_create({"name": "n", "filter": None, "format": None, "partitions": None}) == (
        CreateRequest(name="n")
    )


def test_create_takes_filter_format_and_partitions() -> None:
    request = parse_create(
        {"name": "n", "filter": {"accounts": ["A"]}, "format": "avro", "partitions": 64}
    )
    assert request == CreateRequest(
        name="n", filter=Filter(accounts=frozenset({"A"})), format=OutputFormat.AVRO, partitions=64
    )


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ([], "body", "the request body must be a JSON object, got an array"),
        (None, "body", "got null"),
        ({}, "name", "name is required"),
        ({"name": None}, "name", "name is required"),
        ({"name": ""}, "name", "must not be empty"),
        ({"name": " \t"}, "name", "must not be empty"),
        ({"name": 5}, "name", "must be a string, got an integer"),
        ({"name": "x" * 201}, "name", "at most 200 characters, got 201"),
        ({"name": "n", "colour": "red"}, "colour", "not a known field; allowed: name, filter"),
        ({"name": "n", "id": "mine"}, "id", "set by the service"),
        ({"name": "n", "token": "t"}, "token", "set by the service"),
        ({"name": "n", "status": "PAUSED"}, "status", "a new subscription is ACTIVE"),
        ({"name": "n", "format": "xml"}, "format", "format must be one of json, avro, got 'xml'"),
        ({"name": "n", "format": "JSON"}, "format", "one of json, avro"),
        ({"name": "n", "partitions": 0}, "partitions", "from 1 to 64, got 0"),
        ({"name": "n", "partitions": 65}, "partitions", "from 1 to 64, got 65"),
        ({"name": "n", "partitions": "2"}, "partitions", "got '2'"),
        ({"name": "n", "partitions": True}, "partitions", "got true"),
        ({"name": "n", "partitions": 2.0}, "partitions", "got 2.0"),
        ({"name": "n", "filter": {"sides": ["X"]}}, "filter.sides[0]", "one of BUY"),
        ({"name": "n", "filter": []}, "filter", "must be a JSON object or null"),
    ],
)
def test_create_refuses_bad_bodies_naming_the_field(
    body: object, field: str, fragment: str
) -> None:
    error = invalid(parse_create, body)
    assert error.field == field
    assert fragment in error.message


def test_a_new_subscription_is_active_at_version_1_on_its_own_topic() -> None:
    subscription = new_subscription(
        CreateRequest(name="n", format=OutputFormat.AVRO, partitions=3),
        subscription_id="abc_12.x-y",
        token_hash=hash_token(TOKEN),
        now=T0,
    )
    assert subscription.status is SubscriptionStatus.ACTIVE and subscription.is_active
    assert subscription.version == 1
    assert subscription.topic == topic_for("abc_12.x-y") == "execdist.sub.abc_12.x-y"
    assert subscription.created_at == subscription.updated_at == T0
    assert (subscription.format, subscription.partitions) == (OutputFormat.AVRO, 3)


@pytest.mark.parametrize("subscription_id", ["", "a/b", "a b", "é", "x" * 237])
def test_a_subscription_id_must_fit_in_a_topic_name(subscription_id: str) -> None:
    with pytest.raises(ValueError, match="Kafka topic name"):
        new_subscription(
            CreateRequest(name="n"), subscription_id=subscription_id,
            token_hash=hash_token(TOKEN), now=T0,
        )  # fmt: skip


def test_the_raw_token_is_refused_where_its_hash_belongs() -> None:
    with pytest.raises(ValueError, match="never stored"):
        new_subscription(CreateRequest(name="n"), subscription_id="s", token_hash=TOKEN, now=T0)


def test_times_must_be_aware() -> None:
    naive = datetime(2024, 5, 1, 13, 30)
    with pytest.raises(ValueError, match="aware"):
        new_subscription(
            CreateRequest(name="n"), subscription_id="s", token_hash=hash_token(TOKEN), now=naive
        )
    with pytest.raises(ValueError, match="aware"):
        apply_patch(make_subscription(), PatchRequest(name="other"), naive)


# --- patch ----------------------------------------------------------------------------------


def test_patch_reads_each_changeable_field() -> None:
    assert parse_patch({"status": "PAUSED"}) == PatchRequest(status=SubscriptionStatus.PAUSED)
    assert parse_patch({"name": "new"}) == PatchRequest(name="new")
    assert parse_patch({"filter": {"venues": ["XNAS"]}}) == PatchRequest(
        filter=Filter(venues=frozenset({"XNAS"}))
    )
    # a present filter replaces the whole filter, so null means "match all", not "unchanged"
    assert parse_patch({"filter": None}) == PatchRequest(filter=Filter())


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ("PAUSED", "body", "must be a JSON object, got a string"),
        ({}, "body", "at least one of name, filter, status"),
        ({"status": "DELETED"}, "status", "status must be one of ACTIVE, PAUSED, got 'DELETED'"),
        ({"status": "paused"}, "status", "one of ACTIVE, PAUSED"),
        ({"status": None}, "status", "got null"),
        ({"name": None}, "name", "must be a string, got null"),
        ({"name": ""}, "name", "must not be empty"),
        ({"format": "avro"}, "format", "cannot be changed after creation"),
        ({"partitions": 2}, "partitions", "cannot be changed after creation"),
        ({"id": "x", "name": "n"}, "id", "set by the service and cannot be changed"),
        ({"name": "n", "nmae": "n"}, "nmae", "not a known field; allowed: name, filter, status"),
        ({"filter": {"min_qty": 1.5}}, "filter.min_qty", "binary floats"),
    ],
)
def test_patch_refuses_bad_bodies_naming_the_field(body: object, field: str, fragment: str) -> None:
    error = invalid(parse_patch, body)
    assert error.field == field
    assert fragment in error.message


def test_apply_patch_changes_the_fields_and_bumps_the_version() -> None:
    subscription = make_subscription()
    later = T0 + timedelta(minutes=5)
    new_filter = Filter(accounts=frozenset({"A"}))
    patched = apply_patch(
        subscription,
        PatchRequest(name="renamed", filter=new_filter, status=SubscriptionStatus.PAUSED),
        later,
    )
    assert (patched.name, patched.filter, patched.status) == (
        "renamed",
        new_filter,
        SubscriptionStatus.PAUSED,
    )
    assert patched.version == 2
    assert patched.updated_at == later
    assert patched.created_at == T0
    assert (patched.id, patched.topic, patched.token_hash) == (
        subscription.id,
        subscription.topic,
        subscription.token_hash,
    )
    again = apply_patch(patched, PatchRequest(status=SubscriptionStatus.ACTIVE), later)
    assert again.version == 3 and again.is_active


def test_a_patch_that_changes_nothing_is_a_no_op() -> None:
    subscription = make_subscription()
    patch = PatchRequest(name=subscription.name, status=SubscriptionStatus.ACTIVE)
    assert apply_patch(subscription, patch, T0 + timedelta(hours=1)) is subscription


def test_updated_at_never_goes_backwards() -> None:
    subscription = dataclasses.replace(make_subscription(), updated_at=T0 + timedelta(hours=1))
    patched = apply_patch(subscription, PatchRequest(name="other"), T0)
    assert patched.updated_at == T0 + timedelta(hours=1)


# --- tokens ---------------------------------------------------------------------------------


def test_hash_token_is_hex_sha256() -> None:
    assert hash_token("abc") == ("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    assert hash_token(TOKEN) == hashlib.sha256(TOKEN.encode()).hexdigest()


@pytest.mark.parametrize(
    ("token", "stored", "expected"),
    [
        (TOKEN, hash_token(TOKEN), True),
        ("tok-other", hash_token(TOKEN), False),
        (TOKEN, hash_token(TOKEN).upper(), False),
        (TOKEN, TOKEN, False),  # a stored raw token never authenticates
        (TOKEN, "", False),
        (TOKEN, "é\udc80", False),  # garbage in storage: no exception in the auth path
        ("\udc80", hash_token("\udc80"), True),
    ],
)
def test_token_matches(token: str, stored: str, expected: bool) -> None:
    assert token_matches(token, stored) is expected


# --- filter.expr and fields (projection) ----------------------------------------------------


def test_an_expression_is_parsed_compiled_and_round_trips() -> None:
    source = 'symbol in ["AAPL", "MSFT"] && last_qty * last_px >= 1000000'
    parsed = Filter.parse({"expr": source})
    assert parsed.expr is not None and parsed.expr.source == source
    assert parsed.to_dict()["expr"] == source
    assert Filter.parse(parsed.to_dict()) == parsed
    assert Filter.from_dict(parsed.to_dict()) == parsed
    assert not parsed.matches_all
    assert Filter.parse({"expr": None}) == Filter()


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("symbol >", "Syntax error"),
        ("nope == 1", "undeclared reference"),
        ("symbol", "boolean"),
        (42, "must be a string"),
        ("", "must not be empty"),
    ],
)
def test_an_invalid_expression_names_filter_expr(expr: object, fragment: str) -> None:
    error = invalid(Filter.parse, {"expr": expr})
    assert error.field == "filter.expr"
    assert error.message.startswith("filter.expr")
    assert fragment in error.message


def test_fields_are_validated_and_kept_in_contract_order() -> None:
    request = parse_create({"name": "n", "fields": ["last_px", "order_id", "last_qty"]})
    assert request.fields == ("order_id", "last_qty", "last_px")
    subscription = new_subscription(
        request, subscription_id="s-1", token_hash=hash_token(TOKEN), now=T0
    )
    assert subscription.to_dict()["fields"] == ["order_id", "last_qty", "last_px"]
    stored = subscription.to_dict(include_secret=True)
    assert Subscription.from_dict(stored) == subscription
    del stored["fields"]  # written before projections existed
    assert Subscription.from_dict(stored).fields is None
    assert parse_create({"name": "n", "fields": None}).fields is None


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"fields": ["order_id", "nope"]}, "fields[1]", "must be a confirmation field"),
        ({"fields": ["seq", "seq"]}, "fields[1]", "repeats"),
        ({"fields": []}, "fields", "at least one"),
        ({"fields": "seq"}, "fields", "must be a list"),
        ({"fields": ["seq"], "format": "avro"}, "fields", "json only"),
    ],
)
def test_bad_fields_are_refused_by_name(body: dict[str, object], field: str, fragment: str) -> None:
    error = invalid(parse_create, {"name": "n", **body})
    assert error.field == field
    assert fragment in error.message


def test_fields_cannot_be_patched() -> None:
    error = invalid(parse_patch, {"fields": ["seq"]})
    assert error.field == "fields"
    assert "cannot be changed after creation" in error.message


# --- dry-run requests ------------------------------------------------------------------------


def test_a_dry_run_request_is_parsed_with_defaults() -> None:
    parsed = parse_dry_run({"since": "2024-05-01T13:30:00Z"})
    assert parsed.since == T0
    assert parsed.filter == Filter()
    assert parsed.max_records == DRY_RUN_DEFAULT_RECORDS
    full = parse_dry_run(
        {
            "since": "2024-05-01T15:30:00+02:00",
            "filter": {"symbols": ["AAPL"], "expr": "last_qty > 5"},
            "max_records": DRY_RUN_MAX_RECORDS,
        }
    )
    assert full.since == T0
    assert full.filter.expr is not None
    assert full.max_records == DRY_RUN_MAX_RECORDS


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({}, "since", "required"),
        ({"since": "yesterday"}, "since", "ISO-8601"),
        ({"since": "2024-05-01T13:30:00"}, "since", "zone"),
        ({"since": 1714570200}, "since", "ISO-8601"),
        ({"since": "2024-05-01T13:30:00Z", "max_records": 0}, "max_records", "from 1"),
        ({"since": "2024-05-01T13:30:00Z", "max_records": 10**7}, "max_records", "from 1"),
        ({"since": "2024-05-01T13:30:00Z", "max_records": True}, "max_records", "from 1"),
        ({"since": "2024-05-01T13:30:00Z", "filter": {"expr": "x"}}, "filter.expr", "undeclared"),
        ({"since": "2024-05-01T13:30:00Z", "name": "n"}, "name", "not a known field"),
    ],
)
def test_bad_dry_run_requests_name_the_field(
    body: dict[str, object], field: str, fragment: str
) -> None:
    error = invalid(parse_dry_run, body)
    assert error.field == field
    assert fragment in error.message


# --- delivery: kafka or webhook --------------------------------------------------------------


def test_a_webhook_delivery_is_kept_with_its_secret_and_shown_without_it() -> None:
    request = parse_create(
        {
            "name": "hooked",
            "delivery": {"type": "webhook", "url": "https://hooks.example/x", "secret": "s" * 16},
        }
    )
    subscription = new_subscription(
        request, subscription_id="hook-1", token_hash=hash_token(TOKEN), now=T0
    )
    assert subscription.to_dict()["delivery"] == {
        "type": "webhook",
        "url": "https://hooks.example/x",
    }
    stored = subscription.to_dict(include_secret=True)
    assert stored["delivery"] == {
        "type": "webhook",
        "url": "https://hooks.example/x",
        "secret": "s" * 16,
    }
    assert Subscription.from_dict(stored) == subscription
    assert parse_create({"name": "plain", "delivery": {"type": "kafka"}}).delivery is None


@pytest.mark.parametrize(
    ("delivery", "field"),
    [
        ({"type": "email"}, "delivery.type"),
        ({"type": "webhook", "url": "ftp://x", "secret": "s" * 16}, "delivery.url"),
        ({"type": "webhook", "url": "https://x", "secret": "short"}, "delivery.secret"),
        (
            {"type": "webhook", "url": "https://x", "secret": "s" * 16, "retries": 3},
            "delivery.retries",
        ),
        ("webhook", "delivery"),
    ],
)
def test_an_invalid_delivery_names_its_field(delivery: object, field: str) -> None:
    with pytest.raises(InvalidSubscription) as refused:
        parse_create({"name": "x", "delivery": delivery})
    assert refused.value.field == field


def test_a_webhook_subscription_has_one_partition() -> None:
    with pytest.raises(InvalidSubscription) as refused:
        parse_create(
            {
                "name": "x",
                "partitions": 2,
                "delivery": {"type": "webhook", "url": "https://x", "secret": "s" * 16},
            }
        )
    assert refused.value.field == "delivery"
