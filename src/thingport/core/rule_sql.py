"""The rules' SQL dialect: ``SELECT ... FROM "<topic filter>" [WHERE ...]`` over one message's JSON payload.

Modelled on Alibaba Cloud IoT Platform's data forwarding SQL (the seeds' platform): the payload is a row
whose columns are its keys, fields are reached by dotted paths (``params.temperature``, ``items[0].v``),
and functions give the message's context (``deviceName()``, ``productKey()``, ``topic()``, ``timestamp()``).
A statement is parsed once (lark, an LALR grammar: a syntax error names its line and column) and compiled to
Python closures, so evaluating it per message is a few function calls per expression node.

Evaluation is strict, as a rule engine that forwards data must be: a field a statement names but the
payload lacks, or an operator applied to the wrong types, fails that message with ``RuleEvalError`` (the
rule records why and moves on); it never forwards a silently half-filled document.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from thingport.core.topics import compile_topic_filter

STATEMENT_MAX = 4096  # characters

_GRAMMAR = r"""
    ?start: statement
    statement: _SELECT select_list _FROM TOPIC [_WHERE expr]
    select_list: select_item ("," select_item)*
    select_item: "*"                -> select_all
               | expr [_AS NAME]    -> select_expr

    ?expr: or_expr
    ?or_expr: and_expr (_OR and_expr)*          -> or_
    ?and_expr: not_expr (_AND not_expr)*        -> and_
    ?not_expr: _NOT not_expr                    -> not_
             | comparison
    ?comparison: sum (COMPARE sum)?             -> compare
               | sum _IS _NULL                  -> is_null
               | sum _IS _NOT _NULL             -> is_not_null
    ?sum: product (ADD product)*                -> arith
    ?product: unary (MUL unary)*                -> arith
    ?unary: "-" unary                           -> negate
          | atom
    ?atom: NUMBER                               -> number
         | STRING                               -> string
         | _TRUE                                -> true
         | _FALSE                               -> false
         | _NULL                                -> null
         | NAME "(" [expr ("," expr)*] ")"      -> call
         | path
         | "(" expr ")"
    path: NAME ("." NAME | "[" INDEX "]")*

    COMPARE: "<=" | ">=" | "<>" | "!=" | "=" | "<" | ">"
    ADD: "+" | "-"
    MUL: "*" | "/" | "%"
    INDEX: /[0-9]+/
    NUMBER: /[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?/
    STRING: /'([^'\\]|\\.)*'/
    TOPIC: /"[^"]*"/
    NAME: /(?!(?i:select|from|where|as|and|or|not|is|null|true|false)\b)[A-Za-z_][A-Za-z0-9_]*/
         | /`[^`]+`/

    _SELECT: /select\b/i
    _FROM: /from\b/i
    _WHERE: /where\b/i
    _AS: /as\b/i
    _AND: /and\b/i
    _OR: /or\b/i
    _NOT: /not\b/i
    _IS: /is\b/i
    _NULL: /null\b/i
    _TRUE: /true\b/i
    _FALSE: /false\b/i

    %import common.WS
    %ignore WS
"""

_PARSER = Lark(_GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=True)


class RuleSyntaxError(ValueError):
    """A statement that does not compile; ``line`` and ``column`` (1-based) say where, when known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        where = f" at line {line}, column {column}" if line is not None else ""
        super().__init__(f"{message}{where}")
        self.line = line
        self.column = column


class RuleEvalError(ValueError):
    """One message the statement cannot be evaluated on (a field missing, a type mismatch): it is skipped
    with this reason, and the rule goes on with the next message."""


@dataclass(frozen=True, slots=True)
class MessageContext:
    """What the functions know about the message besides its payload."""

    product_key: str
    device_name: str
    topic: str
    received_ms: int
    message_id: int
    device_id: str | None = None


Evaluator = Callable[[Any, MessageContext], Any]


class _Missing(Exception):
    pass


def _field(path: tuple[str | int, ...], text: str) -> Evaluator:
    def get(doc: Any, ctx: MessageContext) -> Any:
        value = doc
        for step in path:
            try:
                value = value[step]
            except (KeyError, IndexError, TypeError):
                raise RuleEvalError(f"the payload has no {text}") from None
        return value

    first = path[0]
    if len(path) == 1 and isinstance(first, str):
        def get_one(doc: Any, ctx: MessageContext) -> Any:
            try:
                return doc[first]
            except (KeyError, TypeError):
                raise RuleEvalError(f"the payload has no {text}") from None
        return get_one
    return get


def _number(value: Any, what: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RuleEvalError(f"{what} needs a number, not {_show(value)}")
    return value


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, Mapping):
        return "an object"
    return "an array" if isinstance(value, Sequence) else type(value).__name__


def _truth(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    raise RuleEvalError(f"{what} needs a boolean, not {_show(value)}")


def _comparable(a: Any, b: Any, op: str) -> None:
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        if op in ("=", "!=", "<>"):
            return
        raise RuleEvalError(f"{op} cannot order {_show(a)} and {_show(b)}")
    if isinstance(a, numbers) and isinstance(b, numbers):
        return
    if isinstance(a, str) and isinstance(b, str):
        return
    raise RuleEvalError(f"{op} cannot compare {_show(a)} with {_show(b)}")


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _arith(op: str, a: Any, b: Any) -> Any:
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    x, y = _number(a, op), _number(b, op)
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    if y == 0:
        raise RuleEvalError(f"{op} by zero")
    if op == "/":
        return x / y
    return x % y


def _binary(op: str, left: Evaluator, right: Evaluator) -> Evaluator:
    return lambda doc, ctx: _arith(op, left(doc, ctx), right(doc, ctx))


def _round(value: Any, digits: Any = 0) -> Any:
    number = _number(value, "round()")
    places = _number(digits, "round()")
    if not isinstance(places, int):
        raise RuleEvalError("round() takes a whole number of digits")
    result = round(number, places)
    return int(result) if places <= 0 else result


def _concat(*values: Any) -> str:
    parts = []
    for value in values:
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(str(value))
        else:
            raise RuleEvalError(f"concat() takes strings and numbers, not {_show(value)}")
    return "".join(parts)


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise RuleEvalError(f"{what} needs a string, not {_show(value)}")
    return value


# name -> (fewest args, most args, implementation over evaluated args, uses the context)
_PURE: dict[str, tuple[int, int, Callable[..., Any]]] = {
    "abs": (1, 1, lambda x: abs(_number(x, "abs()"))),
    "round": (1, 2, _round),
    "floor": (1, 1, lambda x: math.floor(_number(x, "floor()"))),
    "ceil": (1, 1, lambda x: math.ceil(_number(x, "ceil()"))),
    "concat": (1, 16, _concat),
    "lower": (1, 1, lambda s: _string(s, "lower()").lower()),
    "upper": (1, 1, lambda s: _string(s, "upper()").upper()),
    "startswith": (2, 2, lambda s, p: _string(s, "startswith()").startswith(_string(p, "startswith()"))),
    "endswith": (2, 2, lambda s, p: _string(s, "endswith()").endswith(_string(p, "endswith()"))),
}


def _topic_level(ctx: MessageContext, level: Any) -> str:
    number = _number(level, "topic()")
    parts = ctx.topic.split("/")  # "/pk/dn/user/x" -> "", "pk", ...
    if not isinstance(number, int) or not 1 <= number < len(parts):
        raise RuleEvalError(f"topic() has no level {level}")
    return parts[number]


_CONTEXT: dict[str, tuple[int, int, Callable[..., Any]]] = {
    "devicename": (0, 0, lambda ctx: ctx.device_name),
    "productkey": (0, 0, lambda ctx: ctx.product_key),
    "deviceid": (0, 0, lambda ctx: ctx.device_id),
    "timestamp": (0, 0, lambda ctx: ctx.received_ms),
    "messageid": (0, 0, lambda ctx: ctx.message_id),
    "topic": (0, 1, lambda ctx, *level: _topic_level(ctx, level[0]) if level else ctx.topic),
}

FUNCTIONS = sorted([*_PURE, "deviceName", "productKey", "deviceId", "timestamp", "messageId", "topic"])


class _Compile(Transformer[Token, Any]):
    """Tree -> closures. Each expression method returns an Evaluator."""

    @v_args(inline=True)
    def number(self, token: Token) -> Evaluator:
        text = str(token)
        value: int | float = float(text) if any(c in text for c in ".eE") else int(text)
        return lambda doc, ctx: value

    @v_args(inline=True)
    def string(self, token: Token) -> Evaluator:
        value = str(token)[1:-1].replace("\\'", "'").replace("\\\\", "\\")
        return lambda doc, ctx: value

    def true(self, _: list[Any]) -> Evaluator:
        return lambda doc, ctx: True

    def false(self, _: list[Any]) -> Evaluator:
        return lambda doc, ctx: False

    def null(self, _: list[Any]) -> Evaluator:
        return lambda doc, ctx: None

    def path(self, items: list[Token]) -> Evaluator:
        steps: list[str | int] = []
        for item in items:
            if item.type == "INDEX":
                steps.append(int(item))
            else:
                steps.append(_name(item))
        text = ".".join(str(s) if isinstance(s, str) else f"[{s}]" for s in steps).replace(".[", "[")
        evaluator = _field(tuple(steps), text)
        evaluator.column_name = str(steps[-1]) if isinstance(steps[-1], str) else None  # type: ignore[attr-defined]
        return evaluator

    def call(self, items: list[Any]) -> Evaluator:
        name_token, *args = items
        args = [a for a in args if a is not None]
        name = str(name_token)
        key = name.lower()
        if key in _CONTEXT:
            fewest, most, fn = _CONTEXT[key]
            _arity(name_token, fewest, most, len(args))
            if not args:
                return lambda doc, ctx: fn(ctx)
            return lambda doc, ctx: fn(ctx, *(a(doc, ctx) for a in args))
        if key in _PURE:
            fewest, most, pure = _PURE[key]
            _arity(name_token, fewest, most, len(args))
            if len(args) == 1:
                only = args[0]
                return lambda doc, ctx: pure(only(doc, ctx))
            return lambda doc, ctx: pure(*(a(doc, ctx) for a in args))
        raise RuleSyntaxError(f"unknown function {name}() (known: {', '.join(FUNCTIONS)})",
                              name_token.line, name_token.column)

    @v_args(inline=True)
    def negate(self, operand: Evaluator) -> Evaluator:
        return lambda doc, ctx: -_number(operand(doc, ctx), "-")

    def arith(self, items: list[Any]) -> Evaluator:
        result: Evaluator = items[0]
        for i in range(1, len(items), 2):
            result = _binary(str(items[i]), result, items[i + 1])
        return result

    def compare(self, items: list[Any]) -> Evaluator:
        if len(items) == 1:
            return items[0]  # type: ignore[no-any-return]
        left, op_token, right = items
        op = str(op_token)
        test = _COMPARE[op]

        def compared(doc: Any, ctx: MessageContext) -> bool:
            a, b = left(doc, ctx), right(doc, ctx)
            _comparable(a, b, op)
            return test(a, b)

        return compared

    @v_args(inline=True)
    def is_null(self, operand: Evaluator) -> Evaluator:
        def null(doc: Any, ctx: MessageContext) -> bool:
            try:
                return operand(doc, ctx) is None
            except RuleEvalError:  # an absent field is null here: IS NULL is how a statement asks
                return True
        return null

    @v_args(inline=True)
    def is_not_null(self, operand: Evaluator) -> Evaluator:
        null = self.is_null(operand)
        return lambda doc, ctx: not null(doc, ctx)

    def and_(self, items: list[Evaluator]) -> Evaluator:
        if len(items) == 1:
            return items[0]
        return lambda doc, ctx: all(_truth(item(doc, ctx), "AND") for item in items)

    def or_(self, items: list[Evaluator]) -> Evaluator:
        if len(items) == 1:
            return items[0]
        return lambda doc, ctx: any(_truth(item(doc, ctx), "OR") for item in items)

    @v_args(inline=True)
    def not_(self, operand: Evaluator) -> Evaluator:
        return lambda doc, ctx: not _truth(operand(doc, ctx), "NOT")

    def select_all(self, _: list[Any]) -> tuple[str, None]:
        return ("*", None)

    @v_args(meta=True)
    def select_expr(self, meta: Any, items: list[Any]) -> tuple[str, Evaluator]:
        evaluator, alias = items
        if alias is not None:
            return (_name(alias), evaluator)
        column = getattr(evaluator, "column_name", None)
        if column is None:
            raise RuleSyntaxError("an expression in SELECT needs a name: add AS <name>", meta.line, meta.column)
        return (column, evaluator)

    def select_list(self, items: list[tuple[str, Evaluator | None]]) -> list[tuple[str, Evaluator | None]]:
        names = [name for name, _ in items if name != "*"]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise RuleSyntaxError(f"SELECT names {', '.join(duplicated)} twice")
        return items

    def statement(self, items: list[Any]) -> tuple[list[tuple[str, Evaluator | None]], Token, Evaluator | None]:
        select, topic, where = items
        return select, topic, where


def _name(token: Token) -> str:
    text = str(token)
    return text[1:-1] if text.startswith("`") else text


