"""The one error a bank-statement file can raise, pointing at the place in the file to fix.

A statement import is all or nothing: a file the parser cannot read completely is refused, never
half imported. So the error names the file, the line and what is wrong there, in the
``file:line: message`` form editors and terminals understand, and the importer shows it as it is.
"""

from __future__ import annotations


class StatementError(ValueError):
    """A bank-statement file that cannot be read (not a statement, malformed, schema-invalid).

    ``line`` is 1-based (None when the problem is the file as a whole); ``location`` says where on
    that line or in the document: a column, an XPath-like element path or an MT940 tag such as
    ``:61:``.
    """

    def __init__(
        self,
        filename: str,
        message: str,
        *,
        line: int | None = None,
        location: str | None = None,
    ) -> None:
        super().__init__(message)
        self.filename = filename
        self.message = message
        self.line = line
        self.location = location

    def __str__(self) -> str:
        where = f"{self.filename}:{self.line}" if self.line is not None else self.filename
        return f"{where}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"StatementError(filename={self.filename!r}, line={self.line!r}, "
            f"location={self.location!r}, message={self.message!r})"
        )
