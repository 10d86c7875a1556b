"""OData `$filter` as Dataverse accepts it: comparisons, and/or/not, parentheses, and the string functions.

`compile_filter(text, resolve)` parses once and returns a predicate over
records. `resolve(name)` gives a property's field key and EDM type (or raises
the "no such property" error), so types are checked as Dataverse checks them:
a string compared with a number is refused, null compares with anything.
Strings compare case-insensitively, as SQL Server's collation does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from crmsync.dynamics_emulator.errors import invalid

Record = dict[str, object]
Predicate = Callable[[Record], bool]
Resolver = Callable[[str], tuple[str, str]]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>'(?:[^']|'')*')
    | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?![\w-])
    | (?P<date>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?)(?![\w:])
    | (?P<num>-?\d+(?:\.\d+)?)(?![\w.])
    | (?P<name>[A-Za-z_][\w.]*(?:/[A-Za-z_]\w*)?)
    | (?P<punct>[(),])
    )""",
    re.VERBOSE,
)
COMPARISONS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}
FUNCTIONS = {
    "contains": lambda a, b: b in a,
    "startswith": lambda a, b: a.startswith(b),
    "endswith": lambda a, b: a.endswith(b),
}
NUMERIC = {"Edm.Int32", "Edm.Int64", "Edm.Decimal", "Edm.Double"}
DATES = {"Edm.DateTimeOffset", "Edm.Date"}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str


@dataclass(frozen=True)
class Operand:
    edm: str | None  # None: the null literal
    read: Callable[[Record], object]
    label: str


def tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise invalid(f"Syntax error at position {pos} in '{text}'.")
        kind = match.lastgroup or ""
        tokens.append(Token(kind, match.group(kind)))
        pos = match.end()
    return tokens


def normalize_date(text: str) -> str:
    """A date or date-time literal as the records hold them: UTC, seconds, `Z`."""
    if len(text) == 10:
        return f"{text}T00:00:00Z"
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fold(value: object) -> object:
    return value.casefold() if isinstance(value, str) else value


class _Parser:
    def __init__(self, text: str, resolve: Resolver) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0
        self.resolve = resolve

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise invalid(f"Syntax error: unexpected end of '{self.text}'.")
        self.pos += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text:
            raise invalid(f"Syntax error: '{text}' expected at '{token.text}' in '{self.text}'.")

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "name" and token.text == word:
            self.pos += 1
            return True
        return False

    def parse(self) -> Predicate:
        predicate = self.disjunction()
        if self.peek() is not None:
            raise invalid(f"Syntax error at '{self.peek().text}' in '{self.text}'.")  # type: ignore[union-attr]
        return predicate

    def disjunction(self) -> Predicate:
        parts = [self.conjunction()]
        while self.keyword("or"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else (lambda r: any(p(r) for p in parts))

    def conjunction(self) -> Predicate:
        parts = [self.negation()]
        while self.keyword("and"):
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else (lambda r: all(p(r) for p in parts))

    def negation(self) -> Predicate:
        if self.keyword("not"):
            inner = self.negation()
            return lambda r: not inner(r)
        return self.primary()

    def primary(self) -> Predicate:
        token = self.peek()
        if token is not None and token.text == "(":
            self.take()
            inner = self.disjunction()
            self.expect(")")
            return inner
        if token is not None and token.kind == "name" and token.text in FUNCTIONS:
            return self.function(self.take().text)
        left = self.operand()
        op = self.take()
        if op.text not in COMPARISONS:
            raise invalid(f"Syntax error: a comparison operator expected at '{op.text}' in '{self.text}'.")
        right = self.operand()
        return _comparison(op.text, left, right)

    def function(self, name: str) -> Predicate:
        self.expect("(")
        left = self.operand()
        self.expect(",")
        right = self.operand()
        self.expect(")")
        if left.edm != "Edm.String" or right.edm != "Edm.String":
            raise invalid(f"No function signature for the function with name '{name}' matches the arguments.")
        test = FUNCTIONS[name]

        def predicate(record: Record) -> bool:
            a, b = left.read(record), right.read(record)
            return isinstance(a, str) and isinstance(b, str) and test(a.casefold(), b.casefold())

        return predicate

    def operand(self) -> Operand:
        token = self.take()
        if token.kind == "str":
            value = token.text[1:-1].replace("''", "'")
            return Operand("Edm.String", lambda r: value, token.text)
        if token.kind == "guid":
            guid = token.text.lower()
            return Operand("Edm.Guid", lambda r: guid, token.text)
        if token.kind == "date":
            try:
                moment = normalize_date(token.text)
            except ValueError:
                raise invalid(f"Unrecognized date literal '{token.text}'.") from None
            return Operand("Edm.DateTimeOffset", lambda r: moment, token.text)
        if token.kind == "num":
            number: float | int = float(token.text) if "." in token.text else int(token.text)
            edm = "Edm.Decimal" if isinstance(number, float) else "Edm.Int32"
            return Operand(edm, lambda r: number, token.text)
        if token.kind == "name":
            return self.name(token.text)
        raise invalid(f"Syntax error at '{token.text}' in '{self.text}'.")

    def name(self, text: str) -> Operand:
        if text in ("true", "false"):
            flag = text == "true"
            return Operand("Edm.Boolean", lambda r: flag, text)
        if text == "null":
            return Operand(None, lambda r: None, text)
        key, edm = self.resolve(text)
        if edm == "Edm.Guid":
            return Operand(edm, lambda r: str(r.get(key)).lower() if r.get(key) is not None else None, text)
        return Operand(edm, lambda r: r.get(key), text)


def _compatible(a: str | None, b: str | None) -> bool:
    if a is None or b is None or a == b:
        return True
    return (a in NUMERIC and b in NUMERIC) or (a in DATES and b in DATES)


def _comparison(op: str, left: Operand, right: Operand) -> Predicate:
    if not _compatible(left.edm, right.edm):
        raise invalid(
            f"A binary operator with incompatible types was detected. Found operand types "
            f"'{left.edm}' and '{right.edm}' for operator kind '{op}'."
        )
    compare = COMPARISONS[op]
    if op in ("eq", "ne"):

        def equality(record: Record) -> bool:
            return compare(_fold(left.read(record)), _fold(right.read(record)))

        return equality

    def ordering(record: Record) -> bool:
        a, b = _fold(left.read(record)), _fold(right.read(record))
        if a is None or b is None:  # SQL: a comparison with null is never true
            return False
        try:
            return bool(compare(a, b))
        except TypeError:
            return False

    return ordering


def compile_filter(text: str, resolve: Resolver) -> Predicate:
    """The predicate of a `$filter` expression; raises Dataverse's 400 on a bad one."""
    return _Parser(text, resolve).parse()
