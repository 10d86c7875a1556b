"""A parser for the subset of SOQL the emulator answers (pure: text in, syntax tree out).

Supported: SELECT of fields, parent fields (`Account.Name`), parent-to-child
subqueries (`(SELECT Id FROM Contacts WHERE … ORDER BY … LIMIT n)`) or `COUNT()`; FROM;
WHERE with = != <> < <= > >= LIKE, [NOT] IN (...), NULL, booleans, numbers,
strings, date and date-time literals, relative date literals (TODAY,
LAST_N_DAYS:n, THIS_QUARTER, …), AND / OR / NOT and parentheses (AND and OR
may not be mixed without parentheses, as in Salesforce); ORDER BY several
fields with ASC/DESC and NULLS FIRST/LAST; LIMIT; OFFSET. Anything else is a
`SoqlError("MALFORMED_QUERY")`, never another exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from crmsync.emulator import dateliterals


class SoqlError(Exception):
    """A query Salesforce would refuse; `error_code` is Salesforce's own."""

    def __init__(self, message: str, *, error_code: str = "MALFORMED_QUERY") -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code


@dataclass(frozen=True)
class FieldRef:
    path: tuple[str, ...]  # ("Email",) or ("Account", "Name")

    @property
    def text(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class Literal:
    kind: str  # string, number, boolean, null, datetime (epoch ms), date (YYYY-MM-DD),
    # dateliteral ((NAME, n or None): TODAY, LAST_N_DAYS:7, …; see crmsync.emulator.dateliterals)
    value: Any


@dataclass(frozen=True)
class Comparison:
    field: FieldRef
    op: str  # = != < <= > >= LIKE IN NOTIN
    value: Literal | tuple[Literal, ...]


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND, OR
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


Condition = Comparison | BoolOp | Not


@dataclass(frozen=True)
class OrderItem:
    field: FieldRef
    descending: bool = False
    nulls_last: bool = False


@dataclass(frozen=True)
class Query:
    sobject: str
    fields: tuple[FieldRef, ...]
    count: bool = False
    where: Condition | None = None
    order_by: tuple[OrderItem, ...] = ()
    limit: int | None = None
    offset: int | None = None
    # Parent-to-child subqueries: each one's `sobject` is a child relationship name (Contacts),
    # its `position` how many of the fields above come before it in the SELECT list.
    subqueries: tuple[Query, ...] = ()
    position: int = 0


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\dT]))
  | (?P<number>[+-]?\d+(?:\.\d+)?(?![\w.]))
  | (?P<counted>(?i:(?:LAST_N_|NEXT_N_)(?:DAYS|WEEKS|MONTHS|QUARTERS|YEARS)|N_(?:DAYS|WEEKS|MONTHS|QUARTERS|YEARS)_AGO)\s*:\s*\d+)
  | (?P<ident>[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*)
  | (?P<op>!=|<>|<=|>=|=|<|>|\(|\)|,)
    """,
    re.VERBOSE,
)
_ESCAPES = {
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "b": "\b",
    "f": "\f",
    "'": "'",
    '"': '"',
    "\\": "\\",
    "%": "\\%",
    "_": "\\_",
}
_KEYWORDS = frozenset(
    {
        "SELECT",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "LIKE",
        "ORDER",
        "BY",
        "ASC",
        "DESC",
        "NULLS",
        "FIRST",
        "LAST",
        "LIMIT",
        "OFFSET",
        "NULL",
        "TRUE",
        "FALSE",
        "COUNT",
        "GROUP",
        "HAVING",
        "FOR",
        "WITH",
        "USING",
        "TYPEOF",
        "INCLUDES",
        "EXCLUDES",
    }
)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    pos: int

    @property
    def upper(self) -> str:
        return self.text.upper()


def _unescape(body: str) -> str:
    out = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            nxt = body[i + 1]
            if nxt not in _ESCAPES:
                raise SoqlError(
                    f"Invalid string literal '{body}'. Illegal character sequence '\\{nxt}' in string literal."
                )
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _tokenize(text: str) -> list[_Token]:
    tokens = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise SoqlError(
                f"unexpected token: '{text[pos : pos + 10].split()[0] if text[pos:].strip() else text[pos]}'"
            )
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(_Token(kind, match.group(), pos))
        pos = match.end()
    return tokens


def parse_datetime(text: str) -> int:
    """Returns the epoch milliseconds of a SOQL date-time literal."""
    normalized = text.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", normalized):
        normalized = normalized[:-2] + ":" + normalized[-2:]
    try:
        moment = datetime.fromisoformat(normalized)
    except ValueError as exc:
        raise SoqlError(f"line 1:0 no viable alternative at character '{text}'") from exc
    return int(moment.astimezone(UTC).timestamp() * 1000)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self, offset: int = 0) -> _Token | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def at(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token.kind in ("ident", "op") and token.upper in words

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise SoqlError("unexpected token: <EOF>")
        self.i += 1
        return token

    def expect(self, word: str) -> _Token:
        token = self.take()
        if token.upper != word:
            raise SoqlError(f"unexpected token: '{token.text}'")
        return token

    def field(self) -> FieldRef:
        token = self.take()
        if token.kind != "ident" or token.upper in _KEYWORDS:
            raise SoqlError(f"unexpected token: '{token.text}'")
        path = tuple(token.text.split("."))
        if len(path) > 2:
            raise SoqlError(
                f"Didn't understand relationship '{'.'.join(path[:-1])}' in field path.",
                error_code="INVALID_FIELD",
            )
        return FieldRef(path)

    def literal(self) -> Literal:
        token = self.take()
        if token.kind == "string":
            return Literal("string", _unescape(token.text[1:-1]))
        if token.kind == "number":
            return Literal("number", float(token.text) if "." in token.text else int(token.text))
        if token.kind == "datetime":
            return Literal("datetime", parse_datetime(token.text))
        if token.kind == "date":
            try:
                datetime.strptime(token.text, "%Y-%m-%d")
            except ValueError as exc:
                raise SoqlError(f"line 1:0 no viable alternative at character '{token.text}'") from exc
            return Literal("date", token.text)
        if token.kind == "counted":
            name, _, n = token.text.partition(":")
            return Literal("dateliteral", (name.strip().upper(), int(n)))
        if token.kind == "ident" and token.upper in dateliterals.FIXED:
            return Literal("dateliteral", (token.upper, None))
        if token.kind == "ident" and token.upper in ("TRUE", "FALSE"):
            return Literal("boolean", token.upper == "TRUE")
        if token.kind == "ident" and token.upper == "NULL":
            return Literal("null", None)
        raise SoqlError(f"unexpected token: '{token.text}'")

    def select_item(self, fields: list[FieldRef], subqueries: list[Query], *, nested: bool) -> None:
        if self.at("(") and (nxt := self.peek(1)) is not None and nxt.upper == "SELECT":
            if nested:
                raise SoqlError("Nesting of semi join sub-selects is not supported")
            self.take()
            sub = self.query(nested=True)
            subqueries.append(replace(sub, position=len(fields)))
            self.expect(")")
        else:
            fields.append(self.field())

    def query(self, *, nested: bool = False) -> Query:
        self.expect("SELECT")
        count = False
        fields: list[FieldRef] = []
        subqueries: list[Query] = []
        if self.at("COUNT") and (nxt := self.peek(1)) is not None and nxt.text == "(":
            self.take()
            self.expect("(")
            close = self.take()
            if close.text != ")":
                raise SoqlError("Aggregate functions other than COUNT() are not supported")
            count = True
        else:
            self.select_item(fields, subqueries, nested=nested)
            while self.at(","):
                self.take()
                self.select_item(fields, subqueries, nested=nested)
        self.expect("FROM")
        sobject = self.take()
        if sobject.kind != "ident" or "." in sobject.text or sobject.upper in _KEYWORDS:
            raise SoqlError(f"unexpected token: '{sobject.text}'")
        where = None
        if self.at("WHERE"):
            self.take()
            where = self.condition()
        order: list[OrderItem] = []
        if self.at("ORDER"):
            self.take()
            self.expect("BY")
            order.append(self.order_item())
            while self.at(","):
                self.take()
                order.append(self.order_item())
        limit = offset = None
        if self.at("LIMIT"):
            self.take()
            limit = self.integer("LIMIT")
        if self.at("OFFSET"):
            self.take()
            offset = self.integer("OFFSET")
            if offset > 2000:
                raise SoqlError(
                    "Maximum SOQL offset allowed is 2000", error_code="NUMBER_OUTSIDE_VALID_RANGE"
                )
        token = self.peek()
        if token is not None and not (nested and token.text == ")"):
            raise SoqlError(f"unexpected token: '{token.text}'")
        return Query(
            sobject.text, tuple(fields), count, where, tuple(order), limit, offset, tuple(subqueries)
        )

    def integer(self, clause: str) -> int:
        token = self.take()
        if token.kind != "number" or not token.text.isdigit():
            raise SoqlError(f"unexpected token: '{token.text}' ({clause} needs a non-negative integer)")
        return int(token.text)

    def order_item(self) -> OrderItem:
        ref = self.field()
        descending = False
        if self.at("ASC", "DESC"):
            descending = self.take().upper == "DESC"
        nulls_last = descending
        if self.at("NULLS"):
            self.take()
            word = self.take().upper
            if word not in ("FIRST", "LAST"):
                raise SoqlError(f"unexpected token: '{word}'")
            nulls_last = word == "LAST"
        return OrderItem(ref, descending, nulls_last)

    def condition(self) -> Condition:
        first = self.unary()
        if not self.at("AND", "OR"):
            return first
        op = self.peek().upper  # type: ignore[union-attr]
        items = [first]
        while self.at("AND", "OR"):
            token = self.take()
            if token.upper != op:
                # Salesforce refuses "a AND b OR c": the grouping must be explicit.
                raise SoqlError(f"unexpected token: '{token.text}'")
            items.append(self.unary())
        return BoolOp(op, tuple(items))

    def unary(self) -> Condition:
        if self.at("NOT"):
            self.take()
            return Not(self.unary())
        if self.at("("):
            self.take()
            inner = self.condition()
            self.expect(")")
            return inner
        return self.comparison()

    def comparison(self) -> Comparison:
        ref = self.field()
        token = self.take()
        word = token.upper
        if word == "NOT":
            self.expect("IN")
            return Comparison(ref, "NOTIN", self.value_list())
        if word == "IN":
            return Comparison(ref, "IN", self.value_list())
        if word == "LIKE":
            value = self.literal()
            if value.kind not in ("string", "null"):
                raise SoqlError("LIKE needs a string value", error_code="INVALID_FIELD")
            return Comparison(ref, "LIKE", value)
        if token.kind == "op" and word in ("=", "!=", "<>", "<", "<=", ">", ">="):
            return Comparison(ref, "!=" if word == "<>" else word, self.literal())
        raise SoqlError(f"unexpected token: '{token.text}'")

    def value_list(self) -> tuple[Literal, ...]:
        self.expect("(")
        values = [self.literal()]
        while self.at(","):
            self.take()
            values.append(self.literal())
        self.expect(")")
        return tuple(values)


def parse(text: str) -> Query:
    """Returns the syntax tree of a query, or raises SoqlError as Salesforce would."""
    if not text or not text.strip():
        raise SoqlError("unexpected token: <EOF>")
    return _Parser(text).query()


def like_pattern(pattern: str) -> re.Pattern[str]:
    """Returns a case-insensitive regex for a LIKE pattern (% any run, _ one character)."""
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "%_":
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)