def _arity(token: Token, fewest: int, most: int, given: int) -> None:
    if not fewest <= given <= most:
        wanted = str(fewest) if fewest == most else f"{fewest} to {most}"
        raise RuleSyntaxError(f"{token}() takes {wanted} argument(s), not {given}", token.line, token.column)


@dataclass(frozen=True)
class RuleStatement:
    """A compiled statement. ``evaluate`` gives the document to emit, or None when WHERE is false."""

    text: str
    topic_filter: str  # MQTT-style, as a subscription's: ``+`` one level, a trailing ``#`` any
    _matches: Callable[[str], bool]
    _select: tuple[tuple[str, Evaluator | None], ...]
    _where: Evaluator | None

    def matches_topic(self, topic: str) -> bool:
        return bool(self._matches(topic))

    def evaluate(self, payload: Any, context: MessageContext) -> dict[str, Any] | None:
        where = self._where
        if where is not None and not _truth(where(payload, context), "WHERE"):
            return None
        out: dict[str, Any] = {}
        for name, evaluator in self._select:
            if evaluator is None:
                if not isinstance(payload, Mapping):
                    raise RuleEvalError(f"SELECT * needs a JSON object payload, not {_show(payload)}")
                out.update(payload)
            else:
                out[name] = evaluator(payload, context)
        return out


