"""Subscriptions: what a subscriber asked to receive, and the pure rules for changing it.

A subscription names a :class:`Filter` over confirmations, an output format and a status. The
REST layer turns untrusted JSON into requests with :func:`parse_create` / :func:`parse_patch`,
builds or changes the record with :func:`new_subscription` / :func:`apply_patch`, and keeps
only :func:`hash_token` of the subscription's token. Every refusal is an
:class:`InvalidSubscription` whose ``field`` is a dotted path into the request body
(``name``, ``filter.sides[1]``, ``body`` for the body as a whole) and whose message says what
is allowed, ready for ``{"error": {"code", "message", "field"}}``.

Filter semantics (the contract): a list matches any of its values, fields combine with AND,
a missing, null or empty field matches all; ``min_qty`` matches a confirmation whose
``last_qty`` is at least that quantity; ``expr``, a CEL expression over the confirmation's
fields (:mod:`execdist.domain.expressions`), must hold too.

JSON form of a filter, identical in responses and in stored state::

    {"accounts": [...], "symbols": [...], "venues": [...], "sides": [...],
     "exec_types": [...], "min_qty": "100" | null, "expr": "<CEL>" | null}

lists sorted, enums as their names, ``min_qty`` a canonical decimal string. A filter written
this way parses back to an equal filter, so a client may PUT back what it read.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Final, TypeVar

from execdist.domain.errors import DomainError
from execdist.domain.expressions import Expression, InvalidExpression, compile_expression
from execdist.domain.model import (
    Confirmation,
    ExecType,
    Side,
    format_decimal,
    format_time,
    parse_stored_decimal,
    parse_stored_time,
)
from execdist.domain.validation import MAX_FRACTION_DIGITS, MAX_ID_LENGTH, MAX_INTEGER_DIGITS

__all__ = [
    "CONFIRMATION_FIELDS",
    "DRY_RUN_DEFAULT_RECORDS",
    "DRY_RUN_MAX_RECORDS",
    "MAX_FILTER_VALUES",
    "MAX_FILTER_VALUE_LENGTH",
    "MAX_NAME_LENGTH",
    "MAX_PARTITIONS",
    "SUBSCRIPTION_TOPIC_PREFIX",
    "CreateRequest",
    "DryRunRequest",
    "Filter",
    "InvalidSubscription",
    "OutputFormat",
    "PatchRequest",
    "Subscription",
    "SubscriptionStatus",
    "apply_patch",
    "hash_token",
    "new_subscription",
    "parse_create",
    "parse_dry_run",
    "parse_fields",
    "parse_patch",
    "token_matches",
    "topic_for",
]

MAX_FILTER_VALUES: Final = 1000
"""Most values one filter list may hold; bounds the index and the request size."""
MAX_FILTER_VALUE_LENGTH: Final = MAX_ID_LENGTH
"""A filter value longer than the longest accepted identifier could never match."""
MAX_NAME_LENGTH: Final = 200
MAX_PARTITIONS: Final = 64
"""Partitions of a subscription's output topic: 1 to this many."""
SUBSCRIPTION_TOPIC_PREFIX: Final = "execdist.sub."

