"""Bias slices: researcher-defined subsets of a dataset, written as expressions over item fields.

A slices file (YAML or JSON; every key but ``slices`` optional)::

    fields:                       # fields derived from others, by a regular expression
      shape: {from: text, regex: "what colour is the (\\w+)"}   # the first group, or null
      colour: {from: label}       # a plain alias
    slices:
      nonred_triangle: shape == triangle and colour != red
      unsure: confidence < 0.6
      wrong_red: not correct and prediction in [red, yellow]

Expressions::

    expr  := term ("or" term)*
    term  := fact ("and" fact)*
    fact  := "not" fact | "(" expr ")" | FIELD OP VALUE | FIELD ["not"] "in" "[" VALUE ("," VALUE)* "]"
           | BOOLEAN_FIELD
    OP    := == | != | < | <= | > | >= | contains | matches

The left side is always a field, the right side a value: a bare word (``triangle``), a quoted
string (``'what colour is the triangle?'``), a number or ``true``/``false``. ``contains`` tests
a substring, ``matches`` a regular expression (``re.search``). A field that is null (a regex
that did not match) equals nothing and differs from everything. Order comparisons need a
number field.

Fields: what the caller offers (the report offers ``id``, ``label``, every payload modality,
``prediction``, ``correct``, ``confidence``, ``interaction``, ``dominant``) plus the derived
ones. Every mistake raises :class:`SliceError` naming the slice, the field and the 1-based
column, before any model runs. No torch, no Django.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DerivedField", "Slice", "SliceError", "SliceSet", "slice_fields_for", "slices_parse"]

#: Field kinds: what values a field holds, for checking the operators used on it.
TEXT, NUMBER, BOOLEAN = "text", "number", "boolean"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
  | (?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![A-Za-z_]))
  | (?P<word>[A-Za-z_][A-Za-z0-9_.\-]*)
""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "contains", "matches"}
_COMPARE = {"==", "!=", "<", "<=", ">", ">=", "contains", "matches"}


class SliceError(ValueError):
    """A bad slices file or expression.

    Attributes:
        where: the spec path, e.g. ``slices.nonred_triangle`` or ``fields.shape``.
        field: the item field at fault, when there is one.
        column: 1-based column in the expression, when there is one.
    """

    def __init__(self, where: str, message: str, *, field: str | None = None, column: int | None = None):
        self.where, self.field, self.column = where, field, column
        at = f", column {column}" if column is not None else ""
        super().__init__(f"{where}{at}: {message}")


@dataclass(frozen=True)
class _Token:
    kind: str  # string, op, number, word, end
    text: str
    value: Any
    column: int


def _tokens(expression: str, where: str) -> list[_Token]:
    out, pos = [], 0
    while pos < len(expression):
        found = _TOKEN.match(expression, pos)
        if found is None:
            raise SliceError(where, f"unexpected character {expression[pos]!r}", column=pos + 1)
        kind = found.lastgroup or ""
        text = found.group()
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", text[1:-1])
            out.append(_Token("string", text, value, pos + 1))
        elif kind == "number":
            out.append(_Token("number", text, float(text), pos + 1))
        elif kind != "space":
            out.append(_Token(kind, text, text, pos + 1))
        pos = found.end()
    out.append(_Token("end", "", None, len(expression) + 1))
    return out


Predicate = Callable[[Mapping[str, Any]], bool]


class _Parser:
    """Recursive descent over the grammar in the module doc; builds a closure per node."""

    def __init__(self, expression: str, where: str, fields: Mapping[str, str]):
        self.expression, self.where, self.fields = expression, where, fields
        self.tokens = _tokens(expression, where)
        self.k = 0

    def fail(self, message: str, token: _Token, *, field: str | None = None) -> SliceError:
        if field is not None and repr(field) not in message:
            message = f"{message} (field {field!r})"  # every error names the field it is about
        return SliceError(self.where, message, field=field, column=token.column)

    @property
    def token(self) -> _Token:
        return self.tokens[self.k]

    def take(self) -> _Token:
        token = self.tokens[self.k]
        self.k += 1
        return token

    def is_word(self, word: str) -> bool:
        return self.token.kind == "word" and self.token.text.lower() == word

    def parse(self) -> Predicate:
        if self.token.kind == "end":
            raise self.fail("the expression is empty", self.token)
        predicate = self.expr()
        if self.token.kind != "end":
            raise self.fail(f"unexpected {self.token.text!r}; expected 'and', 'or' or the end", self.token)
        return predicate

    def expr(self) -> Predicate:
        parts = [self.term()]
        while self.is_word("or"):
            self.take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else (lambda row: any(p(row) for p in parts))

    def term(self) -> Predicate:
        parts = [self.fact()]
        while self.is_word("and"):
            self.take()
            parts.append(self.fact())
        return parts[0] if len(parts) == 1 else (lambda row: all(p(row) for p in parts))

    def fact(self) -> Predicate:
        if self.is_word("not"):
            self.take()
            inner = self.fact()
            return lambda row: not inner(row)
        if self.token.text == "(":
            self.take()
            inner = self.expr()
            if self.token.text != ")":
                raise self.fail(f"expected ')' to close the '(', got {self.token.text or 'the end'!r}", self.token)
            self.take()
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        token = self.take()
        if token.kind != "word" or token.text.lower() in _KEYWORDS:
            got = token.text or "the end"
            raise self.fail(f"expected a field name, got {got!r}", token)
        name = token.text
        if name not in self.fields:
            raise self.fail(f"unknown field {name!r}; fields: {', '.join(sorted(self.fields))}", token, field=name)
        kind = self.fields[name]
        if kind == BOOLEAN and (
            self.token.kind == "end" or self.token.text == ")" or self.is_word("and") or self.is_word("or")
        ):
            return lambda row: bool(_get(row, name))  # a bare boolean field: `not correct`
        negate = False
        if self.is_word("not"):
            self.take()
            negate = True
            if not self.is_word("in"):
                raise self.fail(f"expected 'in' after 'not', got {self.token.text or 'the end'!r}", self.token)
        op_token = self.take()
        op = op_token.text.lower() if op_token.kind == "word" else op_token.text
        if op == "in":
            values = self.value_list(name)
            return (lambda row: _get(row, name) not in values) if negate else (lambda row: _get(row, name) in values)
        if op not in _COMPARE:
            raise self.fail(
                f"expected an operator after {name!r} (==, !=, <, <=, >, >=, in, contains, matches), "
                f"got {op_token.text or 'the end'!r}",
                op_token,
                field=name,
            )
        value_token = self.token
        value = self.value(name)
        return self.compare(name, kind, op, value, value_token)

    def value(self, name: str) -> Any:
        token = self.take()
        if token.kind in ("string", "number"):
            return token.value
        if token.kind == "word" and token.text.lower() not in ("and", "or"):
            lowered = token.text.lower()
            return {"true": True, "false": False, "null": None}.get(lowered, token.text)
        raise self.fail(
            f"expected a value after the operator on {name!r}, got {token.text or 'the end'!r}", token, field=name
        )

    def value_list(self, name: str) -> list[Any]:
        opening = self.take()
        if opening.text != "[":
            raise self.fail(f"expected '[' after 'in', got {opening.text or 'the end'!r}", opening, field=name)
        values = [_normalise(self.fields[name], self.value(name))]
        while self.token.text == ",":
            self.take()
            values.append(_normalise(self.fields[name], self.value(name)))
        closing = self.take()
        if closing.text != "]":
            raise self.fail(f"expected ',' or ']' in the list, got {closing.text or 'the end'!r}", closing, field=name)
        return values

    def compare(self, name: str, kind: str, op: str, value: Any, token: _Token) -> Predicate:
        if op in ("<", "<=", ">", ">="):
            if kind != NUMBER:
                raise self.fail(f"{op!r} needs a number field; {name!r} holds {kind}", token, field=name)
            if not isinstance(value, float):
                raise self.fail(f"{op!r} on {name!r} needs a number, got {value!r}", token, field=name)
            test = {
                "<": lambda a: a < value,
                "<=": lambda a: a <= value,
                ">": lambda a: a > value,
                ">=": lambda a: a >= value,
            }[op]
            where = self.where

            def number(row: Mapping[str, Any]) -> float | None:
                x = _get(row, name)
                if x is None or isinstance(x, float):
                    return x
                try:
                    return float(x)
                except (TypeError, ValueError):
                    raise SliceError(
                        where, f"{op!r} on {name!r} needs a number; item {row.get('id')!r} holds {x!r}", field=name
                    ) from None

            return lambda row: (x := number(row)) is not None and test(x)
        if op == "contains":
            text = str(value)
            return lambda row: (x := _get(row, name)) is not None and text in str(x)
        if op == "matches":
            try:
                pattern = re.compile(str(value))
            except re.error as exc:
                raise self.fail(f"bad regular expression {value!r}: {exc}", token, field=name) from None
            return lambda row: (x := _get(row, name)) is not None and pattern.search(str(x)) is not None
        target = _normalise(kind, value)
        if op == "==":
            return lambda row: _get(row, name) == target
        return lambda row: _get(row, name) != target


def _normalise(kind: str, value: Any) -> Any:
    """A literal as the field's kind holds it: ``1`` equals a number field's 1.0, ``true`` a
    boolean, anything else compares as text."""
    if value is None:
        return None
    if kind == NUMBER and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == BOOLEAN and isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _get(row: Mapping[str, Any], name: str) -> Any:
    value = row.get(name)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return str(value)


@dataclass(frozen=True)
class DerivedField:
    """``name`` = the first regex group of field ``source`` (or ``source`` itself without a regex)."""

    name: str
    source: str
    regex: str | None = None

    def value(self, row: Mapping[str, Any]) -> Any:
        raw = row.get(self.source)
        if raw is None or self.regex is None:
            return raw
        found = re.search(self.regex, str(raw))
        if found is None:
            return None
        return found.group(1) if found.re.groups else found.group(0)


@dataclass(frozen=True)
class Slice:
    name: str
    expression: str
    predicate: Predicate


@dataclass(frozen=True)
class SliceSet:
    """Parsed slices. :meth:`masks` evaluates them over item rows."""

    fields: tuple[DerivedField, ...]
    slices: tuple[Slice, ...]

    def rows_with_fields(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``rows`` with the derived fields added (in file order: one may use an earlier one)."""
        out = []
        for row in rows:
            full = dict(row)
            for derived in self.fields:
                full[derived.name] = derived.value(full)
            out.append(full)
        return out

    def masks(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """Per slice, a bool array over ``rows``: the items in the slice."""
        full = self.rows_with_fields(rows)
        return {s.name: np.array([bool(s.predicate(row)) for row in full], dtype=bool) for s in self.slices}

    def to_json(self) -> dict[str, Any]:
        return {
            "fields": {f.name: {"from": f.source, **({"regex": f.regex} if f.regex else {})} for f in self.fields},
            "slices": {s.name: s.expression for s in self.slices},
        }


def slices_parse(data: Any, *, fields: Mapping[str, str]) -> SliceSet:
    """Check a slices document (already read from YAML/JSON) against the item ``fields``
    (name -> :data:`TEXT`, :data:`NUMBER` or :data:`BOOLEAN`) and compile its expressions.

    ``data`` may be None or empty (no slices). Raises :class:`SliceError` naming the first bad
    entry: ``slices.nonred_triangle, column 1: unknown field 'shap'; fields: ...``.
    """
    if data in (None, ""):
        return SliceSet(fields=(), slices=())
    if not isinstance(data, Mapping):
        raise SliceError(
            "slices file", f"must be a mapping with 'slices' (and optionally 'fields'), got {type(data).__name__}"
        )
    unknown = sorted(set(data) - {"fields", "slices"})
    if unknown:
        raise SliceError(str(unknown[0]), "unknown section; known: fields, slices")
    known = dict(fields)
    derived: list[DerivedField] = []
    declared = data.get("fields") or {}
    if not isinstance(declared, Mapping):
        raise SliceError("fields", "must map each new field to {from: FIELD, regex: PATTERN}")
    for name, definition in declared.items():
        where = f"fields.{name}"
        if not isinstance(name, str) or not _NAME.match(name) or name.lower() in _KEYWORDS:
            raise SliceError(
                where,
                "a field name is letters, digits and '_', not starting with a digit nor a keyword",
                field=str(name),
            )
        if name in known:
            raise SliceError(where, f"{name!r} is already a field", field=name)
        if isinstance(definition, str):
            definition = {"from": definition}
        if not isinstance(definition, Mapping) or set(definition) - {"from", "regex"} or "from" not in definition:
            raise SliceError(where, "must be {from: FIELD} or {from: FIELD, regex: PATTERN}", field=name)
        source = str(definition["from"])
        if source not in known:
            raise SliceError(
                f"{where}.from", f"unknown field {source!r}; fields: {', '.join(sorted(known))}", field=source
            )
        regex = definition.get("regex")
        if regex is not None:
            try:
                re.compile(str(regex))
            except re.error as exc:
                raise SliceError(
                    f"{where}.regex",
                    f"bad regular expression: {exc}",
                    field=name,
                    column=(exc.pos + 1) if exc.pos is not None else None,
                ) from None
            regex = str(regex)
        derived.append(DerivedField(name=name, source=source, regex=regex))
        known[name] = TEXT if regex is not None else known[source]
    declared_slices = data.get("slices") or {}
    if not isinstance(declared_slices, Mapping):
        raise SliceError("slices", "must map each slice name to an expression")
    compiled = []
    for name, expression in declared_slices.items():
        where = f"slices.{name}"
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise SliceError(where, "a slice name is non-empty text of at most 100 characters")
        if name == "rest":
            raise SliceError(where, "'rest' names the items outside each slice; choose another name")
        if not isinstance(expression, str):
            raise SliceError(where, f"must be an expression (text), got {expression!r}")
        compiled.append(Slice(name=name, expression=expression, predicate=_Parser(expression, where, known).parse()))
    return SliceSet(fields=tuple(derived), slices=tuple(compiled))


def slice_fields_for(*, modalities: Iterable[str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The fields the model report offers to slice expressions."""
    out = {
        "id": TEXT,
        "label": TEXT,
        "prediction": TEXT,
        "correct": BOOLEAN,
        "confidence": NUMBER,
        "interaction": TEXT,
        "dominant": TEXT,
    }
    for modality in modalities:
        out.setdefault(str(modality), TEXT)
    out.update(extra or {})
    return out
