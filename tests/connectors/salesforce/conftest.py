"""Fixture payloads (real Salesforce bodies, see shared/fixtures/salesforce/README.md) and settings."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from connectors.salesforce.settings import SalesforceSettings

FIXTURES = (
    Path(os.environ.get("BILLSYNC_FIXTURES", Path(__file__).resolve().parents[4] / "shared" / "fixtures"))
    / "salesforce"
)


def fixture_text(relative: str) -> str:
    path = FIXTURES / relative
    if not path.exists():
        pytest.skip(f"shared fixture missing: {path} (set BILLSYNC_FIXTURES)")
    return path.read_text(encoding="utf-8")


def fixture_json(relative: str) -> Any:
    return json.loads(fixture_text(relative))


def make_settings(**overrides: Any) -> SalesforceSettings:
    values: dict[str, Any] = {
        "type": "salesforce",
        "username": "ops@acme.example",
        "password": "S3cret-pass",
        "security_token": "TOKENabc123",
        "login_url": "https://acme.my.salesforce.com",
        "lookback_seconds": 300,
        "timeout_seconds": 5,
    }
    values.update(overrides)
    return SalesforceSettings(**values)
