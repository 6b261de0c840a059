"""The pure core of execdist: records, validation, fill arithmetic and the per-order join.

Nothing in this package performs I/O, reads the clock or imports Faust or Kafka; the wiring in
``execdist.agents`` feeds it decoded records and publishes what it returns.

* :mod:`~execdist.domain.model`       the contract's records and enums, and their JSON form
* :mod:`~execdist.domain.validation`  untrusted input -> Order / Execution, or InvalidRecord
* :mod:`~execdist.domain.fills`       cum_qty, leaves_qty, avg_px, order status
* :mod:`~execdist.domain.order_state` what is remembered per order_id, and its JSON form
* :mod:`~execdist.domain.join`        the transitions: apply_order, apply_execution, on_tick
* :mod:`~execdist.domain.outputs`     what a transition asks the wiring to publish
* :mod:`~execdist.domain.anomalies`   the anomaly rules and the statistics they judge by
* :mod:`~execdist.domain.errors`      the ExecDistError tree
"""

from execdist.domain.errors import (
    DomainError,
    ExecDistError,
    InvalidOrigin,
    InvalidRecord,
    InvalidState,
    MisroutedEvent,
)
from execdist.domain.fills import (
    Fill,
    FillSummary,
    average_price,
    order_status_for,
    summarize_fills,
)
from execdist.domain.join import (
    Step,
    apply_execution,
    apply_order,
    is_expired,
    next_tick_due,
    on_tick,
    stored_state_expired,
)
from execdist.domain.model import (
    Confirmation,
    ExecType,
    Execution,
    Order,
    OrderStatus,
    OrderType,
    RejectReason,
    Side,
    StatusType,
    format_decimal,
    format_time,
)
from execdist.domain.order_state import (
    HeldExecution,
    OrderState,
    RecordOrigin,
    SeenExecution,
    SeqRange,
    content_fingerprint,
    order_view,
)
from execdist.domain.outputs import (
    Confirmed,
    DropKind,
    Dropped,
    Output,
    Rejected,
    StatusNotice,
)
from execdist.domain.validation import parse_execution, parse_order

__all__ = [
    "Confirmation",
    "Confirmed",
    "DomainError",
    "DropKind",
    "Dropped",
    "ExecDistError",
    "ExecType",
    "Execution",
    "Fill",
    "FillSummary",
    "HeldExecution",
    "InvalidOrigin",
    "InvalidRecord",
    "InvalidState",
    "MisroutedEvent",
    "Order",
    "OrderState",
    "OrderStatus",
    "OrderType",
    "Output",
    "RecordOrigin",
    "RejectReason",
    "Rejected",
    "SeenExecution",
    "SeqRange",
    "Side",
    "StatusNotice",
    "StatusType",
    "Step",
    "apply_execution",
    "apply_order",
    "average_price",
    "content_fingerprint",
    "format_decimal",
    "format_time",
    "is_expired",
    "next_tick_due",
    "on_tick",
    "order_status_for",
    "order_view",
    "parse_execution",
    "parse_order",
    "stored_state_expired",
    "summarize_fills",
]
