"""The API description: valid OpenAPI 3.0.3, complete, and in agreement with the domain.

schemathesis fuzzes the service against ``execdist/web/openapi.json``, so the document must
say exactly what the service does: every contract endpoint, the auth of each, the one error
shape, and response schemas that the domain's own JSON forms satisfy.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, cast

import faust
import pytest
from aiohttp.test_utils import TestClient, TestServer
from faust.web.drivers.aiohttp import Web as AiohttpWeb
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from openapi_spec_validator import validate as validate_spec

from execdist.domain import (
    Confirmation,
    Confirmed,
    ExecType,
    Execution,
    Order,
    OrderState,
    OrderStatus,
    OrderType,
    Side,
    access,
    apply_execution,
    apply_order,
    audit,
    book,
    order_view,
)
from execdist.domain import subscriptions as subs
from execdist.domain.positions import position_view
from execdist.web.docs import DOCS_PAGE, OPENAPI_DOCUMENT, register_docs

SPEC: dict[str, Any] = json.loads(OPENAPI_DOCUMENT.read_text(encoding="utf-8"))
SCHEMAS: dict[str, Any] = SPEC["components"]["schemas"]
ERROR_REF = "#/components/schemas/Error"
T0 = datetime(2024, 5, 1, 13, 30, tzinfo=UTC)

CONTRACT_OPERATIONS = {
    ("post", "/api/v1/subscriptions"),
    ("post", "/api/v1/subscriptions/dry-run"),
    ("get", "/api/v1/subscriptions"),
    ("get", "/api/v1/subscriptions/{id}"),
    ("patch", "/api/v1/subscriptions/{id}"),
    ("delete", "/api/v1/subscriptions/{id}"),
    ("get", "/api/v1/subscriptions/{id}/status"),
    ("get", "/api/v1/subscriptions/{id}/audit"),
    ("get", "/api/v1/subscriptions/{id}/reconcile"),
    ("get", "/api/v1/analytics"),
    ("get", "/api/v1/subscriptions/{id}/stream"),
    ("get", "/api/v1/subscriptions/{id}/events"),
    ("post", "/api/v1/tokens"),
    ("get", "/api/v1/tokens"),
    ("delete", "/api/v1/tokens/{id}"),
    ("get", "/api/v1/orders"),
    ("get", "/api/v1/orders/{order_id}"),
    ("get", "/api/v1/orders/{order_id}/confirmations"),
    ("get", "/api/v1/positions"),
    ("get", "/api/v1/positions/{account}"),
    ("get", "/api/v1/status"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/docs"),
    ("get", "/metrics"),
    ("get", "/health/live"),
    ("get", "/health/ready"),
    ("get", "/"),
}
PUBLIC_PATHS = {"/health/live", "/health/ready", "/metrics", "/docs", "/api/v1/openapi.json", "/"}
STREAM_PATHS = {"/api/v1/subscriptions/{id}/stream", "/api/v1/subscriptions/{id}/events"}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in SPEC["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = SPEC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def conforms(instance: object, schema_name: str) -> None:
    """Validate ``instance`` against a component schema, as a response validator would."""
    schema = {
        "components": SPEC["components"],
        "allOf": [{"$ref": f"#/components/schemas/{schema_name}"}],
    }
    OAS30Validator(schema, format_checker=oas30_format_checker).validate(instance)


def property_names(schema_name: str) -> list[str]:
    return list(SCHEMAS[schema_name]["properties"])


# --- the document as a whole ---------------------------------------------------------------


def test_the_document_is_valid_openapi_3_0_3() -> None:
    assert SPEC["openapi"] == "3.0.3"
    validate_spec(SPEC)


def test_every_contract_endpoint_is_described_and_nothing_else() -> None:
    assert {(method, path) for method, path, _ in operations()} == CONTRACT_OPERATIONS


def test_operation_ids_are_unique() -> None:
    ids = [operation["operationId"] for _, _, operation in operations()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(("method", "path"), sorted(CONTRACT_OPERATIONS))
def test_every_operation_but_the_public_ones_declares_security(method: str, path: str) -> None:
    operation = SPEC["paths"][path][method]
    assert "security" in operation, "say it explicitly, even when it is []"
    if path in PUBLIC_PATHS:
        assert operation["security"] == []
        return
    schemes = [name for requirement in operation["security"] for name in requirement]
    assert "bearerAuth" in schemes
    assert set(schemes) <= set(SPEC["components"]["securitySchemes"])
    # ?token= is for the streams only: browsers cannot set headers on WebSocket/EventSource.
    assert ("tokenQuery" in schemes) == (path in STREAM_PATHS)
    statuses = set(operation["responses"])
    assert {"401", "403"} <= statuses


def test_the_security_schemes_are_bearer_and_the_token_query_parameter() -> None:
    schemes = SPEC["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == schemes["bearerAuth"] | {"type": "http", "scheme": "bearer"}
    assert schemes["tokenQuery"] | {"in": "query", "name": "token"} == schemes["tokenQuery"]


@pytest.mark.parametrize(("method", "path"), sorted(CONTRACT_OPERATIONS))
def test_every_error_response_uses_the_error_schema(method: str, path: str) -> None:
    for status, response in SPEC["paths"][path][method]["responses"].items():
        if status[0] not in "45":
            continue
        content = resolve(response)["content"]
        assert list(content) == ["application/json"], f"{method} {path} {status}"
        schema = content["application/json"]["schema"]
        assert schema == {"$ref": ERROR_REF}, f"{method} {path} {status}"


def test_the_error_schema_is_the_contract_error_object() -> None:
    error = SCHEMAS["Error"]
    assert error["required"] == ["error"]
    inner = error["properties"]["error"]
    assert list(inner["properties"]) == ["code", "message", "field"]
    assert inner["required"] == ["code", "message"]


def test_every_operation_is_tagged_with_a_declared_tag() -> None:
    declared = {tag["name"] for tag in SPEC["tags"]}
    for method, path, operation in operations():
        assert operation.get("tags"), f"{method} {path}"
        assert set(operation["tags"]) <= declared


def test_request_bodies_are_closed_objects() -> None:
    for name in ("SubscriptionCreate", "SubscriptionPatch", "Filter", "TokenCreate"):
        assert SCHEMAS[name]["additionalProperties"] is False, name
    assert SCHEMAS["SubscriptionCreate"]["required"] == ["name"]
    assert SCHEMAS["SubscriptionPatch"]["minProperties"] == 1


# --- agreement with the domain ---------------------------------------------------------------


def test_the_confirmation_schema_lists_the_confirmation_fields_in_order() -> None:
    assert property_names("Confirmation") == [f.name for f in dataclasses.fields(Confirmation)]
    assert SCHEMAS["Confirmation"]["required"] == property_names("Confirmation")


def test_the_order_and_execution_schemas_list_their_fields_in_order() -> None:
    assert property_names("Order") == [f.name for f in dataclasses.fields(Order)]
    assert property_names("Execution") == [f.name for f in dataclasses.fields(Execution)]
    assert property_names("HeldExecution") == [*property_names("Execution"), "held_since"]


def test_the_subscription_schemas_list_the_public_fields() -> None:
    public = [f.name for f in dataclasses.fields(subs.Subscription) if f.name != "token_hash"]
    assert property_names("Subscription") == public
    assert property_names("SubscriptionWithToken") == [*public, "token"]
    assert property_names("Filter") == [f.name for f in dataclasses.fields(subs.Filter)]
    assert "token_hash" not in json.dumps(SCHEMAS)


@pytest.mark.parametrize(
    ("schema_name", "enum_type"),
    [
        ("Side", Side),
        ("ExecType", ExecType),
        ("OrderType", OrderType),
        ("OrderStatus", OrderStatus),
        ("SubscriptionStatus", subs.SubscriptionStatus),
        ("OutputFormat", subs.OutputFormat),
        ("AuditAction", audit.AuditAction),
    ],
)
def test_enums_match_the_domain(schema_name: str, enum_type: type[StrEnum]) -> None:
    assert SCHEMAS[schema_name]["enum"] == [member.value for member in enum_type]


def test_request_limits_match_the_domain() -> None:
    create = SCHEMAS["SubscriptionCreate"]["properties"]
    assert create["name"]["maxLength"] == subs.MAX_NAME_LENGTH
    assert create["partitions"]["maximum"] == subs.MAX_PARTITIONS
    for key in ("accounts", "symbols", "venues", "sides", "exec_types"):
        values = SCHEMAS["Filter"]["properties"][key]
        assert values["maxItems"] == subs.MAX_FILTER_VALUES
    assert SCHEMAS["Filter"]["properties"]["accounts"]["items"]["maxLength"] == (
        subs.MAX_FILTER_VALUE_LENGTH
    )


def test_the_request_examples_are_accepted_by_the_domain_and_the_schemas() -> None:
    create = SCHEMAS["SubscriptionCreate"]["example"]
    patch = SCHEMAS["SubscriptionPatch"]["example"]
    conforms(create, "SubscriptionCreate")
    conforms(patch, "SubscriptionPatch")
    subs.parse_create(create)
    subs.parse_patch(patch)
    # null is a valid filter (it matches everything) in both bodies.
    conforms({"name": "desk", "filter": None}, "SubscriptionCreate")
    conforms({"filter": None}, "SubscriptionPatch")


def test_every_schema_example_conforms_to_its_schema() -> None:
    for name, schema in SCHEMAS.items():
        if "example" in schema:
            conforms(schema["example"], name)


def order(**changes: object) -> Order:
    fields: dict[str, Any] = {
        "order_id": "ORD-1",
        "account": "ACC-1",
        "symbol": "AAPL",
        "side": Side.BUY,
        "quantity": Decimal(100),
        "order_type": OrderType.LIMIT,
        "limit_price": Decimal("190.5"),
        "currency": "USD",
        "version": 1,
        "event_time": T0,
    }
    return Order(**(fields | changes))


def execution(seq: int, **changes: object) -> Execution:
    fields: dict[str, Any] = {
        "exec_id": f"EX-{seq}",
        "order_id": "ORD-1",
        "seq": seq,
        "exec_type": ExecType.TRADE,
        "ref_exec_id": None,
        "last_qty": Decimal(40),
        "last_px": Decimal("187.45"),
        "venue": "XNAS",
        "exec_time": T0 + timedelta(seconds=seq),
    }
    return Execution(**(fields | changes))


def test_order_views_conform_to_the_order_state_schema() -> None:
    waiting = OrderState(order_id="ORD-1", last_activity=T0)
    apply_execution(waiting, execution(1), origin=None, now=T0)
    conforms(order_view(waiting), "OrderState")  # no order yet: nulls everywhere

    state = OrderState(order_id="ORD-1", last_activity=T0)
    apply_order(state, order(), now=T0)
    outputs = apply_execution(state, execution(1), origin=None, now=T0).outputs
    apply_execution(state, execution(3), origin=None, now=T0)  # held behind the gap at 2
    view = order_view(state)
    assert view["held_executions"]
    conforms(view, "OrderState")
    assert list(view) == property_names("OrderState")

    items = [output.confirmation.to_dict() for output in outputs if isinstance(output, Confirmed)]
    assert items
    conforms({"order_id": "ORD-1", "items": items}, "OrderConfirmations")


def test_subscription_forms_conform() -> None:
    request = subs.parse_create(
        {"name": "desk", "filter": {"sides": ["BUY"], "min_qty": "10.5"}, "format": "avro"}
    )
    subscription = subs.new_subscription(
        request, subscription_id="s-1", token_hash=subs.hash_token("t"), now=T0
    )
    public = subscription.to_dict()
    conforms(public, "Subscription")
    conforms({**public, "token": "t"}, "SubscriptionWithToken")
    conforms({"items": [public], "next_cursor": None}, "SubscriptionPage")
    # A filter read back from a response is a valid request filter.
    conforms({"filter": public["filter"]}, "SubscriptionPatch")


def test_the_audit_schemas_match_the_audit_entries() -> None:
    created = subs.new_subscription(
        subs.parse_create({"name": "desk", "filter": {"min_qty": "10"}}),
        subscription_id="s-1",
        token_hash=subs.hash_token("t"),
        now=T0,
    )
    paused = subs.apply_patch(
        created,
        subs.parse_patch({"status": "PAUSED", "filter": {"symbols": ["AAPL"]}}),
        T0 + timedelta(seconds=1),
    )
    items = [
        audit.record_change(before, after, actor=access.ENV_ADMIN_ID, now=T0).to_dict()
        for before, after in ((None, created), (created, paused), (paused, None))
    ]
    for item in items:
        conforms(item, "AuditEntry")
        assert list(item) == property_names("AuditEntry")
    conforms({"items": items, "next_cursor": "MQ"}, "AuditPage")
    assert property_names("AuditState") == list(audit.audited_state(created))
    assert "token" not in json.dumps(items)


def test_the_token_schemas_match_the_issued_tokens() -> None:
    record = access.new_api_token(
        access.parse_token_request(SCHEMAS["TokenCreate"]["example"]),
        token_id="tok_00112233445566ff",
        token_hash=subs.hash_token("edt_x"),
        now=T0,
    )
    public = record.to_dict()
    conforms(public, "Token")
    assert property_names("Token") == list(public)
    conforms({**public, "token": "edt_x"}, "TokenWithToken")
    assert property_names("TokenWithToken") == [*public, "token"]
    conforms({"items": [public], "next_cursor": None}, "TokenPage")
    assert SCHEMAS["TokenScope"]["enum"] == [access.Scope.ADMIN, access.Scope.ANALYST]
    assert SCHEMAS["TokenCreate"]["properties"]["name"]["maxLength"] == (
        access.MAX_TOKEN_NAME_LENGTH
    )
    for scope in ("subscription", "root"):
        with pytest.raises(access.InvalidTokenRequest):
            access.parse_token_request({"scope": scope, "name": "x"})


def test_position_views_conform() -> None:
    figures = {
        "bought_qty": "100",
        "bought_notional": "18745",
        "sold_qty": "40.5",
        "sold_notional": "7591.725",
    }
    view = position_view("ACC-1", {"AAPL": figures})
    conforms(view, "Positions")
    assert list(view["positions"][0]) == property_names("Position")  # type: ignore[index]


def test_book_pages_conform() -> None:
    state = OrderState(order_id="ORD-1", last_activity=T0)
    apply_order(state, order(), now=T0)
    orders = book.Page([order_view(state)], "b3JkZXI", [2]).to_dict()
    conforms(orders, "OrderPage")
    assert property_names("OrderPage") == list(orders)
    figures = {"bought_qty": "1", "bought_notional": "2", "sold_qty": "0", "sold_notional": "0"}
    positions = book.Page([position_view("ACC-1", {"AAPL": figures})], None).to_dict()
    conforms(positions, "PositionPage")
    for path in ("/api/v1/orders", "/api/v1/positions"):
        limit = next(p for p in SPEC["paths"][path]["get"]["parameters"] if p["name"] == "limit")
        assert limit["schema"]["maximum"] == book.MAX_LIMIT
        assert limit["schema"]["default"] == book.DEFAULT_LIMIT


def test_the_decimal_pattern_matches_the_canonical_decimal_form() -> None:
    pattern = re.compile(SCHEMAS["DecimalString"]["pattern"])
    for text in ("0", "100", "187.45", "-3.5", "0.00000001"):
        assert pattern.fullmatch(text)
    for text in ("1e5", "1.", ".5", "NaN", " 1", "+1"):
        assert not pattern.fullmatch(text)


# --- the docs views --------------------------------------------------------------------------


def test_the_docs_page_loads_nothing_from_outside() -> None:
    page = DOCS_PAGE.read_text(encoding="utf-8")
    assert "/api/v1/openapi.json" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.IGNORECASE)
    assert not re.search(r"""fetch\(\s*["'](https?:)?//""", page)
    assert "@import" not in page


async def test_register_docs_serves_the_description_and_the_page() -> None:
    app = faust.App("docs-test", web_enabled=True, store="memory://")
    register_docs(app)
    server = TestServer(cast(AiohttpWeb, app.web).web_app)
    async with TestClient(server) as client:
        response = await client.get("/api/v1/openapi.json")
        assert response.status == 200
        assert response.content_type == "application/json"
        assert await response.json() == SPEC

        response = await client.get("/docs")
        assert response.status == 200
        assert response.content_type == "text/html"
        assert await response.read() == DOCS_PAGE.read_bytes()
