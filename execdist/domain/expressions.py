"""Filter expressions: CEL over a confirmation's fields, with exact decimal arithmetic.

A subscription's ``filter.expr`` is a CEL expression (the Common Expression Language) such as
``symbol in ["AAPL", "MSFT"] && last_qty * last_px >= 1000000``. :func:`compile_expression`
turns the text into an :class:`Expression` once; :meth:`Expression.matches` then answers for one
confirmation at a time.

How, and why not by the CEL runtime itself: CEL has int, uint, double and string but no decimal,
so any CEL runtime would compute ``last_qty * last_px`` in binary floating point (``3 * 0.1 ==
0.3`` is false there) while the contract says every quantity and price computation is exact.
The expression is therefore parsed and type-checked by the official CEL implementation
(``cel-expr-python``, the Python binding of cel-cpp, from the CEL maintainers), which gives
CEL's grammar, macros and error messages with positions, and its checked syntax tree is
compiled here into plain Python closures that evaluate it with the domain's own types:

* ``last_qty``, ``last_px``, ``cum_qty``, ``leaves_qty``, ``avg_px``, ``order_qty`` are
  ``Decimal``; a number literal with a fraction (``187.45``) is the decimal it spells, read
  from the source text at the position the parser gives for it;
  integer literals and ``seq`` are CEL ints (64-bit, and an int result outside that range is an
  evaluation error, as in CEL).
* ``+``, ``-``, ``*`` on decimals are exact: 60 significant digits hold any product of two
  decimal(26,8) values, and a result that would need more is an evaluation error, never a
  silently rounded value. ``/`` with a decimal operand rounds to 34 significant digits, half
  even (a quotient such as 1/3 has no exact decimal form); ``/`` and ``%`` of two ints are CEL's
  truncating integer division and remainder.
* Numbers compare by value whatever their kind (``last_qty == 100``); ``==`` between a number
  and a string is false, not an error.
* Strings: every other field (``side``, ``exec_type`` and ``order_status`` as their names;
  ``exec_time`` and ``confirmed_at`` as ISO-8601 UTC text with microseconds, so text order is
  time order; ``ref_exec_id`` may be null; ``anomaly`` is null, or the rules the execution
  broke joined by commas, so ``anomaly != null`` matches every flagged confirmation and
  ``anomaly != null && anomaly.contains("SIZE_OUTLIER")`` the oversized ones).

Supported: literals, the fields, lists, ``in``, ``&&``, ``||``, ``!``, ``? :``, comparisons,
arithmetic, ``size``, ``startsWith``, ``endsWith``, ``contains``, ``int`` and ``string``.
Refused with a message at compile time: macros that loop (``exists``, ``all``, ``map``,
``filter``), ``has``, ``matches`` (a regex in the routing hot path is a denial-of-service risk)
and anything else CEL offers beyond that list.

Errors: text that is not a valid boolean expression over the fields is an
:class:`InvalidExpression` (the REST layer answers 400 naming ``filter.expr``); a record the
expression cannot be evaluated on (an overflow, a division by zero, a method on null) raises
:class:`EvaluationError`, which the router counts and treats as no match, as CEL's ``&&`` and
``||`` treat an error on one side when the other side decides.
"""

from __future__ import annotations

import math
import operator
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)
from enum import Enum
from functools import lru_cache
from operator import attrgetter
from typing import Final, cast

from cel_expr_python import cel

from execdist.domain.errors import DomainError
from execdist.domain.model import Confirmation, ExecType, Side, format_decimal, format_time

__all__ = [
    "DECIMAL_FIELDS",
    "MAX_EXPRESSION_LENGTH",
    "EvaluationError",
    "Expression",
    "InvalidExpression",
    "compile_expression",
]

MAX_EXPRESSION_LENGTH: Final = 4000
"""Longest expression accepted, in characters; bounds parsing and evaluation cost."""

