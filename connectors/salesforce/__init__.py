"""Salesforce connector (simple-salesforce) and its loopback sandbox.

Public names are loaded lazily: importing ``connectors.salesforce.settings`` (config loading) must not
pay for simple-salesforce and zeep (about 0.4 s) until a connector is actually built.

- :class:`SalesforceConnector` (``client``): ``pull``, ``pull_pages``, ``get``, ``upsert``, ``api_calls``
- :class:`SalesforceSandbox` (``sandbox``): the emulated org for tests, demo and benchmarks
- ``parse_datetime`` / ``format_datetime`` (``soql``): the API's ``2026-11-25T08:00:00.000+0000`` format
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectors.salesforce.client import PAGE_SIZE, SalesforceConnector, SalesforceSession
    from connectors.salesforce.sandbox import SalesforceSandbox
    from connectors.salesforce.settings import SalesforceSettings
    from connectors.salesforce.soql import format_datetime, parse_datetime

_WHERE = {
    "PAGE_SIZE": "client",
    "SalesforceConnector": "client",
    "SalesforceSession": "client",
    "SalesforceSandbox": "sandbox",
    "SalesforceSettings": "settings",
    "format_datetime": "soql",
    "parse_datetime": "soql",
}
__all__ = [
    "PAGE_SIZE",
    "SalesforceConnector",
    "SalesforceSandbox",
    "SalesforceSession",
    "SalesforceSettings",
    "format_datetime",
    "parse_datetime",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
