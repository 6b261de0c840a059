"""The errors execdist raises on purpose.

The whole tree, so a reader can see at a glance what can be caught where::

    ExecDistError                one base, so the wiring can tell our errors from bugs
    └── DomainError              the pure core refused something
        ├── InvalidRecord        an input record breaks the contract (DLQ: VALIDATION_ERROR)
        ├── InvalidState         a stored OrderState cannot be read back (corrupt changelog)
        ├── InvalidOrigin        an execution's origin is not JSON-compatible (a wiring bug)
        └── MisroutedEvent       an event was given to another order's state (a wiring bug)

Business outcomes such as duplicates, orphans or unknown references are *not* exceptions: the
state machine returns them as outputs, because they are normal traffic, not failures.
"""

from __future__ import annotations

__all__ = [
    "DomainError",
    "ExecDistError",
    "InvalidOrigin",
    "InvalidRecord",
    "InvalidState",
    "MisroutedEvent",
]


class ExecDistError(Exception):
    """Base of every error execdist raises deliberately."""


class DomainError(ExecDistError):
    """The pure domain core refused an input or a stored state."""


class InvalidRecord(DomainError):
    """An order or execution breaks the contract and must go to the DLQ as VALIDATION_ERROR.

    ``field`` names the offending field (``None`` when the record as a whole is wrong, e.g. it
    is not an object) so the DLQ headers and HTTP errors can point at it; ``message`` says what
    is wrong and what is allowed.
    """

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def __repr__(self) -> str:
        return f"InvalidRecord(field={self.field!r}, message={self.message!r})"


class InvalidState(DomainError):
    """A serialised OrderState could not be decoded; the stored data is not what we wrote."""


class InvalidOrigin(DomainError):
    """The origin handed in with an execution cannot be stored in a JSON-serialised state."""


class MisroutedEvent(DomainError):
    """An order or execution was applied to the state of a different order_id.

    This can only come from a keying bug in the wiring, so it is raised rather than returned.
    """