DECIMAL_FIELDS: Final = frozenset(
    {"last_qty", "last_px", "cum_qty", "leaves_qty", "avg_px", "order_qty"}
)
_INT_FIELDS: Final = frozenset({"seq"})
_TIME_FIELDS: Final = frozenset({"exec_time", "confirmed_at"})
_NULLABLE_FIELDS: Final = frozenset({"ref_exec_id", "anomaly"})
_INDEXED_FIELDS: Final = {
    "account": "accounts",
    "symbol": "symbols",
    "venue": "venues",
    "exec_type": "exec_types",
    "side": "sides",
}
"""Fields the routing index files subscriptions under, and the Filter attribute of each."""
_ENUM_VALUES: Final[Mapping[str, frozenset[str]]] = {
    "side": frozenset(Side.__members__),
    "exec_type": frozenset(ExecType.__members__),
}

_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**63 - 1
_EXACT = Context(
    prec=60,
    rounding=ROUND_HALF_EVEN,
    Emax=99,
    Emin=-99,
    traps=[InvalidOperation, DivisionByZero, Overflow, Inexact],
)
"""+, -, * on decimals: any inexact or out-of-range result raises instead of rounding."""
_DIVISION = Context(
    prec=34,
    rounding=ROUND_HALF_EVEN,
    Emax=99,
    Emin=-99,
    traps=[InvalidOperation, DivisionByZero, Overflow],
)


class InvalidExpression(DomainError):
    """The text is not a CEL expression execdist can evaluate; ``message`` says why, written
    to follow the name of the value (``"filter.expr" + message``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EvaluationError(DomainError):
    """The expression could not be evaluated on one record; the record does not match."""


# ---- the type check's view of the confirmation -------------------------------------------


def _variable_type(name: str) -> cel.Type:
    if name in _INT_FIELDS:
        return cel.Type.INT
    if name in DECIMAL_FIELDS or name in _NULLABLE_FIELDS:
        # DYN: CEL's checker would refuse `last_qty >= 1000000` (double vs int); the kinds are
        # checked here instead, where int and decimal are both exact numbers.
        return cel.Type.DYN
    return cel.Type.STRING


_FIELD_NAMES: Final = tuple(f.name for f in fields(Confirmation))


@lru_cache(maxsize=1)
def _environment() -> cel.Env:
    return cel.NewEnv(variables={name: _variable_type(name) for name in _FIELD_NAMES})


# ---- the checked syntax tree, read from its protobuf wire form ---------------------------
#
# ``Expression.serialize()`` is documented as a stable binary form: a google.protobuf.Any
# holding a cel.expr.CheckedExpr (cel-spec's checked.proto / syntax.proto). Only the few fields
# read here are decoded; the field numbers are those of cel-spec.


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs: varints as int, everything else as its bytes."""
    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
            out.append((number, value))
        elif wire == 1:
            out.append((number, buf[i : i + 8]))
            i += 8
        elif wire == 2:
            length, i = _varint(buf, i)
            out.append((number, buf[i : i + length]))
            i += length
        elif wire == 5:
            out.append((number, buf[i : i + 4]))
            i += 4
        else:
            raise InvalidExpression(f": unexpected checked form (wire type {wire})")
    return out


@dataclass(frozen=True, slots=True)
class _Node:
    kind: str
    """const, ident, call, list, or the name of a construct that is not supported."""
    value: object = None
    """const: the value; ident: the name; call: the function name."""
    target: _Node | None = None
    args: tuple[_Node, ...] = ()


def _signed(value: int) -> int:
    return value - 2**64 if value >= 2**63 else value


