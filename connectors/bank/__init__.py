"""Bank statements (ISO 20022 camt.053, SWIFT MT940/MT942) read into one format-neutral model.

This is the pure parsing layer of ``billsync payments import FILE``: bytes in, frozen
:class:`Statement` values out, no database. Every way a file can be unreadable ends in one
:class:`StatementError` that names the file and line, so an import is all or nothing.

- :func:`parse_statement` sniffs the format; :func:`parse_camt053` and :func:`parse_mt940` read one.
- :mod:`connectors.bank.build` writes valid camt.053 and MT940 documents for demos and tests.
"""

from __future__ import annotations

import re

from connectors.bank.camt import parse_camt053
from connectors.bank.errors import StatementError
from connectors.bank.model import Statement, StatementEntry
from connectors.bank.mt940 import parse_mt940

__all__ = [
    "Statement",
    "StatementEntry",
    "StatementError",
    "parse_camt053",
    "parse_mt940",
    "parse_statement",
]

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
#: A line starting with an MT940 tag (or a SWIFT envelope) marks an MT940/MT942 file.
_MT940_RE = re.compile(rb"(?m)^(?::(?:20|25|28C?|6[0-5][FM]?|86|NS):|\{1:)")


def parse_statement(data: bytes, filename: str) -> list[Statement]:
    """Parse a camt.053 or MT940 file, whichever it is; refuse anything else.

    XML (after an optional byte-order mark and whitespace) is read as camt.053, text with MT940
    tags at line starts as MT940. Raises :class:`StatementError`.
    """
    head = data.removeprefix(_UTF8_BOM).lstrip()
    if not head:
        raise StatementError(filename, "empty file")
    if head.startswith(b"<") or data.startswith(_UTF16_BOMS):
        return parse_camt053(data, filename)
    if _MT940_RE.search(data):
        return parse_mt940(data, filename)
    raise StatementError(filename, "not a camt.053 or MT940 file")
