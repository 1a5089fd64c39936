"""A requests Session with the defaults the vendor libraries forget.

None of simple-salesforce, python-quickbooks or zeep sets a timeout, and requests silently replaces a
session's ``verify`` with ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` from the environment. This session
ignores the environment and applies ``timeout`` and ``verify`` to every request unless the caller
passes its own.
"""

from __future__ import annotations

from typing import Any

import requests


class DefaultsSession(requests.Session):
    """``requests.Session`` whose every request gets a timeout and a TLS trust setting."""

    def __init__(self, *, timeout: float = 30.0, verify: bool | str = True) -> None:
        super().__init__()
        self.trust_env = False
        self.default_timeout = timeout
        self.verify = verify

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        kwargs.setdefault("verify", self.verify)
        return super().request(method, url, *args, **kwargs)
