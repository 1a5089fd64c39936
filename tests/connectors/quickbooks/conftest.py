"""Shared fixtures: the real vendor payloads and a running QBO sandbox."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connectors.quickbooks.sandbox import QuickBooksSandbox

FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "quickbooks"


@pytest.fixture
def fixture_text() -> Callable[[str], str]:
    """Read a file of ``shared/fixtures/quickbooks`` (real payloads with provenance in its README)."""
    if not FIXTURES.is_dir():
        pytest.skip(f"vendor fixtures not found at {FIXTURES}")

    def read(relative: str) -> str:
        return (FIXTURES / relative).read_text(encoding="utf-8")

    return read


@pytest.fixture
def qbo() -> Iterator[QuickBooksSandbox]:
    with QuickBooksSandbox() as sandbox:
        yield sandbox