_NUMBER_TEXT = re.compile(r"-?\s*(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class _TreeReader:
    """Turns the checked tree's Expr messages into :class:`_Node` s.

    A double literal is read back from the source text at the position the parser recorded
    for it, so ``0.1`` is the decimal 0.1 whatever its length, not the binary double nearest
    to it; the double is only a fallback should the text not be found there.
    """

    def __init__(self, source: str, positions: Mapping[int, int]) -> None:
        self._source = source
        self._positions = positions

    def node(self, buf: bytes) -> _Node:
        expr_id = 0
        for number, value in _fields(buf):
            if not isinstance(value, bytes):
                if number == 2:
                    expr_id = value
                continue
            if number == 3:
                return self._constant(expr_id, value)
            if number == 4:
                name = next(v for n, v in _fields(value) if n == 1)
                assert isinstance(name, bytes)
                return _Node("ident", name.decode("utf-8"))
            if number == 5:
                return _Node("field selection (has() or a.b)")
            if number == 6:
                function = ""
                target: _Node | None = None
                args: list[_Node] = []
                for n, v in _fields(value):
                    assert isinstance(v, bytes)
                    if n == 1:
                        target = self.node(v)
                    elif n == 2:
                        function = v.decode("utf-8")
                    elif n == 3:
                        args.append(self.node(v))
                return _Node("call", function, target, tuple(args))
            if number == 7:
                elements = tuple(
                    self.node(v) for n, v in _fields(value) if n == 1 and isinstance(v, bytes)
                )
                return _Node("list", None, None, elements)
            if number == 8:
                return _Node("map or message literal")
            if number == 9:
                return _Node("macro that loops (exists, all, exists_one, map, filter)")
        return _Node("empty expression")

    def _constant(self, expr_id: int, buf: bytes) -> _Node:
        for number, value in _fields(buf):
            if number == 1:
                return _Node("const", None)
            if number == 2:
                return _Node("const", bool(value))
            if number in (3, 4) and isinstance(value, int):
                return _Node("const", _signed(value) if number == 3 else value)
            if number == 5 and isinstance(value, bytes):
                return _Node("const", self._decimal(expr_id, struct.unpack("<d", value)[0]))
            if number == 6 and isinstance(value, bytes):
                return _Node("const", value.decode("utf-8"))
            if number == 7:
                return _Node("bytes literal")
            return _Node("duration or timestamp literal")
        return _Node("const", None)

    def _decimal(self, expr_id: int, double: float) -> Decimal:
        if not math.isfinite(double):
            raise InvalidExpression(f": {double} is not a finite number")
        offset = self._positions.get(expr_id)
        if offset is not None:
            found = _NUMBER_TEXT.match(self._source, offset)
            if found is not None:
                number = Decimal(re.sub(r"\s", "", found.group()))
                if float(number) == double:  # the text the parser read, not a neighbour
                    return number
        return Decimal(repr(double))


def _positions(checked_expr: bytes) -> dict[int, int]:
    """SourceInfo.positions: expression id -> offset of its text in the source."""
    positions: dict[int, int] = {}
    source_info = dict(_fields(checked_expr)).get(5)
    if not isinstance(source_info, bytes):
        return positions
    for number, entry in _fields(source_info):
        if number == 4 and isinstance(entry, bytes):
            pair = dict(_fields(entry))
            key, offset = pair.get(1, 0), pair.get(2, 0)
            if isinstance(key, int) and isinstance(offset, int):
                positions[key] = offset
    return positions


def _checked_tree(source: str) -> _Node:
    try:
        checked = _environment().compile(source)
    except RuntimeError as exc:
        raise InvalidExpression(f": {_checker_message(str(exc))}") from None
    wrapper = dict(_fields(checked.serialize()))
    checked_expr = wrapper.get(2)
    if not isinstance(checked_expr, bytes):
        raise InvalidExpression(": the CEL checker returned no syntax tree")
    expr = dict(_fields(checked_expr)).get(4)
    if not isinstance(expr, bytes):
        raise InvalidExpression(": the CEL checker returned no syntax tree")
    return _TreeReader(source, _positions(checked_expr)).node(expr)


_STATUS_PREFIX = re.compile(r"^(?:[A-Z_]+: )+")
_STATUS_SUFFIX = re.compile(r"\s*\[[A-Z_]+\]\s*$")
_LOCATION = re.compile(r"<input>:(-?\d+):(-?\d+): ")


def _checker_message(text: str) -> str:
    """cel-cpp's message without status codes and repeats; ``at line:column`` and the caret
    drawing kept when it has them."""
    lines: list[str] = []
    for block in re.split(r"\n(?=ERROR: )", text.strip()):
        block = _STATUS_SUFFIX.sub("", _STATUS_PREFIX.sub("", block.strip()))
        block = _LOCATION.sub(
            lambda m: "" if m.group(1) == "-1" else f"at {m.group(1)}:{m.group(2)}: ", block
        )
        if block and block not in lines:
            lines.append(block)
    return "\n".join(lines) or "not a valid CEL expression"


# ---- compiling the tree into closures ----------------------------------------------------

_Eval = Callable[[Confirmation], object]

BOOL, INT, DEC, STR, NULL, LIST, DYN = "bool", "int", "decimal", "string", "null", "list", "dyn"
_NUMBERS = frozenset({INT, DEC})


@dataclass(frozen=True, slots=True)
class _Compiled:
    run: _Eval
    kind: str
    constant: bool = False


def _const(value: object) -> _Compiled:
    return _Compiled(lambda _c: value, _kind_of_value(value), constant=True)


def _kind_of_value(value: object) -> str:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT
    if isinstance(value, Decimal):
        return DEC
    if isinstance(value, str):
        return STR
    if isinstance(value, tuple | frozenset):
        return LIST
    return DYN


def _field(name: str) -> _Compiled:
    if name in DECIMAL_FIELDS:
        return _Compiled(_getter(name), DEC)
    if name in _INT_FIELDS:
        return _Compiled(_getter(name), INT)
    if name in _TIME_FIELDS:
        return _Compiled(_time_getter(name), STR)
    if name == "anomaly":
        return _Compiled(_anomaly_rules, DYN)
    if name in _NULLABLE_FIELDS:
        return _Compiled(_getter(name), DYN)
    get = _getter(name)
    if name in ("side", "exec_type", "order_status"):
        return _Compiled(lambda c: _plain(get(c)), STR)
    return _Compiled(get, STR)


def _getter(name: str) -> _Eval:
    return attrgetter(name)


def _anomaly_rules(confirmation: Confirmation) -> object:
    """``anomaly`` as expressions see it: null, or the rules broken joined by commas."""
    anomaly = confirmation.anomaly
    return None if anomaly is None else ",".join(rule.value for rule in anomaly.rules)


def _time_getter(name: str) -> _Eval:
    def get(confirmation: Confirmation) -> object:
        moment: datetime = getattr(confirmation, name)
        return format_time(moment)

    return get


def _plain(value: object) -> object:
    return value.value if isinstance(value, Enum) else value


def _compatible(kind: str, wanted: frozenset[str]) -> bool:
    return kind == DYN or kind in wanted


def _require(part: _Compiled, wanted: frozenset[str], what: str) -> None:
    if not _compatible(part.kind, wanted):
        raise InvalidExpression(f": {what} needs {' or '.join(sorted(wanted))}, got {part.kind}")


def _check_int(value: int) -> int:
    if not _INT_MIN <= value <= _INT_MAX:
        raise EvaluationError("integer overflow")
    return value


def _exact(operation: Callable[[Decimal, Decimal], Decimal], a: object, b: object) -> Decimal:
    try:
        return operation(_as_decimal(a), _as_decimal(b))
    except (Inexact, Overflow) as exc:
        raise EvaluationError("a decimal result does not fit 60 significant digits") from exc
    except (InvalidOperation, DivisionByZero) as exc:
        raise EvaluationError(f"invalid decimal operation: {type(exc).__name__}") from exc


def _as_decimal(value: object) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    raise EvaluationError(f"expected a number, got {_kind_of_value(value)}")


def _arith(symbol: str, a: object, b: object) -> object:
    if isinstance(a, str) and isinstance(b, str) and symbol == "+":
        return a + b
    if isinstance(a, tuple) and isinstance(b, tuple) and symbol == "+":
        return a + b
    for value in (a, b):
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise EvaluationError(f"'{symbol}' needs numbers, got {_kind_of_value(value)}")
    if isinstance(a, int) and isinstance(b, int):
        if symbol == "+":
            return _check_int(a + b)
        if symbol == "-":
            return _check_int(a - b)
        if symbol == "*":
            return _check_int(a * b)
        if b == 0:
            raise EvaluationError(f"'{symbol}' by zero")
        quotient = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)  # truncates, as CEL
        if symbol == "/":
            return _check_int(quotient)
        return a - b * quotient
    if symbol == "+":
        return _exact(_EXACT.add, a, b)
    if symbol == "-":
        return _exact(_EXACT.subtract, a, b)
    if symbol == "*":
        return _exact(_EXACT.multiply, a, b)
    if symbol == "/":
        return _exact(_DIVISION.divide, a, b)
    raise EvaluationError("'%' needs two ints")


