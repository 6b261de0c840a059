"""quick_init: a frozen dataclass built faster, and otherwise the same value."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from execdist.domain.join import apply_execution, apply_order
from execdist.domain.model import Confirmation
from execdist.domain.order_state import OrderState
from execdist.domain.values import quick_init
from tests.unit.domain.fixtures import ORDER_ID, at, confirmations, make_order, trade


@dataclasses.dataclass(frozen=True, slots=True)
class _Plain:
    a: int
    b: str
    c: tuple[int, ...] | None = None


@quick_init
@dataclasses.dataclass(frozen=True, slots=True)
class _Quick:
    a: int
    b: str
    c: tuple[int, ...] | None = None


def test_a_quick_value_is_built_like_the_dataclass_it_replaces() -> None:
    for args, kwargs in [((1, "x"), {}), ((1,), {"b": "y", "c": (2,)}), ((), {"b": "z", "a": 3})]:
        plain, quick = _Plain(*args, **kwargs), _Quick(*args, **kwargs)
        assert dataclasses.astuple(quick) == dataclasses.astuple(plain)
    assert _Quick(1, "x") == _Quick(1, "x")
    assert hash(_Quick(1, "x", (2,))) == hash(_Quick(1, "x", (2,)))
    assert _Quick(1, "x") != _Quick(2, "x")
    assert repr(_Quick(1, "x")).endswith("_Quick(a=1, b='x', c=None)")
    assert dataclasses.replace(_Quick(1, "x"), c=(3,)) == _Quick(1, "x", (3,))
    assert pickle.loads(pickle.dumps(_Quick(1, "x"))) == _Quick(1, "x")


def test_a_quick_value_still_refuses_assignment_and_missing_or_unknown_arguments() -> None:
    value = _Quick(1, "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.a = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        _Quick(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _Quick(1, "x", d=4)  # type: ignore[call-arg]


def test_quick_init_refuses_what_it_would_change_silently() -> None:
    with pytest.raises(TypeError, match="__post_init__"):

        @quick_init
        @dataclasses.dataclass(frozen=True, slots=True)
        class _Checked:
            a: int

            def __post_init__(self) -> None:
                pass

    with pytest.raises(TypeError, match="plain fields"):

        @quick_init
        @dataclasses.dataclass(frozen=True, slots=True)
        class _Factory:
            a: list[int] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match="frozen, slotted"):

        @quick_init
        @dataclasses.dataclass(frozen=True)
        class _NoSlots:
            a: int


def test_the_domain_records_built_quickly_keep_their_values() -> None:
    state = apply_order(OrderState.new(ORDER_ID, at(0)), make_order(), at(0)).state
    [confirmation] = confirmations(
        apply_execution(state, trade("E-1", 1, "10", "1.5"), {}, at(1)).outputs
    )
    assert confirmation.anomaly is None
    fields = {f.name: getattr(confirmation, f.name) for f in dataclasses.fields(Confirmation)}
    rebuilt = Confirmation(**fields)
    assert rebuilt == confirmation
    assert rebuilt.to_dict() == confirmation.to_dict()
    assert confirmation.to_dict()["last_qty"] == "10"
