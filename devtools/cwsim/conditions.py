"""The ConnectWise `conditions` grammar: tokenizer, recursive-descent parser, compiler to a predicate.

Pure module (no I/O). `parse(text)` turns a condition string into an AST or raises `ConditionError`;
`compile_condition(ast, fields)` checks every field name and literal type against a model's field table
and returns `predicate(record_dict) -> bool`.

Grammar (keywords and field names are case-insensitive)::

    expr       := and_expr ( OR and_expr )*
    and_expr   := unary ( AND unary )*
    unary      := NOT unary | '(' expr ')' | comparison
    comparison := path op value
    op         := '=' | '!=' | '<' | '<=' | '>' | '>=' | [NOT] (CONTAINS | LIKE | IN)
    value      := STRING | NUMBER | '[' datetime ']' | TRUE | FALSE | NULL | '(' value (',' value)* ')'
    path       := name ( '/' name )*

Strings are in double or single quotes; inside them a quote is written doubled (`"a""b"`) or
backslash-escaped (`"a\\"b"`), and `\\\\` is a backslash. `like` accepts `*` and `%` as wildcards and `[[]`
for a literal `[`. `lastUpdated` is accepted as an alias of `_info/lastUpdated`.

Semantics follow the SQL the real API translates to: string comparisons are case-insensitive, and any
comparison with a missing (null) field is false except `= null` / `!= null`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal

Record = Mapping[str, Any]
Predicate = Callable[[Record], bool]
Kind = Literal["int", "number", "string", "bool", "datetime", "ref"]


class ConditionError(ValueError):
    """A malformed or invalid condition; `position` is the 0-based character offset, when known."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position

    def __str__(self) -> str:
        if self.position is None:
            return self.message
        return f"{self.message} (at position {self.position})"


# ---------------------------------------------------------------------------------------------- tokens

TokenKind = Literal["name", "string", "number", "datetime", "op", "lparen", "rparen", "comma", "end"]


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str
    value: object
    position: int


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?![A-Za-z_])")
_OPS = ("<=", ">=", "!=", "<>", "=", "<", ">")


