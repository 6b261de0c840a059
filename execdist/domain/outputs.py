"""What a state transition asks the wiring to do, as plain values.

The core never publishes anything itself; it returns a list of these and the wiring maps them:

* :class:`Confirmed`    -> ``execdist.confirmations`` and every matching subscription topic;
* :class:`Rejected`     -> ``execdist.dlq`` with the original bytes found through ``origin``;
* :class:`StatusNotice` -> a StatusEvent on ``execdist.status`` (SEQUENCE_GAP, OVERFILL);
* :class:`Dropped`      -> a metric only; the record was an expected repeat.

Outputs come in the order they must be published: per order, confirmations are in the order
they were applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from execdist.domain.model import Confirmation, RejectReason, StatusType
from execdist.domain.values import quick_init

__all__ = ["Confirmed", "DropKind", "Dropped", "Output", "Rejected", "StatusNotice"]


class DropKind(StrEnum):
    """Why an input was dropped without output; used as a metric label."""

    DUPLICATE = "duplicate"
    """An exec_id seen before with identical content (a redelivery)."""
    STALE_ORDER = "stale_order"
    """An order whose version is at or below the one held (a replay)."""


@quick_init
@dataclass(frozen=True, slots=True)
class Confirmed:
    """An execution was applied; publish its confirmation."""

    confirmation: Confirmation


@quick_init
@dataclass(frozen=True, slots=True)
class Rejected:
    """An execution cannot be applied; send the original record to the DLQ.

    ``origin`` is exactly the value the caller passed with the execution (possibly much
    earlier, if it was held), so the wiring can find the original bytes, topic, partition and
    offset for the DLQ headers.
    """

    reason: RejectReason
    message: str
    origin: object
    exec_id: str | None = None
    """The execution refused, when the record could be read as one (for the log)."""


@quick_init
@dataclass(frozen=True, slots=True)
class StatusNotice:
    """Something operators must hear about; publish as a StatusEvent of this type.

    ``details`` is JSON-ready (decimals as strings) and becomes the event's ``details``.
    """

    type: StatusType
    details: dict[str, object]


@quick_init
@dataclass(frozen=True, slots=True)
class Dropped:
    """An input was an expected repeat and produced nothing; count it."""

    kind: DropKind


Output = Confirmed | Rejected | StatusNotice | Dropped
