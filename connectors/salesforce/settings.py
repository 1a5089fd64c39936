"""Connection settings for Salesforce, owned by the connector and validated by billsync.yaml loading."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class SalesforceSettings(BaseModel):
    """How to reach one Salesforce org.

    ``login_url`` replaces ``https://login.salesforce.com`` (or ``test.``) for username/password
    login, which simple-salesforce otherwise hard-codes; sandboxes and My Domain logins use it.
    Secret fields come from ``${ENV_VAR}`` or a ``<field>_file`` entry, never from plain YAML.
    ``daily_api_reserve_percent`` of the org's daily API allowance is left to its other integrations:
    billsync stops (a FatalError) before its calls would eat into it.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["salesforce"]
    username: str
    password: SecretStr
    security_token: SecretStr | None = None
    login_url: str = "https://login.salesforce.com"
    api_version: str = "59.0"
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    ca_file: str | None = Field(default=None, description="PEM bundle to trust instead of the system's")
    lookback_seconds: int = Field(default=300, ge=0, le=86400)
    daily_api_reserve_percent: float = Field(default=10.0, ge=0, lt=100)