def tokenize(text: str) -> list[Token]:
    """Split `text` into tokens; raises `ConditionError` on an unterminated string or stray character."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch == "(":
            tokens.append(Token("lparen", ch, None, i))
            i += 1
        elif ch == ")":
            tokens.append(Token("rparen", ch, None, i))
            i += 1
        elif ch == ",":
            tokens.append(Token("comma", ch, None, i))
            i += 1
        elif ch in "\"'":
            value, end = _read_string(text, i)
            tokens.append(Token("string", text[i:end], value, i))
            i = end
        elif ch == "[":
            end = text.find("]", i + 1)
            if end < 0:
                raise ConditionError("unterminated datetime literal", i)
            tokens.append(Token("datetime", text[i : end + 1], parse_datetime(text[i + 1 : end], i), i))
            i = end + 1
        elif ch in "<>=!":
            op = next((o for o in _OPS if text.startswith(o, i)), None)
            if op is None or op == "<>":
                raise ConditionError(f"unknown operator {text[i : i + 2]!r}", i)
            tokens.append(Token("op", op, op, i))
            i += len(op)
        elif (m := _NUMBER.match(text, i)) is not None:
            raw = m.group()
            tokens.append(Token("number", raw, float(raw) if "." in raw else int(raw), i))
            i = m.end()
        elif (m := _NAME.match(text, i)) is not None:
            tokens.append(Token("name", m.group(), m.group(), i))
            i = m.end()
        else:
            raise ConditionError(f"unexpected character {ch!r}", i)
    tokens.append(Token("end", "", None, n))
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    i, n = start + 1, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n and text[i + 1] in ("\\", quote):
            out.append(text[i + 1])
            i += 2
        elif ch == quote:
            if i + 1 < n and text[i + 1] == quote:  # doubled quote = one literal quote
                out.append(quote)
                i += 2
            else:
                return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise ConditionError("unterminated string literal", start)


def parse_datetime(raw: str, position: int | None = None) -> datetime:
    """Parse a datetime literal (ISO-8601; `Z`, an offset, or naive = UTC) into an aware UTC datetime."""
    text = raw.strip()
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ConditionError(f"invalid datetime {raw!r}", position) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


# ---------------------------------------------------------------------------------------------- AST

Scalar = str | int | float | bool | datetime | None


@dataclass(frozen=True, slots=True)
class Comparison:
    path: str  # as written, e.g. "company/id"
    op: str  # "=", "!=", "<", "<=", ">", ">=", "contains", "like", "in"
    value: Scalar | tuple[Scalar, ...]
    negated: bool = False  # `not contains`, `not like`, `not in`
    position: int = 0


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


Node = Comparison | And | Or | Not

_WORD_OPS = ("contains", "like", "in")


MAX_DEPTH = 64  # parentheses / `not` nesting; deeper input is refused, never a RecursionError


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def _at(self, kind: TokenKind) -> bool:
        return self.tokens[self.i].kind == kind

    def _is_word(self, *words: str) -> bool:
        return self.tok.kind == "name" and self.tok.text.lower() in words

    def _take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def parse(self) -> Node:
        if self._at("end"):
            raise ConditionError("empty condition", 0)
        node = self._or()
        if not self._at("end"):
            raise ConditionError(f"unexpected {self.tok.text!r}", self.tok.position)
        return node

    def _or(self) -> Node:
        items = [self._and()]
        while self._is_word("or"):
            self._take()
            items.append(self._and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def _and(self) -> Node:
        items = [self._unary()]
        while self._is_word("and"):
            self._take()
            items.append(self._unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def _unary(self) -> Node:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise ConditionError("condition is nested too deeply", self.tok.position)
            return self._unary_inner()
        finally:
            self.depth -= 1

    def _unary_inner(self) -> Node:
        if self._is_word("not"):
            self._take()
            return Not(self._unary())
        if self._at("lparen"):
            self._take()
            node = self._or()
            if not self._at("rparen"):
                raise ConditionError("expected ')'", self.tok.position)
            self._take()
            return node
        return self._comparison()

    def _comparison(self) -> Comparison:
        field = self.tok
        if field.kind != "name" or field.text.lower() in ("and", "or", "not", *_WORD_OPS):
            raise ConditionError(
                f"expected a field name, found {field.text or 'end of input'!r}", field.position
            )
        self._take()
        negated = False
        if self._is_word("not"):
            self._take()
            negated = True
            if not self._is_word(*_WORD_OPS):
                raise ConditionError("expected contains, like or in after not", self.tok.position)
        op_tok = self.tok
        if op_tok.kind == "op":
            op = op_tok.text
        elif self._is_word(*_WORD_OPS):
            op = op_tok.text.lower()
        else:
            raise ConditionError(
                f"expected an operator after {field.text!r}, found {op_tok.text or 'end of input'!r}",
                op_tok.position,
            )
        self._take()
        value: Scalar | tuple[Scalar, ...] = self._list() if op == "in" else self._scalar()
        if op in ("contains", "like") and not isinstance(value, str):
            raise ConditionError(f"{op} needs a string value", op_tok.position)
        return Comparison(field.text, op, value, negated, field.position)

    def _list(self) -> tuple[Scalar, ...]:
        if not self._at("lparen"):
            raise ConditionError("in needs a parenthesised list", self.tok.position)
        self._take()
        values = [self._scalar()]
        while self._at("comma"):
            self._take()
            values.append(self._scalar())
        if not self._at("rparen"):
            raise ConditionError("expected ',' or ')' in list", self.tok.position)
        self._take()
        return tuple(values)

    def _scalar(self) -> Scalar:
        tok = self.tok
        if tok.kind in ("string", "number", "datetime"):
            self._take()
            return tok.value  # type: ignore[return-value]
        if tok.kind == "name":
            word = tok.text.lower()
            if word in ("true", "false", "null"):
                self._take()
                return {"true": True, "false": False, "null": None}[word]
        raise ConditionError(f"expected a value, found {tok.text or 'end of input'!r}", tok.position)


def parse(text: str) -> Node:
    """Parse a `conditions` string into an AST; raises `ConditionError` when malformed."""
    return _Parser(text).parse()


# ---------------------------------------------------------------------------------------------- fields


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One filterable path of a model: its canonical key path and its JSON kind."""

    keys: tuple[str, ...]
    kind: Kind


class FieldTable:
    """Case-insensitive lookup from a condition path (`Company/ID`, `lastUpdated`) to a `FieldSpec`."""

    def __init__(self, fields: Mapping[str, Kind], aliases: Mapping[str, str] | None = None) -> None:
        self._by_lower: dict[str, FieldSpec] = {
            path.lower(): FieldSpec(tuple(path.split("/")), kind) for path, kind in fields.items()
        }
        for alias, target in (aliases or {}).items():
            self._by_lower[alias.lower()] = self._by_lower[target.lower()]

    def resolve(self, path: str) -> FieldSpec | None:
        return self._by_lower.get(path.lower())


def getter(keys: Sequence[str]) -> Callable[[Record], Any]:
    """A fast accessor for a nested key path; returns None when any step is missing."""
    if len(keys) == 1:
        (k0,) = keys

        def get1(r: Record) -> Any:
            return r.get(k0)

        return get1
    if len(keys) == 2:
        k0, k1 = keys

        def get2(r: Record) -> Any:
            inner = r.get(k0)
            return inner.get(k1) if isinstance(inner, dict) else None

        return get2
    keys_t = tuple(keys)

    def get_n(r: Record) -> Any:
        value: Any = r
        for k in keys_t:
            if not isinstance(value, dict):
                return None
            value = value.get(k)
        return value

    return get_n


