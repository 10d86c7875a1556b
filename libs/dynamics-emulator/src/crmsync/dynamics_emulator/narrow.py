"""The rows a `$filter` can match, found without a scan where the filter says so (an index, in effect).

Two shapes matter at a million records: a disjunction of primary-key
equalities (reads by id) and a lower bound on `modifiedon` past the generated
data (incremental reads: only rows changed or created since can match). Any
other filter scans. The full predicate is applied to the candidates afterwards.
"""

from __future__ import annotations

from crmsync.dynamics_emulator.odata_filter import Token, normalize_date, tokenize
from crmsync.dynamics_emulator.schema import Table
from crmsync.dynamics_emulator.store import Rows


def _split(tokens: list[Token], word: str) -> list[list[Token]]:
    """The operands of `word` (and / or) at the top level: outside parentheses."""
    parts: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        depth += {"(": 1, ")": -1}.get(token.text, 0) if token.kind == "punct" else 0
        if depth == 0 and token.kind == "name" and token.text == word:
            parts.append([])
        else:
            parts[-1].append(token)
    return parts


def _unwrap(tokens: list[Token]) -> list[Token]:
    """Drops parentheses around the whole expression."""
    while len(tokens) > 2 and tokens[0].text == "(" and tokens[-1].text == ")":
        depth = 0
        for token in tokens[:-1]:
            depth += {"(": 1, ")": -1}.get(token.text, 0) if token.kind == "punct" else 0
            if depth == 0:  # the first parenthesis closes before the end
                return tokens
        tokens = tokens[1:-1]
    return tokens


def _ids(table: Table, tokens: list[Token]) -> list[str] | None:
    ids = []
    for part in _split(_unwrap(tokens), "or"):
        part = _unwrap(part)
        if (
            len(part) != 3
            or part[0].text != table.primary_id
            or part[1].text != "eq"
            or part[2].kind != "guid"
        ):
            return None
        ids.append(part[2].text)
    return ids


def _changed_since(part: list[Token], generated_until: str) -> bool:
    part = _unwrap(part)
    if (
        len(part) != 3
        or part[0].text != "modifiedon"
        or part[1].text not in ("gt", "ge")
        or part[2].kind != "date"
    ):
        return False
    try:
        return normalize_date(part[2].text) > generated_until
    except ValueError:
        return False


def candidate_rows(table: Table, rows: Rows, text: str | None, generated_until: str) -> list[int] | None:
    """The only rows that can match (in row order), or None when the filter needs a scan."""
    if not text:
        return None
    tokens = tokenize(text)
    conjuncts = _split(_unwrap(tokens), "and")
    for part in conjuncts:
        ids = _ids(table, part)
        if ids is not None:
            found = {rows.row_of(guid) for guid in ids}
            return sorted(row for row in found if row is not None)
    if any(_changed_since(part, generated_until) for part in conjuncts):
        return sorted(rows.versions)  # rows changed or created since the data was generated
    return None
