"""The small piece of SOQL billsync needs: safe names and literals for the client, a parser for the sandbox.

The client never interpolates user text into SOQL: object and field names must pass
:func:`is_identifier` / :func:`is_field_path`, and datetimes are written by :func:`datetime_literal`.
The sandbox parses the subset the connector and the tests send (``SELECT`` fields or ``COUNT()``,
``FROM``, ``WHERE`` with ``AND``-ed comparisons, ``ORDER BY``, ``LIMIT``, ``OFFSET``) and reports
anything else the way Salesforce does, as ``MALFORMED_QUERY``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_FIELD_PATH = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*\Z")
_SF_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:?\d{2})\Z")
_SF_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")


def is_identifier(name: str) -> bool:
    """True for an sObject or field API name (``Account``, ``Billing_Status__c``, ``ns__Thing__c``)."""
    return bool(_IDENTIFIER.match(name))


def is_field_path(name: str) -> bool:
    """True for a field or a parent-relationship path (``Account.Name``, ``Product2.ProductCode``)."""
    return bool(_FIELD_PATH.match(name))


def datetime_literal(value: dt.datetime) -> str:
    """A SOQL datetime literal (unquoted, UTC, whole seconds floored); naive values are taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_datetime(value: dt.datetime) -> str:
    """The REST API's datetime wire format, ``2026-11-25T08:00:00.000+0000``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def is_datetime_text(text: str) -> bool:
    return bool(_SF_DATETIME.match(text))


def is_date_text(text: str) -> bool:
    return bool(_SF_DATE.match(text))


def parse_datetime(text: str) -> dt.datetime:
    """Parse ``2026-11-25T08:00:00.000+0000`` (or ``...Z``) into an aware UTC datetime."""
    if not is_datetime_text(text):
        raise ValueError(f"not a Salesforce datetime: {text!r}")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


# -- parser (sandbox side) ----------------------------------------------------------------------------


class SoqlError(Exception):
    """A query Salesforce would refuse; ``code`` is its errorCode, ``position`` the 0-based offset."""

    def __init__(self, code: str, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.position = position


@dataclass(frozen=True)
class Literal:
    """A typed SOQL literal; ``kind`` is one of string, number, datetime, date, boolean, null."""

    kind: str
    value: Any


@dataclass(frozen=True)
class Name:
    """A field path as written, with its offset for error messages."""

    path: str
    position: int


@dataclass(frozen=True)
class Condition:
    name: Name
    op: str  # =, !=, <, <=, >, >=, IN, NOT IN, LIKE
    value: Literal | tuple[Literal, ...]


@dataclass(frozen=True)
class OrderKey:
    name: Name
    descending: bool
    nulls_last: bool


@dataclass
class Query:
    sobject: Name
    fields: list[Name] = field(default_factory=list)
    count_only: bool = False
    where: list[Condition] = field(default_factory=list)
    order_by: list[OrderKey] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\w:]))
  | (?P<number>-?\d+(?:\.\d+)?(?![\w.]))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{text[pos]}'", pos)
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(_Tok(kind, match.group(), pos))
        pos = match.end()
    return tokens


def _unquote(token: str) -> str:
    body, out, i = token[1:-1], [], 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            out.append(_ESCAPES.get(body[i + 1], body[i + 1]))
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    # helpers
    def peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def keyword(self, *words: str) -> bool:
        """Consume the keyword sequence if it is next (case-insensitive)."""
        for offset, word in enumerate(words):
            j = self.i + offset
            if j >= len(self.tokens) or self.tokens[j].kind != "name" or self.tokens[j].text.upper() != word:
                return False
        self.i += len(words)
        return True

    def fail(self, expected: str | None = None) -> SoqlError:
        tok = self.peek()
        if tok is None:
            return SoqlError("MALFORMED_QUERY", "unexpected token: <EOF>", len(self.text))
        hint = f" (expecting {expected})" if expected else ""
        return SoqlError("MALFORMED_QUERY", f"unexpected token: '{tok.text}'{hint}", tok.pos)

    def expect(self, kind: str, text: str | None = None) -> _Tok:
        tok = self.peek()
        if tok is None or tok.kind != kind or (text is not None and tok.text != text):
            raise self.fail(repr(text) if text else kind)
        self.i += 1
        return tok

    def comma(self) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "punct" and tok.text == ",":
            self.i += 1
            return True
        return False

    def name(self) -> Name:
        tok = self.expect("name")
        return Name(tok.text, tok.pos)

    def literal(self) -> Literal:
        tok = self.peek()
        if tok is None:
            raise self.fail("a value")
        self.i += 1
        if tok.kind == "string":
            return Literal("string", _unquote(tok.text))
        if tok.kind == "number":
            return Literal("number", Decimal(tok.text))
        if tok.kind == "datetime":
            return Literal("datetime", parse_datetime(tok.text))
        if tok.kind == "date":
            return Literal("date", dt.date.fromisoformat(tok.text))
        if tok.kind == "name" and tok.text.lower() in ("true", "false"):
            return Literal("boolean", tok.text.lower() == "true")
        if tok.kind == "name" and tok.text.lower() == "null":
            return Literal("null", None)
        self.i -= 1
        raise self.fail("a value")

    # grammar
    def parse(self) -> Query:
        if not self.keyword("SELECT"):
            raise self.fail("SELECT")
        fields: list[Name] = []
        count_only = False
        if self.keyword("COUNT"):
            self.expect("punct", "(")
            self.expect("punct", ")")
            count_only = True
        else:
            fields.append(self.name())
            while self.comma():
                fields.append(self.name())
        if not self.keyword("FROM"):
            raise self.fail("FROM")
        sobject = self.name()
        query = Query(sobject=sobject, fields=fields, count_only=count_only)
        if self.keyword("WHERE"):
            query.where.append(self.condition())
            while self.keyword("AND"):
                query.where.append(self.condition())
        if self.keyword("ORDER", "BY"):
            query.order_by.append(self.order_key())
            while self.comma():
                query.order_by.append(self.order_key())
        if self.keyword("LIMIT"):
            query.limit = int(self.expect("number").text)
        if self.keyword("OFFSET"):
            query.offset = int(self.expect("number").text)
        if self.peek() is not None:
            raise self.fail()
        return query

    def condition(self) -> Condition:
        name = self.name()
        if self.keyword("NOT", "IN"):
            return Condition(name, "NOT IN", self.literal_list())
        if self.keyword("IN"):
            return Condition(name, "IN", self.literal_list())
        if self.keyword("LIKE"):
            value = self.literal()
            if value.kind != "string":
                raise SoqlError("MALFORMED_QUERY", "LIKE needs a quoted string", name.position)
            return Condition(name, "LIKE", value)
        op = self.expect("op").text
        return Condition(name, "!=" if op == "<>" else op, self.literal())

    def literal_list(self) -> tuple[Literal, ...]:
        self.expect("punct", "(")
        values = [self.literal()]
        while self.comma():
            values.append(self.literal())
        self.expect("punct", ")")
        return tuple(values)

    def order_key(self) -> OrderKey:
        name = self.name()
        descending = False
        if self.keyword("DESC"):
            descending = True
        else:
            self.keyword("ASC")
        nulls_last = descending
        if self.keyword("NULLS", "LAST"):
            nulls_last = True
        elif self.keyword("NULLS", "FIRST"):
            nulls_last = False
        return OrderKey(name, descending, nulls_last)


def parse(text: str) -> Query:
    """Parse the supported SOQL subset; raise :class:`SoqlError` (``MALFORMED_QUERY``) otherwise."""
    return _Parser(text).parse()


def error_pointer(text: str, position: int, message: str) -> str:
    """Salesforce's caret-style error text: the query, a caret under the culprit, row and column."""
    line_start = text.rfind("\n", 0, position) + 1
    row = text.count("\n", 0, position) + 1
    column = position - line_start + 1
    line_end = text.find("\n", position)
    line = text[line_start : line_end if line_end != -1 else len(text)]
    return f"\n{line}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n{message}"
