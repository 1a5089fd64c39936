"""Connection settings for QuickBooks Online, owned by the connector."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class QuickBooksSettings(BaseModel):
    """How to reach one QuickBooks Online company (realm).

    ``refresh_token`` is only the first token: QBO rotates it on every refresh and billsync keeps the
    newest one in its state store (written before it is used). ``api_url``/``token_url`` point the
    client at a sandbox or at Intuit's own endpoints.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["quickbooks"]
    company_id: str
    client_id: str
    client_secret: SecretStr
    refresh_token: SecretStr
    environment: Literal["sandbox", "production"] = "production"
    api_url: str | None = Field(default=None, description="override of https://quickbooks.api.intuit.com")
    token_url: str | None = Field(default=None, description="override of Intuit's OAuth2 token endpoint")
    minorversion: int = Field(default=75, ge=1)
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    ca_file: str | None = None