_MAX_DECIMAL_TEXT = 64
"""Longest min_qty string looked at; anything longer cannot be a decimal(26,8) anyway."""
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Kafka topic names allow [a-zA-Z0-9._-] up to 249 characters, and the id becomes part of one.
_MAX_ID_LENGTH = 249 - len(SUBSCRIPTION_TOPIC_PREFIX)
_SUBSCRIPTION_ID = re.compile(rf"[A-Za-z0-9._-]{{1,{_MAX_ID_LENGTH}}}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_FILTER_KEYS: Final = (
    "accounts",
    "symbols",
    "venues",
    "sides",
    "exec_types",
    "min_qty",
    "expr",
)
_CREATE_KEYS: Final = (
    "name",
    "filter",
    "format",
    "partitions",
    "fields",
    "backfill_from",
    "consumer_group",
    "delivery",
)
CONFIRMATION_FIELDS: Final = tuple(field.name for field in fields(Confirmation))
"""The names ``fields`` (a projection) may list, in the contract's order."""
_PATCH_KEYS: Final = ("name", "filter", "status")
_DRY_RUN_KEYS: Final = ("filter", "since", "max_records")
DRY_RUN_DEFAULT_RECORDS: Final = 100_000
DRY_RUN_MAX_RECORDS: Final = 1_000_000
"""A dry-run scans at most this many confirmations (and for a few seconds at most)."""
_MAX_TIME_TEXT = 64
_SERVICE_SET_KEYS: Final = (
    "id",
    "topic",
    "status",
    "created_at",
    "updated_at",
    "token",
    "token_hash",
    "version",
)
_CREATE_REASONS: Final = {
    **{key: "is set by the service and cannot be given" for key in _SERVICE_SET_KEYS},
    "status": "cannot be given: a new subscription is ACTIVE (PATCH it to PAUSED)",
}
_PATCH_REASONS: Final = {
    **{key: "is set by the service and cannot be changed" for key in _SERVICE_SET_KEYS},
    "format": "cannot be changed after creation",
    "partitions": "cannot be changed after creation",
    "fields": "cannot be changed after creation: a topic's records keep one shape",
    "backfill_from": "is given at creation only",
    "consumer_group": "is given at creation only",
    "delivery": "is given at creation only",
}
_BODY = "body"
"""The ``field`` of an error about the request body as a whole."""

_E = TypeVar("_E", bound=StrEnum)


class InvalidSubscription(DomainError):
    """A subscription request breaks the rules; the REST layer answers 400.

    ``field`` is the dotted path of the offending value in the request body (``"name"``,
    ``"filter.sides[1]"``), or ``"body"`` when the body as a whole is wrong; ``message``
    starts with that path and says which values are allowed.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def __repr__(self) -> str:
        return f"InvalidSubscription(field={self.field!r}, message={self.message!r})"


class SubscriptionStatus(StrEnum):
    """Whether a subscription receives confirmations; a PAUSED one keeps its topic and token."""

    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"


class OutputFormat(StrEnum):
    """How confirmations are written to the subscription's topic."""

    JSON = "json"
    AVRO = "avro"
    """Confluent wire format with the schema registry, like the inputs."""


