"""Connection settings for a Dynamics NAV / Business Central SOAP web-service tier."""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class NavSettings(BaseModel):
    """How to reach one NAV company's SOAP services.

    ``base_url`` is the web-service root as NAV's admin console shows it, with or without the
    company: ``http://nav:7047/DynamicsNAV/WS/`` plus ``company: CRONUS International Ltd.``, or
    ``http://nav:7047/DynamicsNAV/WS/CRONUS%20International%20Ltd./`` directly; services live under
    ``<company url>Page/<Service>`` and ``<company url>Codeunit/<Service>``.

    Authentication: real NAV service tiers mostly use Windows (NTLM) credentials; ``auth: ntlm``
    needs the optional ``requests-ntlm`` package (not a billsync dependency) and a ``DOMAIN\\user``
    username. ``basic`` is NAV's "NavUserPassword" credential type (and what the sandbox speaks).

    ``wsdl_dir`` holds WSDLs saved from the server (``page-Customer.xml``, ``codeunit-PaymentStatus.xml``,
    the names NAV's tooling uses) so start-up fetches nothing; otherwise fetched WSDLs are cached in
    ``wsdl_cache_dir`` for ``wsdl_cache_seconds``. ``operation_timeout_seconds`` bounds each SOAP call
    (zeep sets none by default); ``timeout_seconds`` bounds WSDL downloads.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["nav"]
    base_url: str
    company: str
    username: str
    password: SecretStr
    auth: Literal["basic", "ntlm"] = "basic"
    wsdl_dir: str | None = None
    wsdl_cache_dir: str | None = None
    wsdl_cache_seconds: int = Field(default=86_400, ge=0)
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    operation_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    ca_file: str | None = Field(default=None, description="PEM bundle to trust instead of the system's")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("base_url must be an http(s) URL such as http://nav:7047/DynamicsNAV/WS/")
        return value if value.endswith("/") else value + "/"

    @property
    def company_url(self) -> str:
        """``base_url`` ending in the URL-quoted company segment and ``/``."""
        last = urlsplit(self.base_url).path.rstrip("/").rsplit("/", 1)[-1]
        if unquote(last) == self.company:
            return self.base_url
        return f"{self.base_url}{quote(self.company, safe='')}/"

    def service_url(self, kind: Literal["Page", "Codeunit"], service: str) -> str:
        return f"{self.company_url}{kind}/{quote(service, safe='')}"
