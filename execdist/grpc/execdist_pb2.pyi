# ruff: noqa
# mypy: ignore-errors
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubscribeRequest(_message.Message):
    __slots__ = ("subscription_id", "conflate_ms")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    CONFLATE_MS_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    conflate_ms: int
    def __init__(
        self, subscription_id: _Optional[str] = ..., conflate_ms: _Optional[int] = ..., **kwargs
    ) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("confirmation", "heartbeat", "snapshot", "snapshot_end")
    CONFIRMATION_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_END_FIELD_NUMBER: _ClassVar[int]
    confirmation: ConfirmationFrame
    heartbeat: Heartbeat
    snapshot: SnapshotFrame
    snapshot_end: SnapshotEnd
    def __init__(
        self,
        confirmation: _Optional[_Union[ConfirmationFrame, _Mapping]] = ...,
        heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ...,
        snapshot: _Optional[_Union[SnapshotFrame, _Mapping]] = ...,
        snapshot_end: _Optional[_Union[SnapshotEnd, _Mapping]] = ...,
    ) -> None: ...

class SnapshotFrame(_message.Message):
    __slots__ = ("sub_seq", "data")
    SUB_SEQ_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    sub_seq: int
    data: Confirmation
    def __init__(
        self, sub_seq: _Optional[int] = ..., data: _Optional[_Union[Confirmation, _Mapping]] = ...
    ) -> None: ...

class SnapshotEnd(_message.Message):
    __slots__ = ("cursor", "sub_seq", "orders")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    SUB_SEQ_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    sub_seq: int
    orders: int
    def __init__(
        self,
        cursor: _Optional[str] = ...,
        sub_seq: _Optional[int] = ...,
        orders: _Optional[int] = ...,
    ) -> None: ...

class ConfirmationFrame(_message.Message):
    __slots__ = ("cursor", "data", "folded")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    FOLDED_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    data: Confirmation
    folded: _containers.RepeatedScalarFieldContainer[int]
    def __init__(
        self,
        cursor: _Optional[str] = ...,
        data: _Optional[_Union[Confirmation, _Mapping]] = ...,
        folded: _Optional[_Iterable[int]] = ...,
    ) -> None: ...

class Confirmation(_message.Message):
    __slots__ = (
        "confirmation_id",
        "exec_id",
        "order_id",
        "account",
        "symbol",
        "side",
        "venue",
        "exec_type",
        "ref_exec_id",
        "seq",
        "last_qty",
        "last_px",
        "cum_qty",
        "leaves_qty",
        "avg_px",
        "order_qty",
        "order_status",
        "exec_time",
        "confirmed_at",
        "sub_seq",
        "anomaly",
    )
    CONFIRMATION_ID_FIELD_NUMBER: _ClassVar[int]
    EXEC_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    EXEC_TYPE_FIELD_NUMBER: _ClassVar[int]
    REF_EXEC_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_QTY_FIELD_NUMBER: _ClassVar[int]
    LAST_PX_FIELD_NUMBER: _ClassVar[int]
    CUM_QTY_FIELD_NUMBER: _ClassVar[int]
    LEAVES_QTY_FIELD_NUMBER: _ClassVar[int]
    AVG_PX_FIELD_NUMBER: _ClassVar[int]
    ORDER_QTY_FIELD_NUMBER: _ClassVar[int]
    ORDER_STATUS_FIELD_NUMBER: _ClassVar[int]
    EXEC_TIME_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_AT_FIELD_NUMBER: _ClassVar[int]
    SUB_SEQ_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_FIELD_NUMBER: _ClassVar[int]
    confirmation_id: str
    exec_id: str
    order_id: str
    account: str
    symbol: str
    side: str
    venue: str
    exec_type: str
    ref_exec_id: str
    seq: int
    last_qty: str
    last_px: str
    cum_qty: str
    leaves_qty: str
    avg_px: str
    order_qty: str
    order_status: str
    exec_time: str
    confirmed_at: str
    sub_seq: int
    anomaly: Anomaly
    def __init__(
        self,
        confirmation_id: _Optional[str] = ...,
        exec_id: _Optional[str] = ...,
        order_id: _Optional[str] = ...,
        account: _Optional[str] = ...,
        symbol: _Optional[str] = ...,
        side: _Optional[str] = ...,
        venue: _Optional[str] = ...,
        exec_type: _Optional[str] = ...,
        ref_exec_id: _Optional[str] = ...,
        seq: _Optional[int] = ...,
        last_qty: _Optional[str] = ...,
        last_px: _Optional[str] = ...,
        cum_qty: _Optional[str] = ...,
        leaves_qty: _Optional[str] = ...,
        avg_px: _Optional[str] = ...,
        order_qty: _Optional[str] = ...,
        order_status: _Optional[str] = ...,
        exec_time: _Optional[str] = ...,
        confirmed_at: _Optional[str] = ...,
        sub_seq: _Optional[int] = ...,
        anomaly: _Optional[_Union[Anomaly, _Mapping]] = ...,
    ) -> None: ...

class Anomaly(_message.Message):
    __slots__ = ("rules", "details")
    class DetailsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

    RULES_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedScalarFieldContainer[str]
    details: _containers.ScalarMap[str, str]
    def __init__(
        self, rules: _Optional[_Iterable[str]] = ..., details: _Optional[_Mapping[str, str]] = ...
    ) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("time",)
    TIME_FIELD_NUMBER: _ClassVar[int]
    time: str
    def __init__(self, time: _Optional[str] = ...) -> None: ...
