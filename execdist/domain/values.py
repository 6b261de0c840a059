"""Immutable values that are cheap to build.

A frozen dataclass's generated ``__init__`` sets each field through ``object.__setattr__``
(its own ``__setattr__`` refuses), which costs about twice as much as setting a slot. The join
builds several such values per execution (the execution, its confirmation, the outputs), so
:func:`quick_init` gives a frozen, slotted dataclass an ``__init__`` that sets the slots
through their descriptors instead. Everything else stays as ``@dataclass`` made it: equality,
hashing, ``repr``, ``replace`` and the refusal of any later assignment.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["quick_init"]

_T = TypeVar("_T")


def quick_init(cls: type[_T]) -> type[_T]:
    """Replace the ``__init__`` of the frozen, slotted dataclass ``cls`` (put this decorator
    above ``@dataclass(frozen=True, slots=True)``). Fields may have plain defaults; a class
    with ``__post_init__``, ``default_factory``, ``init=False`` or keyword-only fields keeps
    the ``__init__`` it has (it is refused here, so that nothing changes silently)."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__}: quick_init takes a frozen, slotted dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: quick_init does not run __post_init__")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    scope: dict[str, Any] = {}
    arguments = []
    body = []
    for field in fields:
        if field.default_factory is not dataclasses.MISSING or not field.init or field.kw_only:
            raise TypeError(f"{cls.__name__}.{field.name}: quick_init takes plain fields only")
        scope[f"_set_{field.name}"] = cls.__dict__[field.name].__set__
        if field.default is dataclasses.MISSING:
            arguments.append(field.name)
        else:
            scope[f"_default_{field.name}"] = field.default
            arguments.append(f"{field.name}=_default_{field.name}")
        body.append(f"    _set_{field.name}(self, {field.name})")
    source = f"def __init__(self, {', '.join(arguments)}):\n" + "\n".join(body) + "\n"
    namespace: dict[str, Any] = {}
    exec(source, scope, namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    cls.__init__ = init  # type: ignore[method-assign]
    return cls
