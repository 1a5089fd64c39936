"""Connection settings for QuickBooks Online, owned by the connector."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class QuickBooksSettings(BaseModel):
    """How to reach one QuickBooks Online company (realm).

    ``refresh_token`` is only the first token: QBO rotates it on every refresh and billsync keeps the
    newest one in its state store (written before it is used). ``api_url``/``token_url`` point the
    client at a sandbox or at Intuit's own endpoints.

    The ``rate_limit_*`` and ``max_concurrent_requests`` keep the connector within QBO's throttles
    (per company and app: 500 requests and 40 batch requests a minute, 10 in flight), shared by all
    threads of a process; null turns one off. Several processes syncing one company split them.
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
    rate_limit_requests: int | None = Field(default=500, ge=1, description="API requests per window")
    rate_limit_batch_requests: int | None = Field(default=40, ge=1, description="batch requests per window")
    rate_limit_window_seconds: float = Field(default=60.0, gt=0, le=3600)
    max_concurrent_requests: int | None = Field(default=10, ge=1, description="API requests in flight")