@lru_cache(maxsize=65536)
def field_datetime(value: str) -> datetime | None:
    """Parse a stored datetime string (cached); None when it is not a datetime."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------------- compile


def compile_condition(node: Node, table: FieldTable) -> Predicate:
    """Compile an AST into a predicate over record dicts; raises `ConditionError` for an unknown field,
    an operator the field's type does not support, or a literal of the wrong type."""
    if isinstance(node, And):
        parts = [compile_condition(item, table) for item in node.items]
        return lambda r: all(p(r) for p in parts)
    if isinstance(node, Or):
        parts = [compile_condition(item, table) for item in node.items]
        return lambda r: any(p(r) for p in parts)
    if isinstance(node, Not):
        inner = compile_condition(node.item, table)
        return lambda r: not inner(r)
    return _compile_comparison(node, table)


def _coerce(value: Scalar, kind: Kind, node: Comparison) -> Scalar:
    """Check a literal against the field's kind and normalise it for comparison."""
    if value is None:
        return None
    bad = ConditionError(f"value {value!r} does not match the type of {node.path} ({kind})", node.position)
    if kind == "datetime":
        if not isinstance(value, datetime):
            raise bad
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad
        return value
    if kind in ("int", "number"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        return value
    if kind == "string":
        if isinstance(value, datetime | bool):
            raise bad
        return str(value).casefold()
    raise ConditionError(
        f"{node.path} is a reference; compare one of its fields, e.g. {node.path}/id", node.position
    )


def like_regex(pattern: str) -> re.Pattern[str]:
    """Translate a `like` pattern (`*`/`%` wildcards, `[[]` = literal `[`) to an anchored regex."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("[[]", i):
            out.append(re.escape("["))
            i += 3
            continue
        ch = pattern[i]
        out.append(".*" if ch in "*%" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def _compile_comparison(node: Comparison, table: FieldTable) -> Predicate:
    spec = table.resolve(node.path)
    if spec is None:
        raise ConditionError(f"unknown field {node.path!r}", node.position)
    get = getter(spec.keys)
    kind = spec.kind
    op = node.op

    if op in ("contains", "like"):
        if kind != "string":
            raise ConditionError(f"{op} applies to string fields, not {node.path} ({kind})", node.position)
        assert isinstance(node.value, str)
        if op == "contains":
            needle = node.value.casefold()

            def matches(v: Any) -> bool:
                return needle in v.casefold()

        else:
            regex = like_regex(node.value)

            def matches(v: Any) -> bool:
                return regex.fullmatch(v) is not None

        if node.negated:
            return lambda r: isinstance(v := get(r), str) and not matches(v)
        return lambda r: isinstance(v := get(r), str) and matches(v)

    to_cmp = _normaliser(kind)
    if op == "in":
        assert isinstance(node.value, tuple)
        wanted = frozenset(_coerce(v, kind, node) for v in node.value)
        has_null = None in wanted
        if node.negated:
            return lambda r: (v := to_cmp(get(r))) is not None and v not in wanted

        def in_list(r: Record) -> bool:
            v = to_cmp(get(r))
            return has_null if v is None else v in wanted

        return in_list

    assert not isinstance(node.value, tuple)
    literal = _coerce(node.value, kind, node)
    if literal is None:
        if op == "=":
            return lambda r: get(r) is None
        if op == "!=":
            return lambda r: get(r) is not None
        raise ConditionError(f"null can only be compared with = or !=, not {op}", node.position)
    if kind == "bool" and op not in ("=", "!="):
        raise ConditionError(f"{op} does not apply to boolean field {node.path}", node.position)
    cmp = _COMPARATORS[op]

    def predicate(r: Record) -> bool:
        v = to_cmp(get(r))
        if v is None:
            return False
        try:
            return cmp(v, literal)
        except TypeError:
            return False

    return predicate


def _normaliser(kind: Kind) -> Callable[[Any], Any]:
    if kind == "string":
        return lambda v: v.casefold() if isinstance(v, str) else (None if v is None else str(v).casefold())
    if kind == "datetime":
        return lambda v: field_datetime(v) if isinstance(v, str) else None
    return lambda v: v


_COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: bool(a == b),
    "!=": lambda a, b: bool(a != b),
    "<": lambda a, b: bool(a < b),
    "<=": lambda a, b: bool(a <= b),
    ">": lambda a, b: bool(a > b),
    ">=": lambda a, b: bool(a >= b),
}


# ---------------------------------------------------------------------------------------------- planning


def conjuncts(node: Node) -> tuple[Node, ...]:
    """The top-level AND terms of a condition (a single term when it is not an AND)."""
    return node.items if isinstance(node, And) else (node,)


def build_predicate(text: str, table: FieldTable) -> tuple[Node, Predicate]:
    """Parse and compile in one step; raises `ConditionError`."""
    node = parse(text)
    return node, compile_condition(node, table)