def compile_statement(text: str) -> RuleStatement:
    """Parse and compile ``text``; RuleSyntaxError (with its position) when it is not a statement."""
    if len(text) > STATEMENT_MAX:
        raise RuleSyntaxError(f"a statement is at most {STATEMENT_MAX} characters")
    try:
        tree = _PARSER.parse(text)
        select, topic, where = _Compile().transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, RuleSyntaxError):
            raise exc.orig_exc from None
        raise
    except UnexpectedEOF:
        raise RuleSyntaxError("the statement ends too early", *_end(text)) from None
    except UnexpectedToken as exc:
        if exc.token.type == "$END":
            raise RuleSyntaxError("the statement ends too early", *_end(text)) from None
        raise RuleSyntaxError(f"unexpected {exc.token!s}", exc.line, exc.column) from None
    except UnexpectedCharacters as exc:
        raise RuleSyntaxError(f"unexpected character {text[exc.pos_in_stream or 0]!r}", exc.line, exc.column) from None
    except UnexpectedInput as exc:  # any other parse failure lark knows a position for
        raise RuleSyntaxError("not a statement", exc.line, exc.column) from None
    topic_text = str(topic)[1:-1]
    try:
        matches = compile_topic_filter(topic_text)
    except ValueError as exc:
        raise RuleSyntaxError(f"FROM: {exc}", topic.line, topic.column) from None
    return RuleStatement(text, topic_text, matches, tuple(select), where)


def _end(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    return len(lines), len(lines[-1]) + 1
