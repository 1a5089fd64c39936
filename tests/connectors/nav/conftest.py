"""Shared fixtures: a running NAV sandbox, connectors on it, the real NAV WSDLs and synthetic faults."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.nav.client import NavConnector
from connectors.nav.sandbox import NavSandbox

REAL_WSDLS = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "soap_erp" / "nav"
FAULTS = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def real_wsdl() -> Callable[[str], Path]:
    """Path of a real NAV WSDL in ``shared/fixtures/soap_erp/nav`` (provenance in its README)."""
    if not REAL_WSDLS.is_dir():
        pytest.skip(f"vendor fixtures not found at {REAL_WSDLS}")
    return lambda name: REAL_WSDLS / name


@pytest.fixture
def fault_body() -> Callable[[str], bytes]:
    """A synthetic NAV-style SOAP fault envelope of ``fixtures/`` (see its README)."""
    return lambda name: (FAULTS / f"{name}.xml").read_bytes()


@pytest.fixture
def nav() -> Iterator[NavSandbox]:
    with NavSandbox() as sandbox:
        yield sandbox


@pytest.fixture
def connect(nav: NavSandbox) -> Iterator[Callable[..., NavConnector]]:
    """Build connectors on the sandbox (settings overrides as keywords); closed after the test."""
    made: list[NavConnector] = []

    def build(**overrides: Any) -> NavConnector:
        connector = NavConnector(nav.settings(**overrides), sleep=lambda seconds: None)
        made.append(connector)
        return connector

    yield build
    for connector in made:
        connector.close()
