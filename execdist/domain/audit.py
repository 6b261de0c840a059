"""A subscription's audit trail: who changed it, when, and what it was before and after.

Every change to a subscription (created, updated, paused, resumed, deleted) becomes one
:class:`AuditEntry`. Entries are written to an append-only topic in the same transaction as the
change itself, so there is never a change without its entry nor an entry without its change;
they outlive the subscription. Pages are cut by the entry's position in that log
(:func:`audit_page`), which every worker sees the same.

``before`` and ``after`` hold :func:`audited_state`: the subscription's name, filter, format,
status and version, never its token or the token's hash. ``before`` is None for CREATED and
``after`` is None for DELETED.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from execdist.domain.model import StatusType, format_time, parse_stored_time
from execdist.domain.subscriptions import Subscription, SubscriptionStatus

__all__ = [
    "AuditAction",
    "AuditEntry",
    "AuditPage",
    "audit_action",
    "audit_page",
    "audited_state",
    "record_change",
    "status_type_of",
]


class AuditAction(StrEnum):
    """What a change did to a subscription."""

    CREATED = "CREATED"
    UPDATED = "UPDATED"
    """Name or filter changed, status unchanged."""
    PAUSED = "PAUSED"
    """ACTIVE to PAUSED (a filter or name changed in the same PATCH shows in before/after)."""
    RESUMED = "RESUMED"
    """PAUSED to ACTIVE (likewise)."""
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change of one subscription, as stored on the audit topic."""

    subscription_id: str
    time: datetime
    """When the change was made (aware, UTC), by the clock of the worker that made it."""
    actor: str
    """The principal id of the token that made the change (``tok_…``, or the configured
    admin token's id); never a token."""
    action: AuditAction
    before: Mapping[str, object] | None
    """:func:`audited_state` before the change; None for CREATED."""
    after: Mapping[str, object] | None
    """:func:`audited_state` after the change; None for DELETED."""

    def to_dict(self) -> dict[str, object]:
        """The public form, an item of ``GET /api/v1/subscriptions/{id}/audit``."""
        return {
            "time": format_time(self.time),
            "actor": self.actor,
            "action": self.action.value,
            "before": None if self.before is None else dict(self.before),
            "after": None if self.after is None else dict(self.after),
        }

    def to_stored(self) -> dict[str, object]:
        """The form on the audit topic: the public form and the subscription's id."""
        return {"subscription_id": self.subscription_id, **self.to_dict()}

    @classmethod
    def from_stored(cls, data: Mapping[str, object]) -> AuditEntry:
        """Read back :meth:`to_stored` (trusted)."""
        before, after = data.get("before"), data.get("after")
        return cls(
            subscription_id=str(data["subscription_id"]),
            time=parse_stored_time(data["time"]),
            actor=str(data["actor"]),
            action=AuditAction(str(data["action"])),
            before=dict(before) if isinstance(before, Mapping) else None,
            after=dict(after) if isinstance(after, Mapping) else None,
        )


def audited_state(subscription: Subscription) -> dict[str, object]:
    """What an audit entry keeps of a subscription: what a change can touch, and its version."""
    return {
        "name": subscription.name,
        "filter": subscription.filter.to_dict(),
        "format": subscription.format.value,
        "status": subscription.status.value,
        "version": subscription.version,
    }


def audit_action(before: Subscription | None, after: Subscription | None) -> AuditAction:
    """Name a change. A PATCH that moves the status is a pause or a resume, whatever else it
    changes; one that does not is an update."""
    if before is None and after is None:
        raise ValueError("a change has a subscription before it, after it, or both")
    if before is None:
        return AuditAction.CREATED
    if after is None:
        return AuditAction.DELETED
    if before.status is after.status:
        return AuditAction.UPDATED
    if after.status is SubscriptionStatus.PAUSED:
        return AuditAction.PAUSED
    return AuditAction.RESUMED


def record_change(
    before: Subscription | None, after: Subscription | None, *, actor: str, now: datetime
) -> AuditEntry:
    """The audit entry of a change made by ``actor`` at ``now``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    subject = after if after is not None else before
    assert subject is not None  # audit_action refuses a change of nothing
    action = audit_action(before, after)
    return AuditEntry(
        subscription_id=subject.id,
        time=now,
        actor=actor,
        action=action,
        before=None if before is None else audited_state(before),
        after=None if after is None else audited_state(after),
    )


def status_type_of(action: AuditAction) -> StatusType:
    """The status event that announces a change: pauses and resumes are updates there."""
    if action is AuditAction.CREATED:
        return StatusType.SUBSCRIPTION_CREATED
    if action is AuditAction.DELETED:
        return StatusType.SUBSCRIPTION_DELETED
    return StatusType.SUBSCRIPTION_UPDATED


@dataclass(frozen=True, slots=True)
class AuditPage:
    items: list[AuditEntry]
    last_position: int | None
    """The log position of the page's last entry when more follow (the next page starts
    after it); None on the last page."""


def audit_page(
    entries: Sequence[tuple[int, AuditEntry]], *, after: int | None, limit: int
) -> AuditPage:
    """Up to ``limit`` entries after log position ``after`` (from the first if None), oldest
    first. ``entries`` are (position, entry) pairs in log order."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    rest = [(position, entry) for position, entry in entries if after is None or position > after]
    page = rest[:limit]
    more = len(rest) > limit
    return AuditPage([entry for _, entry in page], page[-1][0] if more else None)
