"""OAuth2 tokens of a QBO connection and where they are kept.

Intuit rotates the refresh token on every refresh and invalidates the old one soon after, so the new
pair must be stored durably *before* the access token is used; otherwise a crash loses the only
valid refresh token and an admin has to reconnect the company by hand.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class OAuthTokens:
    refresh_token: str
    access_token: str | None = None
    access_expires_at: dt.datetime | None = None
    refresh_expires_at: dt.datetime | None = None

    def access_valid(self, now: dt.datetime, margin: dt.timedelta = dt.timedelta(minutes=5)) -> bool:
        return (
            bool(self.access_token)
            and self.access_expires_at is not None
            and now + margin < self.access_expires_at
        )


class TokenStore(Protocol):
    """Durable storage of one connection's newest tokens (the state store implements it)."""

    def load(self) -> OAuthTokens | None: ...

    def save(self, tokens: OAuthTokens) -> None: ...


class MemoryTokenStore:
    """A token store for tests and one-off scripts; loses the tokens when the process ends."""

    def __init__(self, tokens: OAuthTokens | None = None) -> None:
        self.tokens = tokens
        self.saves = 0

    def load(self) -> OAuthTokens | None:
        return self.tokens

    def save(self, tokens: OAuthTokens) -> None:
        self.tokens = tokens
        self.saves += 1
