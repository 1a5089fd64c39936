"""The HTTP side of billsync: support console, JSON API, metrics and webhooks (``billsync serve``)."""

from __future__ import annotations

from sync_engine.web.app import create_app

__all__ = ["create_app"]
