"""Invoice number formats. The gapless counter lives in the database; this only formats and checks.

Why fixed width: numbers then sort as text in every ERP and spreadsheet. A value that no longer
fits the width is refused rather than silently widened, because the accounting system's number
field has a length limit and a longer number would be truncated there (QBO DocNumber: 21 chars).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["NumberSeries"]

_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9/_.-]*")


@dataclass(frozen=True, slots=True)
class NumberSeries:
    """A named series such as ``NumberSeries("invoices", "INV-", 6)`` -> ``INV-000042``."""

    name: str
    prefix: str
    width: int

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a number series needs a name")
        if self.prefix and not _PREFIX.fullmatch(self.prefix):
            raise ValueError(
                f"prefix {self.prefix!r} must start with a letter or digit and contain only "
                "letters, digits and / _ . -"
            )
        if isinstance(self.width, bool) or not isinstance(self.width, int) or not 1 <= self.width <= 18:
            raise ValueError(f"width must be a whole number from 1 to 18, got {self.width!r}")

    @property
    def max_value(self) -> int:
        """The last number that fits the width."""
        return int("9" * self.width)

    def format(self, value: int) -> str:
        """``prefix`` + ``value`` zero-padded to ``width``; values start at 1."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"a document number must be an int, not {type(value).__name__}")
        if value < 1:
            raise ValueError(f"document numbers start at 1, got {value}")
        if value > self.max_value:
            raise ValueError(
                f"series {self.name!r} is exhausted: {value} does not fit in {self.width} digits"
            )
        return f"{self.prefix}{value:0{self.width}d}"

    def parse(self, number: str) -> int:
        """The counter value of a number this series formatted; ValueError for anything else."""
        digits = number[len(self.prefix) :] if number.startswith(self.prefix) else ""
        if len(digits) != self.width or not digits.isascii() or not digits.isdigit() or int(digits) < 1:
            raise ValueError(f"{number!r} is not a number of series {self.name!r} ({self.format(1)} style)")
        return int(digits)
