"""Fixtures of the sync tests: ``company`` (see tests/sync_engine/company.py)."""

from __future__ import annotations

from tests.sync_engine.company import company

__all__ = ["company"]