@dataclass(frozen=True, slots=True)
class Filter:
    """Which confirmations a subscription wants. The default filter matches every one."""

    accounts: frozenset[str] = frozenset()
    """Any of these accounts; empty matches all."""
    symbols: frozenset[str] = frozenset()
    """Any of these symbols; empty matches all."""
    venues: frozenset[str] = frozenset()
    """Any of these venues; empty matches all."""
    sides: frozenset[Side] = frozenset()
    """Any of these sides; empty matches all."""
    exec_types: frozenset[ExecType] = frozenset()
    """Any of these execution types; empty matches all."""
    min_qty: Decimal | None = None
    """Only confirmations with ``last_qty >= min_qty``; ``None`` matches all."""
    expr: Expression | None = None
    """Only confirmations for which this CEL expression is true; ``None`` matches all."""

    def matches(self, confirmation: Confirmation) -> bool:
        """The reference semantics; :class:`~execdist.domain.routing.SubscriptionIndex` agrees.

        Raises :class:`~execdist.domain.expressions.EvaluationError` when ``expr`` cannot be
        evaluated on this confirmation (the router counts that and does not deliver it).
        """
        return (
            (not self.accounts or confirmation.account in self.accounts)
            and (not self.symbols or confirmation.symbol in self.symbols)
            and (not self.venues or confirmation.venue in self.venues)
            and (not self.sides or confirmation.side in self.sides)
            and (not self.exec_types or confirmation.exec_type in self.exec_types)
            and (self.min_qty is None or confirmation.last_qty >= self.min_qty)
            and (self.expr is None or self.expr.matches(confirmation))
        )

    @property
    def matches_all(self) -> bool:
        """True when no field restricts anything (``min_qty`` 0 still counts as a restriction)."""
        return not (
            self.accounts
            or self.symbols
            or self.venues
            or self.sides
            or self.exec_types
            or self.min_qty is not None
            or self.expr is not None
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form: all seven keys, lists sorted, enums as names, min_qty a string,
        expr the text as written."""
        return {
            "accounts": sorted(self.accounts),
            "symbols": sorted(self.symbols),
            "venues": sorted(self.venues),
            "sides": sorted(side.name for side in self.sides),
            "exec_types": sorted(exec_type.name for exec_type in self.exec_types),
            "min_qty": None if self.min_qty is None else format_decimal(self.min_qty),
            "expr": None if self.expr is None else self.expr.source,
        }

    @classmethod
    def parse(cls, data: object, *, path: str = "filter") -> Filter:
        """Validate an untrusted JSON filter; ``None`` (absent) matches all.

        ``path`` prefixes the ``field`` of any :class:`InvalidSubscription` raised.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise InvalidSubscription(
                path, f"{path} must be a JSON object or null, got {_json_type(data)}"
            )
        _reject_unknown_keys(data, _FILTER_KEYS, path)
        return cls(
            accounts=_string_set(data.get("accounts"), f"{path}.accounts"),
            symbols=_string_set(data.get("symbols"), f"{path}.symbols"),
            venues=_string_set(data.get("venues"), f"{path}.venues"),
            sides=_enum_set(data.get("sides"), f"{path}.sides", Side),
            exec_types=_enum_set(data.get("exec_types"), f"{path}.exec_types", ExecType),
            min_qty=_min_qty(data.get("min_qty"), f"{path}.min_qty"),
            expr=_expr(data.get("expr"), f"{path}.expr"),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Filter:
        """Read back :meth:`to_dict` output (trusted: shape is checked, request limits are not,
        so a later, stricter limit never makes a stored subscription unreadable)."""
        min_qty = data.get("min_qty")
        expr = data.get("expr")
        if expr is not None and not isinstance(expr, str):
            raise TypeError(f"expr: expected a string, got {type(expr).__name__}")
        return cls(
            accounts=frozenset(_stored_strings(data, "accounts")),
            symbols=frozenset(_stored_strings(data, "symbols")),
            venues=frozenset(_stored_strings(data, "venues")),
            sides=frozenset(Side[name] for name in _stored_strings(data, "sides")),
            exec_types=frozenset(ExecType[name] for name in _stored_strings(data, "exec_types")),
            min_qty=None if min_qty is None else parse_stored_decimal(min_qty),
            expr=None if expr is None else compile_expression(expr),
        )


@dataclass(frozen=True, slots=True)
class Webhook:
    """Where a webhook subscription's records are POSTed, and the secret that signs them."""

    url: str
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Subscription:
    """One subscription as stored and replicated to every worker."""

    id: str
    """Chosen by the service; safe as part of a Kafka topic name."""
    name: str
    """The subscriber's label, 1 to 200 characters."""
    filter: Filter
    format: OutputFormat
    status: SubscriptionStatus
    topic: str
    """``execdist.sub.<id>``: where this subscription's confirmations are written."""
    partitions: int
    """Partitions of ``topic``, fixed at creation."""
    created_at: datetime
    updated_at: datetime
    """Aware, UTC; never earlier than ``created_at``."""
    token_hash: str = field(repr=False)
    """Hex sha256 of the subscription's token (:func:`hash_token`); the token is never kept."""
    version: int
    """1 at creation, one more on each change."""
    fields: tuple[str, ...] | None = None
    """The confirmation fields its records carry, in the contract's order; ``None``: all."""
    backfill_from: datetime | None = None
    """Confirmed at or after this time, the confirmations it matches are delivered first
    (from each order's confirmation history), then live ones; ``None``: live ones only."""
    consumer_group: str | None = None
    """The Kafka consumer group the downstream reads the topic with: its committed offsets
    are the subscription's acknowledged ``sub_seq``."""
    delivery: Webhook | None = None
    """Where its records are also POSTed (``delivery`` type ``webhook``); ``None``: its
    Kafka topic only (type ``kafka``)."""

    @property
    def is_active(self) -> bool:
        return self.status is SubscriptionStatus.ACTIVE

    def to_dict(self, *, include_secret: bool = False) -> dict[str, object]:
        """JSON-ready form. The public form (API responses, status events) omits
        ``token_hash``; ``include_secret=True`` gives the stored form."""
        data: dict[str, object] = {
            "id": self.id,
            "name": self.name,
            "filter": self.filter.to_dict(),
            "format": self.format.value,
            "status": self.status.value,
            "topic": self.topic,
            "partitions": self.partitions,
            "created_at": format_time(self.created_at),
            "updated_at": format_time(self.updated_at),
            "version": self.version,
            "fields": None if self.fields is None else list(self.fields),
            "backfill_from": None
            if self.backfill_from is None
            else format_time(self.backfill_from),
            "consumer_group": self.consumer_group,
            "delivery": {"type": "kafka"}
            if self.delivery is None
            else {"type": "webhook", "url": self.delivery.url},
        }
        if include_secret:
            data["token_hash"] = self.token_hash
            if self.delivery is not None:
                data["delivery"] = {
                    "type": "webhook",
                    "url": self.delivery.url,
                    "secret": self.delivery.secret,
                }
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Subscription:
        """Read back the stored form, ``to_dict(include_secret=True)`` (trusted)."""
        filter_data = data["filter"]
        if not isinstance(filter_data, Mapping):
            raise TypeError(f"filter: expected an object, got {type(filter_data).__name__}")
        return cls(
            id=_stored_str(data, "id"),
            name=_stored_str(data, "name"),
            filter=Filter.from_dict(filter_data),
            format=OutputFormat(_stored_str(data, "format")),
            status=SubscriptionStatus(_stored_str(data, "status")),
            topic=_stored_str(data, "topic"),
            partitions=_stored_int(data, "partitions"),
            created_at=parse_stored_time(data["created_at"]),
            updated_at=parse_stored_time(data["updated_at"]),
            token_hash=_stored_str(data, "token_hash"),
            version=_stored_int(data, "version"),
            fields=None if data.get("fields") is None else tuple(_stored_strings(data, "fields")),
            backfill_from=None
            if data.get("backfill_from") is None
            else parse_stored_time(data["backfill_from"]),
            consumer_group=None
            if data.get("consumer_group") is None
            else _stored_str(data, "consumer_group"),
            delivery=_stored_webhook(data.get("delivery")),
        )


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """A validated ``POST /api/v1/subscriptions`` body."""

    name: str
    filter: Filter = Filter()
    format: OutputFormat = OutputFormat.JSON
    partitions: int = 1
    fields: tuple[str, ...] | None = None
    """A projection: only these confirmation fields; ``None``: all of them."""
    backfill_from: datetime | None = None
    consumer_group: str | None = None
    delivery: Webhook | None = None


@dataclass(frozen=True, slots=True)
class PatchRequest:
    """A validated ``PATCH /api/v1/subscriptions/{id}`` body; ``None`` leaves a field as is."""

    name: str | None = None
    filter: Filter | None = None
    """A new filter replaces the old one whole (``"filter": null`` or ``{}`` matches all)."""
    status: SubscriptionStatus | None = None


def parse_create(body: object) -> CreateRequest:
    """Validate a create body: ``name`` required; ``filter``, ``format`` (json),
    ``partitions`` (1) and ``fields`` (all) optional, null meaning the default; nothing else.

    ``fields`` is for JSON subscriptions: an Avro subscriber's records follow the one
    registered Confirmation schema, which a projection would break.
    """
    data = _require_body(body)
    _reject_unknown_keys(data, _CREATE_KEYS, "", _CREATE_REASONS)
    if data.get("name") is None:
        raise InvalidSubscription("name", "name is required: a label of 1 to 200 characters")
    output_format = OutputFormat.JSON if data.get("format") is None else _format(data["format"])
    projection = None if data.get("fields") is None else parse_fields(data["fields"])
    if projection is not None and output_format is not OutputFormat.JSON:
        raise InvalidSubscription(
            "fields",
            "fields (a projection) is available with format json only: Avro records follow "
            "the registered Confirmation schema whole",
        )
    partitions = 1 if data.get("partitions") is None else _partitions(data["partitions"])
    return CreateRequest(
        name=_name(data["name"]),
        filter=Filter.parse(data.get("filter")),
        format=output_format,
        partitions=partitions,
        fields=projection,
        backfill_from=None
        if data.get("backfill_from") is None
        else _time(data["backfill_from"], "backfill_from"),
        consumer_group=None
        if data.get("consumer_group") is None
        else _consumer_group(data["consumer_group"]),
        delivery=_delivery(data.get("delivery"), partitions),
    )


def parse_fields(value: object, path: str = "fields") -> tuple[str, ...]:
    """A projection: a non-empty list of distinct confirmation field names, returned in the
    contract's order whatever order they were given in."""
    if not isinstance(value, list | tuple):
        raise InvalidSubscription(path, f"{path} must be a list, got {_json_type(value)}")
    if not value:
        raise InvalidSubscription(path, f"{path} must name at least one field; null means all")
    seen: set[str] = set()
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        if not isinstance(item, str) or item not in CONFIRMATION_FIELDS:
            raise InvalidSubscription(
                where,
                f"{where} must be a confirmation field ({', '.join(CONFIRMATION_FIELDS)}), "
                f"got {_show(item)}",
            )
        if item in seen:
            raise InvalidSubscription(where, f"{where} repeats {item!r}")
        seen.add(item)
    return tuple(name for name in CONFIRMATION_FIELDS if name in seen)


def parse_patch(body: object) -> PatchRequest:
    """Validate a patch body: at least one of ``name``, ``filter``, ``status``; nothing else.

    A present ``filter`` replaces the whole filter; ``"filter": null`` therefore matches all.
    """
    data = _require_body(body)
    _reject_unknown_keys(data, _PATCH_KEYS, "", _PATCH_REASONS)
    if not any(key in data for key in _PATCH_KEYS):
        raise InvalidSubscription(
            _BODY, "a PATCH must change at least one of " + ", ".join(_PATCH_KEYS)
        )
    return PatchRequest(
        name=_name(data["name"]) if "name" in data else None,
        filter=Filter.parse(data["filter"]) if "filter" in data else None,
        status=_enum_value(data["status"], "status", SubscriptionStatus)
        if "status" in data
        else None,
    )


@dataclass(frozen=True, slots=True)
class DryRunRequest:
    """A validated ``POST /api/v1/subscriptions/dry-run`` body."""

    since: datetime
    """Aware; the scan starts at the first confirmation written at or after it."""
    filter: Filter = Filter()
    max_records: int = DRY_RUN_DEFAULT_RECORDS


def parse_dry_run(body: object) -> DryRunRequest:
    """Validate a dry-run body: ``since`` required (ISO-8601 with a zone); ``filter`` (all)
    and ``max_records`` (100,000, at most 1,000,000) optional, null meaning the default."""
    data = _require_body(body)
    _reject_unknown_keys(data, _DRY_RUN_KEYS, "")
    return DryRunRequest(
        since=_since(data.get("since")),
        filter=Filter.parse(data.get("filter")),
        max_records=DRY_RUN_DEFAULT_RECORDS
        if data.get("max_records") is None
        else _max_records(data["max_records"]),
    )


def topic_for(subscription_id: str) -> str:
    """The output topic of a subscription."""
    return SUBSCRIPTION_TOPIC_PREFIX + subscription_id


def new_subscription(
    request: CreateRequest, *, subscription_id: str, token_hash: str, now: datetime
) -> Subscription:
    """Build a new ACTIVE subscription at version 1.

    The caller chooses the id and the token (randomness is not the core's business); a
    malformed id or a ``token_hash`` that is not a sha256 digest is a caller bug, hence
    ``ValueError`` rather than :class:`InvalidSubscription`.
    """
    if not _SUBSCRIPTION_ID.fullmatch(subscription_id):
        raise ValueError(
            f"subscription id {subscription_id!r} cannot be part of a Kafka topic name; "
            "use letters, digits, '.', '_' and '-'"
        )
    if not _SHA256_HEX.fullmatch(token_hash):
        raise ValueError("token_hash must be hash_token(token); the token itself is never stored")
    _require_aware(now)
    return Subscription(
        id=subscription_id,
        name=request.name,
        filter=request.filter,
        format=request.format,
        status=SubscriptionStatus.ACTIVE,
        topic=topic_for(subscription_id),
        partitions=request.partitions,
        created_at=now,
        updated_at=now,
        token_hash=token_hash,
        version=1,
        fields=request.fields,
        backfill_from=request.backfill_from,
        consumer_group=request.consumer_group,
        delivery=request.delivery,
    )


def apply_patch(subscription: Subscription, patch: PatchRequest, now: datetime) -> Subscription:
    """The subscription with the patch applied, one version later.

    A patch that changes nothing returns ``subscription`` itself (same version, same
    ``updated_at``), so a repeated PATCH is idempotent and the caller can skip announcing it
    (``result is subscription``). ``updated_at`` never goes backwards even if this worker's
    clock is behind the one that made the previous change.
    """
    _require_aware(now)
    changed = replace(
        subscription,
        name=subscription.name if patch.name is None else patch.name,
        filter=subscription.filter if patch.filter is None else patch.filter,
        status=subscription.status if patch.status is None else patch.status,
    )
    if changed == subscription:
        return subscription
    return replace(
        changed, updated_at=max(now, subscription.updated_at), version=subscription.version + 1
    )


def hash_token(token: str) -> str:
    """Hex sha256 of a token, the only form in which a token is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_matches(token: str, token_hash: str) -> bool:
    """Whether ``token`` is the one ``token_hash`` was made from, in constant time."""
    return hmac.compare_digest(
        hash_token(token).encode("ascii"), token_hash.encode("utf-8", "surrogatepass")
    )


# --- validation helpers -------------------------------------------------------------------


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for messages a client can act on."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


def _show(value: object) -> str:
    """A short, unambiguous rendering of a bad value."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str | int | float | Decimal):
        text = repr(value) if isinstance(value, str) else str(value)
    else:
        text = _json_type(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _require_body(body: object) -> Mapping[object, object]:
    if not isinstance(body, Mapping):
        raise InvalidSubscription(
            _BODY, f"the request body must be a JSON object, got {_json_type(body)}"
        )
    return body


def _reject_unknown_keys(
    data: Mapping[object, object],
    allowed: Sequence[str],
    path: str,
    reasons: Mapping[str, str] | None = None,
) -> None:
    """Refuse the first key not in ``allowed``; ``reasons`` explains well-known ones."""
    for key in data:
        if key in allowed:
            continue
        name = key if isinstance(key, str) else repr(key)
        where = f"{path}.{name}" if path else name
        reason = (reasons or {}).get(name, "is not a known field")
        raise InvalidSubscription(where, f"{where} {reason}; allowed: {', '.join(allowed)}")


def _name(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidSubscription("name", f"name must be a string, got {_json_type(value)}")
    if not value.strip():
        raise InvalidSubscription("name", "name must not be empty or blank")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidSubscription(
            "name", f"name must be at most {MAX_NAME_LENGTH} characters, got {len(value)}"
        )
    return value


def _format(value: object) -> OutputFormat:
    if isinstance(value, str):
        for member in OutputFormat:
            if member.value == value:
                return member
    allowed = ", ".join(member.value for member in OutputFormat)
    raise InvalidSubscription("format", f"format must be one of {allowed}, got {_show(value)}")


def _partitions(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_PARTITIONS:
        return value
    raise InvalidSubscription(
        "partitions",
        f"partitions must be an integer from 1 to {MAX_PARTITIONS}, got {_show(value)}",
    )


_GROUP_ID = re.compile(r"[A-Za-z0-9._-]{1,249}")
_MAX_URL = 2048
WEBHOOK_SECRET_LENGTH: Final = (16, 256)


def _delivery(value: object, partitions: int) -> Webhook | None:
    """``{"type": "kafka"}`` (the default) or ``{"type": "webhook", "url", "secret"}``."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidSubscription(
            "delivery", f"delivery must be an object, got {_json_type(value)}"
        )
    kind = value.get("type")
    if kind == "kafka":
        _reject_unknown_keys(value, ("type",), "delivery", {})
        return None
    if kind != "webhook":
        raise InvalidSubscription(
            "delivery.type", f"delivery.type must be 'kafka' or 'webhook', got {_show(kind)}"
        )
    _reject_unknown_keys(value, ("type", "url", "secret"), "delivery", {})
    url = value.get("url")
    if (
        not isinstance(url, str)
        or len(url) > _MAX_URL
        or not url.startswith(("http://", "https://"))
        or len(url.split("://", 1)[1]) == 0
    ):
        raise InvalidSubscription(
            "delivery.url", f"delivery.url must be an http:// or https:// URL, got {_show(url)}"
        )
    secret = value.get("secret")
    low, high = WEBHOOK_SECRET_LENGTH
    if not isinstance(secret, str) or not low <= len(secret) <= high:
        raise InvalidSubscription(
            "delivery.secret",
            f"delivery.secret must be a string of {low} to {high} characters (it signs the "
            "requests: X-Execdist-Signature)",
        )
    if partitions != 1:
        raise InvalidSubscription(
            "delivery",
            "a webhook subscription has one partition: its records are POSTed in sub_seq order",
        )
    return Webhook(url, secret)


def _stored_webhook(value: object) -> Webhook | None:
    if isinstance(value, Mapping) and value.get("type") == "webhook":
        return Webhook(str(value["url"]), str(value["secret"]))
    return None


def _consumer_group(value: object) -> str:
    if isinstance(value, str) and _GROUP_ID.fullmatch(value):
        return value
    raise InvalidSubscription(
        "consumer_group",
        "consumer_group must be a Kafka group id: 1 to 249 letters, digits, '.', '_' or '-', "
        f"got {_show(value)}",
    )


def _since(value: object) -> datetime:
    return _time(value, "since")


def _time(value: object, path: str) -> datetime:
    example = '"2024-05-01T13:30:00Z"'
    if value is None:
        raise InvalidSubscription(path, f"{path} is required: an ISO-8601 time such as {example}")
    if not isinstance(value, str) or len(value) > _MAX_TIME_TEXT:
        raise InvalidSubscription(
            path, f"{path} must be an ISO-8601 time such as {example}, got {_show(value)}"
        )
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidSubscription(
            path, f"{path} must be an ISO-8601 time such as {example}, got {_show(value)}"
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidSubscription(
            path, f"{path} must name its zone (Z or +hh:mm), got {_show(value)}"
        )
    return moment


def _max_records(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= DRY_RUN_MAX_RECORDS:
        return value
    raise InvalidSubscription(
        "max_records",
        f"max_records must be an integer from 1 to {DRY_RUN_MAX_RECORDS}, got {_show(value)}",
    )


def _enum_value(value: object, path: str, enum_type: type[_E]) -> _E:
    if isinstance(value, str) and value in enum_type.__members__:
        return enum_type[value]
    allowed = ", ".join(enum_type.__members__)
    raise InvalidSubscription(path, f"{path} must be one of {allowed}, got {_show(value)}")


def _list(value: object, path: str) -> Sequence[object]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise InvalidSubscription(path, f"{path} must be a list, got {_json_type(value)}")
    if len(value) > MAX_FILTER_VALUES:
        raise InvalidSubscription(
            path, f"{path} must have at most {MAX_FILTER_VALUES} values, got {len(value)}"
        )
    return value


def _string_set(value: object, path: str) -> frozenset[str]:
    values: list[str] = []
    for index, item in enumerate(_list(value, path)):
        where = f"{path}[{index}]"
        if not isinstance(item, str):
            raise InvalidSubscription(where, f"{where} must be a string, got {_json_type(item)}")
        if not item.strip():
            raise InvalidSubscription(where, f"{where} must not be empty or blank")
        if len(item) > MAX_FILTER_VALUE_LENGTH:
            raise InvalidSubscription(
                where,
                f"{where} must be at most {MAX_FILTER_VALUE_LENGTH} characters, got {len(item)}",
            )
        values.append(item)
    return frozenset(values)


def _enum_set(value: object, path: str, enum_type: type[_E]) -> frozenset[_E]:
    items = _list(value, path)
    return frozenset(
        _enum_value(item, f"{path}[{index}]", enum_type) for index, item in enumerate(items)
    )


def _expr(value: object, path: str) -> Expression | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidSubscription(
            path, f"{path} must be a string (a CEL expression) or null, got {_json_type(value)}"
        )
    try:
        return compile_expression(value)
    except InvalidExpression as exc:
        raise InvalidSubscription(path, f"{path}{exc.message}") from None


def _min_qty(value: object, path: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, float):
        raise InvalidSubscription(
            path,
            f'{path} must be a decimal string such as "100.5" or an integer, got the JSON '
            f"number {value!r}: numbers with a fraction are binary floats and inexact",
        )
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidSubscription(
            path,
            f'{path} must be a decimal string such as "100.5" or an integer, '
            f"got {_json_type(value)}",
        )
    if isinstance(value, int):
        number = Decimal(value)
    else:
        if len(value) > _MAX_DECIMAL_TEXT or not _DECIMAL_TEXT.fullmatch(value):
            raise InvalidSubscription(
                path, f'{path} must be a finite decimal such as "100.5", got {_show(value)}'
            )
        try:
            number = Decimal(value)
        except InvalidOperation as exc:  # unreachable after the regex, kept as a safety net
            raise InvalidSubscription(path, f"{path} is not a decimal: {_show(value)}") from exc
    if number < 0:
        raise InvalidSubscription(path, f"{path} must be 0 or greater, got {_show(value)}")
    return _within_quantity_bounds(number, path)


def _within_quantity_bounds(number: Decimal, path: str) -> Decimal:
    """Keep min_qty within decimal(26,8), the range of ``last_qty``, in canonical form."""
    if number.is_zero():
        return Decimal(0)
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite: checked by the caller
    significant = len(digits)
    while significant > 1 and digits[significant - 1] == 0 and exponent < 0:
        significant -= 1
        exponent += 1
    fraction_digits = max(0, -exponent)
    integer_digits = max(0, significant + exponent)
    if integer_digits > MAX_INTEGER_DIGITS or fraction_digits > MAX_FRACTION_DIGITS:
        raise InvalidSubscription(
            path,
            f"{path} must have at most {MAX_INTEGER_DIGITS} digits before the decimal point "
            f"and {MAX_FRACTION_DIGITS} after, like last_qty, got {integer_digits} and "
            f"{fraction_digits}",
        )
    return Decimal(format_decimal(number))


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be an aware datetime, got {now!r}")


# --- stored-form readers (trusted input: shape errors are TypeError/KeyError) ---------------


def _stored_str(data: Mapping[str, object], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise TypeError(f"{key}: expected a string, got {type(value).__name__}")
    return value


def _stored_int(data: Mapping[str, object], key: str) -> int:
    value = data[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{key}: expected an integer, got {type(value).__name__}")
    return value


def _stored_strings(data: Mapping[str, object], key: str) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError(f"{key}: expected a list of strings")
    return value