def _equals(a: object, b: object) -> bool:
    kind_a, kind_b = _kind_of_value(a), _kind_of_value(b)
    if kind_a in _NUMBERS and kind_b in _NUMBERS:
        return a == b
    if kind_a != kind_b:
        return False
    if kind_a == LIST:
        assert isinstance(a, tuple) and isinstance(b, tuple)
        return len(a) == len(b) and all(_equals(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _compare(symbol: str, a: object, b: object) -> bool:
    kind_a, kind_b = _kind_of_value(a), _kind_of_value(b)
    if not (
        (kind_a in _NUMBERS and kind_b in _NUMBERS) or (kind_a == kind_b and kind_a in (STR, BOOL))
    ):
        raise EvaluationError(f"cannot compare {kind_a} with {kind_b} by '{symbol}'")
    if symbol == "<":
        return a < b  # type: ignore[operator, no-any-return]
    if symbol == "<=":
        return a <= b  # type: ignore[operator, no-any-return]
    if symbol == ">":
        return a > b  # type: ignore[operator, no-any-return]
    return a >= b  # type: ignore[operator, no-any-return]


def _truth(value: object) -> bool:
    if not isinstance(value, bool):
        raise EvaluationError(f"expected a bool, got {_kind_of_value(value)}")
    return value


_ARITHMETIC = {"_+_": "+", "_-_": "-", "_*_": "*", "_/_": "/", "_%_": "%"}
_COMPARISONS = {"_<_": "<", "_<=_": "<=", "_>_": ">", "_>=_": ">="}
_STRING_METHODS: Final[Mapping[str, Callable[[str, str], bool]]] = {
    "startsWith": str.startswith,
    "endsWith": str.endswith,
    "contains": str.__contains__,
}


def _compile(node: _Node) -> _Compiled:
    if node.kind == "const":
        return _const(node.value)
    if node.kind == "ident":
        assert isinstance(node.value, str)
        return _field(node.value)
    if node.kind == "list":
        return _compile_list([_compile(arg) for arg in node.args])
    if node.kind == "call":
        assert isinstance(node.value, str)
        return _compile_call(node.value, node.target, node.args)
    raise InvalidExpression(f": {node.kind} is not supported")


def _compile_list(parts: list[_Compiled]) -> _Compiled:
    if all(part.constant for part in parts):
        return _const(tuple(part.run(_NO_RECORD) for part in parts))
    runs = tuple(part.run for part in parts)
    return _Compiled(lambda c: tuple(run(c) for run in runs), LIST)


def _compile_call(function: str, target: _Node | None, arg_nodes: Sequence[_Node]) -> _Compiled:
    args = [_compile(arg) for arg in arg_nodes]
    if function == "_&&_":
        left, right = args
        _require(left, frozenset({BOOL}), "'&&'")
        _require(right, frozenset({BOOL}), "'&&'")
        return _Compiled(_and(_as_bool(left), _as_bool(right)), BOOL)
    if function == "_||_":
        left, right = args
        _require(left, frozenset({BOOL}), "'||'")
        _require(right, frozenset({BOOL}), "'||'")
        return _Compiled(_or(_as_bool(left), _as_bool(right)), BOOL)
    if function == "!_":
        (operand,) = args
        _require(operand, frozenset({BOOL}), "'!'")
        run = operand.run
        return _Compiled(lambda c: not _truth(run(c)), BOOL)
    if function == "_?_:_":
        condition, yes, no = args
        _require(condition, frozenset({BOOL}), "'? :'")
        test, if_yes, if_no = condition.run, yes.run, no.run
        kind = yes.kind if yes.kind == no.kind else DYN
        return _Compiled(lambda c: if_yes(c) if _truth(test(c)) else if_no(c), kind)
    if function in ("_==_", "_!=_"):
        left, right = args
        equal = _equality(left, right)
        if function == "_==_":
            return _Compiled(equal, BOOL)
        return _Compiled(lambda c: not equal(c), BOOL)
    if function in _COMPARISONS:
        symbol = _COMPARISONS[function]
        left, right = args
        ordered = _NUMBERS | {STR, BOOL}
        _require(left, ordered, f"'{symbol}'")
        _require(right, ordered, f"'{symbol}'")
        if left.kind in _NUMBERS and right.kind not in _NUMBERS | {DYN}:
            raise InvalidExpression(f": '{symbol}' compares a number with {right.kind}")
        if left.kind in (STR, BOOL) and right.kind not in (left.kind, DYN):
            raise InvalidExpression(f": '{symbol}' compares {left.kind} with {right.kind}")
        if DYN not in (left.kind, right.kind):
            return _Compiled(_typed_comparison(symbol, left, right), BOOL)
        a, b = left.run, right.run
        return _Compiled(lambda c: _compare(symbol, a(c), b(c)), BOOL)
    if function in _ARITHMETIC:
        symbol = _ARITHMETIC[function]
        left, right = args
        return _compile_arithmetic(symbol, left, right)
    if function == "-_":
        (operand,) = args
        _require(operand, _NUMBERS, "unary '-'")
        run = operand.run
        return _Compiled(lambda c: _arith("-", 0, run(c)), operand.kind)
    if function == "@in":
        element, container = args
        _require(container, frozenset({LIST}), "'in'")
        return _Compiled(_membership(element, container), BOOL)
    if function == "_[_]":
        container, index = args
        _require(container, frozenset({LIST, STR}), "'[]'")
        _require(index, frozenset({INT}), "'[]'")
        seq, at = container.run, index.run
        return _Compiled(lambda c: _index(seq(c), at(c)), DYN)
    subject = [_compile(target)] if target is not None else []
    if function == "size" and len(subject + args) == 1:
        (operand,) = subject + args
        _require(operand, frozenset({STR, LIST}), "size()")
        run = operand.run
        return _Compiled(lambda c: _size(run(c)), INT)
    if function in _STRING_METHODS and len(subject) == 1 and len(args) == 1:
        method = _STRING_METHODS[function]
        _require(subject[0], frozenset({STR}), f"{function}()")
        _require(args[0], frozenset({STR}), f"{function}()")
        text, needle = subject[0].run, args[0].run
        return _Compiled(lambda c: method(_text(text(c)), _text(needle(c))), BOOL)
    if function == "int" and not subject and len(args) == 1:
        run = args[0].run
        return _Compiled(lambda c: _to_int(run(c)), INT)
    if function == "string" and not subject and len(args) == 1:
        run = args[0].run
        return _Compiled(lambda c: _to_string(run(c)), STR)
    raise InvalidExpression(
        f": the function {function.strip('_@')!r} is not supported; supported: "
        "&&, ||, !, ? :, ==, !=, <, <=, >, >=, +, -, *, /, %, in, [], size, startsWith, "
        "endsWith, contains, int, string"
    )


def _compile_arithmetic(symbol: str, left: _Compiled, right: _Compiled) -> _Compiled:
    allowed = _NUMBERS | ({STR, LIST} if symbol == "+" else set())
    if symbol == "%":
        allowed = frozenset({INT})
    _require(left, frozenset(allowed), f"'{symbol}'")
    _require(right, frozenset(allowed), f"'{symbol}'")
    if DYN not in (left.kind, right.kind) and (
        (left.kind in _NUMBERS) != (right.kind in _NUMBERS)
        or (left.kind not in _NUMBERS and left.kind != right.kind)
    ):
        raise InvalidExpression(f": '{symbol}' of {left.kind} and {right.kind} is not defined")
    if left.kind == right.kind == INT:
        kind = INT
    elif left.kind in _NUMBERS and right.kind in _NUMBERS:
        kind = DEC
    elif left.kind == right.kind:
        kind = left.kind
    else:
        kind = DYN
    if kind == DEC and symbol in _EXACT_OPERATIONS:
        # both sides are numbers whatever the record: the context does the work, and its
        # traps (Inexact, Overflow) surface as EvaluationError in Expression.matches
        return _Compiled(_binary(_EXACT_OPERATIONS[symbol], left, right), DEC)
    a, b = left.run, right.run
    return _Compiled(lambda c: _arith(symbol, a(c), b(c)), kind)


_EXACT_OPERATIONS: Final[Mapping[str, Callable[[object, object], object]]] = {
    "+": _EXACT.add,  # type: ignore[dict-item]
    "-": _EXACT.subtract,  # type: ignore[dict-item]
    "*": _EXACT.multiply,  # type: ignore[dict-item]
}
_ORDERINGS: Final[Mapping[str, Callable[[object, object], object]]] = {
    "<": operator.lt,  # type: ignore[dict-item]
    "<=": operator.le,  # type: ignore[dict-item]
    ">": operator.gt,  # type: ignore[dict-item]
    ">=": operator.ge,  # type: ignore[dict-item]
}


def _binary(
    operation: Callable[[object, object], object], left: _Compiled, right: _Compiled
) -> _Eval:
    """``operation(left, right)`` with a constant side captured as a value, not a call."""
    a, b = left.run, right.run
    if right.constant:
        k = b(_NO_RECORD)
        return lambda c: operation(a(c), k)
    if left.constant:
        k = a(_NO_RECORD)
        return lambda c: operation(k, b(c))
    return lambda c: operation(a(c), b(c))


def _typed_comparison(symbol: str, left: _Compiled, right: _Compiled) -> _Eval:
    """Both kinds known and compatible (checked by the caller): Python's own ordering is
    CEL's here (int and Decimal compare exactly, strings by code point)."""
    return _binary(_ORDERINGS[symbol], left, right)


def _as_bool(part: _Compiled) -> Callable[[Confirmation], bool]:
    """``part`` as a function that returns a bool or raises EvaluationError."""
    run = part.run
    if part.kind == BOOL:
        return run  # type: ignore[return-value]
    return lambda c: _truth(run(c))


def _and(left: Callable[[Confirmation], bool], right: Callable[[Confirmation], bool]) -> _Eval:
    def run(c: Confirmation) -> bool:
        # CEL's && is commutative over errors: false on either side decides.
        try:
            if not left(c):
                return False
        except _FAILURES as exc:
            if not right(c):
                return False
            raise _failure(exc) from exc
        return right(c)

    return run


def _or(left: Callable[[Confirmation], bool], right: Callable[[Confirmation], bool]) -> _Eval:
    def run(c: Confirmation) -> bool:
        try:
            if left(c):
                return True
        except _FAILURES as exc:
            if right(c):
                return True
            raise _failure(exc) from exc
        return right(c)

    return run


_FAILURES = (EvaluationError, ArithmeticError, TypeError, ValueError)
"""What evaluating a part may raise: ours, and the decimal context's traps on the fast paths
(Inexact, Overflow, InvalidOperation and DivisionByZero are ArithmeticErrors)."""


def _failure(exc: BaseException) -> EvaluationError:
    if isinstance(exc, EvaluationError):
        return exc
    if isinstance(exc, Inexact | Overflow):
        return EvaluationError("a decimal result does not fit 60 significant digits")
    return EvaluationError(f"{type(exc).__name__}: {exc}")


def _equality(left: _Compiled, right: _Compiled) -> _Eval:
    if (left.kind == right.kind == STR) or (left.kind in _NUMBERS and right.kind in _NUMBERS):
        return _binary(operator.eq, left, right)
    a, b = left.run, right.run
    return lambda c: _equals(a(c), b(c))


def _membership(element: _Compiled, container: _Compiled) -> _Eval:
    item = element.run
    if container.constant:
        values = container.run(_NO_RECORD)
        assert isinstance(values, tuple)
        if all(isinstance(v, str) for v in values) and element.kind == STR:
            fast = frozenset(values)
            return lambda c: item(c) in fast
        return lambda c: _contains(values, item(c))
    seq = container.run
    return lambda c: _contains(seq(c), item(c))


def _contains(values: object, item: object) -> bool:
    if not isinstance(values, tuple):
        raise EvaluationError(f"'in' needs a list, got {_kind_of_value(values)}")
    return any(_equals(item, value) for value in values)


def _index(container: object, at: object) -> object:
    if not isinstance(at, int) or isinstance(at, bool):
        raise EvaluationError("an index must be an int")
    if not isinstance(container, tuple | str) or not 0 <= at < len(container):
        raise EvaluationError(f"index {at} out of range")
    if isinstance(container, str):
        raise EvaluationError("strings cannot be indexed in CEL")
    return container[at]


def _size(value: object) -> int:
    if not isinstance(value, str | tuple):
        raise EvaluationError(f"size() needs a string or a list, got {_kind_of_value(value)}")
    return len(value)


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise EvaluationError(f"expected a string, got {_kind_of_value(value)}")
    return value


def _to_int(value: object) -> int:
    if isinstance(value, bool):
        raise EvaluationError("int() of a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        return _check_int(int(value))  # truncates toward zero, as CEL's int(double)
    if isinstance(value, str):
        try:
            return _check_int(int(value, 10))
        except ValueError as exc:
            raise EvaluationError(f"int() of {value!r}") from exc
    raise EvaluationError(f"int() of {_kind_of_value(value)}")


def _to_string(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return format_decimal(value)
    raise EvaluationError(f"string() of {_kind_of_value(value)}")


class _NoRecord:
    """Evaluates constant parts at compile time; touching a field is a bug."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"constant part read the field {name}")


_NO_RECORD: Final = cast(Confirmation, _NoRecord())


# ---- what the routing index reads off an expression --------------------------------------


def _equality_terms(node: _Node) -> dict[str, frozenset[str]]:
    """For each indexed field, the values a matching record must have there, from the
    conjuncts at the top of the expression: ``field == "v"``, ``"v" == field`` and
    ``field in ["v", ...]``. Anything else (``||``, ``!=``, a computed value) adds nothing."""
    terms: dict[str, frozenset[str]] = {}
    pending = [node]
    while pending:
        current = pending.pop()
        if current.kind != "call":
            continue
        if current.value == "_&&_":
            pending.extend(current.args)
            continue
        found = _term(current)
        if found is None:
            continue
        name, values = found
        terms[name] = terms[name] & values if name in terms else values
    return terms


def _term(node: _Node) -> tuple[str, frozenset[str]] | None:
    if len(node.args) != 2:
        return None
    left, right = node.args
    if node.value == "_==_":
        if right.kind == "ident":
            left, right = right, left
        if left.kind == "ident" and right.kind == "const" and isinstance(right.value, str):
            return _indexed(left, (right.value,))
    if (
        node.value == "@in"
        and left.kind == "ident"
        and right.kind == "list"
        and all(e.kind == "const" and isinstance(e.value, str) for e in right.args)
    ):
        return _indexed(left, tuple(str(e.value) for e in right.args))
    return None


def _indexed(ident: _Node, values: tuple[str, ...]) -> tuple[str, frozenset[str]] | None:
    name = str(ident.value)
    if name not in _INDEXED_FIELDS:
        return None
    allowed = _ENUM_VALUES.get(name)
    kept = frozenset(v for v in values if allowed is None or v in allowed)
    return _INDEXED_FIELDS[name], kept


# ---- the public face -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled filter expression; equal when the source text is equal."""

    source: str
    """The text as the subscriber wrote it; what is stored and shown."""
    _run: Callable[[Confirmation], bool] = field(compare=False, repr=False)
    equality_terms: Mapping[str, frozenset[str]] = field(compare=False, repr=False)
    """Filter attribute (``accounts``, ``symbols``, ``venues``, ``exec_types``, ``sides``) ->
    the values every matching confirmation has there; the routing index files on them."""

    def matches(self, confirmation: Confirmation) -> bool:
        """Whether ``confirmation`` satisfies the expression; :class:`EvaluationError` when it
        cannot be evaluated on this record."""
        try:
            return self._run(confirmation)
        except _FAILURES as exc:
            raise _failure(exc) from exc


def compile_expression(source: str) -> Expression:
    """Parse, type-check and compile ``source``; :class:`InvalidExpression` says what is wrong.

    Compiled expressions are cached by text, so the subscriptions of every worker (and several
    subscriptions with one expression) compile each text once.
    """
    if not isinstance(source, str):
        raise InvalidExpression(" must be a string (a CEL expression) or null")
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise InvalidExpression(
            f" must be at most {MAX_EXPRESSION_LENGTH} characters, got {len(source)}"
        )
    if not source.strip():
        raise InvalidExpression(" must not be empty or blank; use null to match all")
    return _compile_cached(source)


@lru_cache(maxsize=4096)
def _compile_cached(source: str) -> Expression:
    tree = _checked_tree(source)
    compiled = _compile(tree)
    if not _compatible(compiled.kind, frozenset({BOOL})):
        raise InvalidExpression(f" must be a boolean expression, got {compiled.kind}")
    return Expression(source, _as_bool(compiled), _equality_terms(tree))
