"""QuickBooks Online connector: raw QBO v3 JSON in and out, errors in billsync's taxonomy.

The sandbox (:mod:`connectors.quickbooks.sandbox`) is not imported here so that production code does
not load the emulator.
"""

from __future__ import annotations

from connectors.quickbooks.client import BatchItem, BatchResult, ChangeSet, QuickBooksConnector, dumps_exact
from connectors.quickbooks.errors import ChangeWindowError, DuplicateNameError, StaleObjectError
from connectors.quickbooks.settings import QuickBooksSettings
from connectors.quickbooks.tokens import MemoryTokenStore, OAuthTokens, TokenStore

__all__ = [
    "BatchItem",
    "BatchResult",
    "ChangeSet",
    "ChangeWindowError",
    "DuplicateNameError",
    "MemoryTokenStore",
    "OAuthTokens",
    "QuickBooksConnector",
    "QuickBooksSettings",
    "StaleObjectError",
    "TokenStore",
    "dumps_exact",
]
