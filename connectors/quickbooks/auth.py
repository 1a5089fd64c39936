"""OAuth2 access for QuickBooks Online: refresh through intuit-oauth, rotate, persist, then use.

Intuit rotates the refresh token on refresh, so the order is fixed: refresh, ``token_store.save`` the
new pair, and only then hand out the new access token. If saving fails the new token is never used
(the caller sees the store's exception), so billsync can never be running on a token pair it has not
written down.

Several connector instances (threads, workers) may share one store. Before refreshing, the manager
re-reads the store: if another instance already refreshed, its access token is adopted instead of
spending (and invalidating) the refresh token a second time.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

import requests
from intuitlib.client import AuthClient
from intuitlib.exceptions import AuthClientError

from connectors.errors import AuthError, ConnectorError, FatalError, RateLimitedError, RetryableError
from connectors.quickbooks.errors import DEFAULT_RETRY_AFTER, SYSTEM, parse_retry_after, translate_transport
from connectors.quickbooks.settings import QuickBooksSettings
from connectors.quickbooks.tokens import OAuthTokens, TokenStore

#: How long a refused refresh waits for another instance's rotated token to appear in the store.
ROTATION_WAIT_S = 3.0

# Intuit's own endpoints, used when ``token_url`` is overridden so that no discovery fetch is needed.
_INTUIT_DISCOVERY = {
    "issuer": "https://oauth.platform.intuit.com/op/v1",
    "authorization_endpoint": "https://appcenter.intuit.com/connect/oauth2",
    "token_endpoint": "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",
    "userinfo_endpoint": "https://accounts.platform.intuit.com/v1/openid_connect/userinfo",
    "revocation_endpoint": "https://developer.api.intuit.com/v2/oauth2/tokens/revoke",
    "jwks_uri": "https://oauth.platform.intuit.com/op/v1/jwks",
}
_STATIC_DISCOVERY_URL = "https://billsync.invalid/.well-known/openid_configuration/"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SessionAuthClient(AuthClient):  # type: ignore[misc]
    """intuit-oauth's AuthClient (a requests Session) with a timeout, a CA file and no environment.

    ``AuthClient.__init__`` fetches the discovery document through ``self``; when billsync already
    knows the token endpoint (``settings.token_url``) that fetch is answered locally instead.
    """

    def __init__(
        self,
        *,
        timeout: float,
        verify: bool | str,
        on_request: Callable[[], None],
        static_discovery: dict[str, str] | None,
        **kwargs: Any,
    ) -> None:
        self._timeout = timeout
        self._verify = verify
        self._on_request = on_request
        self._static_discovery = static_discovery
        super().__init__(**kwargs)
        self.trust_env = False

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if self._static_discovery is not None and url == _STATIC_DISCOVERY_URL:
            response = requests.Response()
            response.status_code = 200
            response._content = json.dumps(self._static_discovery).encode()
            response.url = _STATIC_DISCOVERY_URL
            return response
        self.trust_env = False  # AuthClient.__init__ sends its first request before we could set it
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        kwargs.setdefault("verify", self._verify)
        self._on_request()
        sent: requests.Response = super().request(method, url, *args, **kwargs)
        return sent


class TokenManager:
    """Keeps one valid access token for a QBO connection, refreshing and persisting as needed."""

    def __init__(
        self,
        settings: QuickBooksSettings,
        store: TokenStore,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        on_request: Callable[[], None] = lambda: None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._on_request = on_request
        self._auth_client: SessionAuthClient | None = None
        self._tokens: OAuthTokens | None = store.load()
        self.refreshes = 0

    # -- public ----------------------------------------------------------------------------------
    def access_token(self) -> str:
        """A usable access token: the current one, one another instance stored, or a fresh one."""
        now = self._clock()
        if self._tokens is not None and self._tokens.access_valid(now):
            assert self._tokens.access_token is not None
            return self._tokens.access_token
        return self.refresh(failed_access_token=self._tokens.access_token if self._tokens else None)

    def refresh(self, *, failed_access_token: str | None) -> str:
        """Get a new access token after ``failed_access_token`` was refused or expired."""
        stored = self._store.load()
        if (
            stored is not None
            and stored.access_token
            and stored.access_token != failed_access_token
            and stored.access_valid(self._clock())
        ):
            self._tokens = stored  # someone sharing the store refreshed already
            return stored.access_token
        refresh_token = stored.refresh_token if stored else self._settings.refresh_token.get_secret_value()
        try:
            return self._refresh_with(refresh_token)
        except AuthError:
            latest = self._rotated_by_another(refresh_token)  # one more try with the new token
            if latest is None:
                raise
            if latest.access_token and latest.access_valid(self._clock()):
                self._tokens = latest
                return latest.access_token
            return self._refresh_with(latest.refresh_token)

    def _rotated_by_another(self, refused: str) -> OAuthTokens | None:
        """The tokens another instance sharing the store got for ``refused``, if it did.

        Two workers starting together both refresh with the same token; QuickBooks rotates it for
        the first and refuses the second, which may hear so before the first has stored the new
        one. So the store is read again for a moment before the refusal is believed."""
        deadline = time.monotonic() + ROTATION_WAIT_S
        while True:
            latest = self._store.load()
            if latest is not None and latest.refresh_token != refused:
                return latest
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)

    def secrets(self) -> tuple[str | None, ...]:
        """Values that must never appear in an error message."""
        tokens = self._tokens
        return (
            self._settings.client_secret.get_secret_value(),
            self._settings.refresh_token.get_secret_value(),
            tokens.access_token if tokens else None,
            tokens.refresh_token if tokens else None,
        )

    # -- internals -------------------------------------------------------------------------------
    def _client(self) -> SessionAuthClient:
        if self._auth_client is None:
            settings = self._settings
            static = None
            environment: str = settings.environment
            if settings.token_url:
                static = dict(_INTUIT_DISCOVERY, token_endpoint=settings.token_url)
                environment = _STATIC_DISCOVERY_URL
            try:
                self._auth_client = SessionAuthClient(
                    timeout=settings.timeout_seconds,
                    verify=settings.ca_file or True,
                    on_request=self._on_request,
                    static_discovery=static,
                    client_id=settings.client_id,
                    client_secret=settings.client_secret.get_secret_value(),
                    redirect_uri="https://localhost/unused",  # only the refresh grant is used
                    environment=environment,
                    realm_id=settings.company_id,
                )
            except requests.RequestException as exc:
                raise translate_transport(exc, write=False) from exc
            except AuthClientError as exc:
                raise RetryableError(
                    f"OAuth discovery failed: HTTP {exc.status_code}", system=SYSTEM
                ) from None
        return self._auth_client

    def _refresh_with(self, refresh_token: str) -> str:
        client = self._client()
        client.access_token = None
        client.refresh_token = None
        client.expires_in = None
        client.x_refresh_token_expires_in = None
        now = self._clock()
        try:
            client.refresh(refresh_token=refresh_token)
        except requests.RequestException as exc:
            raise translate_transport(exc, write=False) from exc
        except AuthClientError as exc:
            raise _translate_token_error(exc) from None
        if not client.access_token or not client.refresh_token:
            raise AuthError("token endpoint answered without an access and refresh token", system=SYSTEM)
        tokens = OAuthTokens(
            refresh_token=str(client.refresh_token),
            access_token=str(client.access_token),
            access_expires_at=now + dt.timedelta(seconds=int(client.expires_in or 3600)),
            refresh_expires_at=(
                now + dt.timedelta(seconds=int(client.x_refresh_token_expires_in))
                if client.x_refresh_token_expires_in
                else None
            ),
        )
        self._store.save(tokens)  # durable first: the old refresh token may already be dead
        self._tokens = tokens
        self.refreshes += 1
        return tokens.access_token or ""


def _translate_token_error(exc: AuthClientError) -> ConnectorError:
    """Token endpoint failures; the body is an OAuth error object and never contains our secrets."""
    try:
        body = exc.response.json()
        error = str(body.get("error") or "")
    except (ValueError, AttributeError):
        error = ""
    status = int(exc.status_code)
    if status == 429:
        retry_after = parse_retry_after(exc.headers.get("Retry-After"))
        return RateLimitedError(
            "token endpoint throttled",
            retry_after=DEFAULT_RETRY_AFTER if retry_after is None else retry_after,
            code="429",
            system=SYSTEM,
        )
    if status >= 500:
        return RetryableError(f"token endpoint failed: HTTP {status}", code=str(status), system=SYSTEM)
    if error == "invalid_client":
        return FatalError("client id/secret rejected by the token endpoint", code=error, system=SYSTEM)
    return AuthError(
        f"refresh token rejected ({error or f'HTTP {status}'}): reconnect the QuickBooks company",
        code=error or str(status),
        system=SYSTEM,
    )
