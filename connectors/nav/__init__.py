"""Dynamics NAV / Business Central SOAP connector (zeep) and its loopback sandbox.

Public names are loaded lazily: importing ``connectors.nav.settings`` (config loading) must not pay
for zeep and lxml until a connector is actually built. The sandbox is not exported here so that
production code does not load the emulator (``from connectors.nav.sandbox import NavSandbox``).

- :class:`NavConnector` (``client``): ``create``, ``create_multiple``, ``create_batch``, ``read``,
  ``read_multiple``, ``find_by``, ``update``, ``delete``, ``record_payment_status``,
  ``payment_statuses``, ``latest_payment_status``, ``api_calls``
- :class:`NavSettings` (``settings``)
- errors (``errors``): :class:`StaleRecordError`, :class:`DuplicateRecordError`,
  :class:`RecordNotFoundError`, all :class:`connectors.errors.RecordError`
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectors.nav.client import NavConnector, WriteResult, quote_filter_value, remote_identity
    from connectors.nav.errors import DuplicateRecordError, RecordNotFoundError, StaleRecordError
    from connectors.nav.settings import NavSettings

_EXPORTS = {
    "NavConnector": "connectors.nav.client",
    "WriteResult": "connectors.nav.client",
    "quote_filter_value": "connectors.nav.client",
    "remote_identity": "connectors.nav.client",
    "DuplicateRecordError": "connectors.nav.errors",
    "RecordNotFoundError": "connectors.nav.errors",
    "StaleRecordError": "connectors.nav.errors",
    "NavSettings": "connectors.nav.settings",
}

__all__ = [
    "DuplicateRecordError",
    "NavConnector",
    "NavSettings",
    "RecordNotFoundError",
    "StaleRecordError",
    "WriteResult",
    "quote_filter_value",
    "remote_identity",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
