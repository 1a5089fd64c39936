"""OAuth tokens kept in the state store, so a rotated QBO refresh token survives a crash or restart."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from connectors.quickbooks.tokens import OAuthTokens
from sync_engine.store.models import OAuthToken, utcnow


class DbTokenStore:
    """The :class:`connectors.quickbooks.tokens.TokenStore` of one connection, in ``oauth_tokens``.

    Each call uses its own short transaction, never the caller's: a new refresh token must be
    committed before it is used, whatever happens to the sync transaction around it. On SQLite that
    means the calling thread must not hold a write transaction of its own while the connector may
    refresh (``save`` would wait for it, up to the busy timeout): commit before calling QBO.
    """

    def __init__(self, session_factory: sessionmaker[Session], connection: str) -> None:
        self._sessions = session_factory
        self.connection = connection

    def load(self) -> OAuthTokens | None:
        with self._sessions() as session:
            row = session.scalars(select(OAuthToken).where(OAuthToken.connection == self.connection)).first()
            if row is None:
                return None
            return OAuthTokens(
                refresh_token=row.refresh_token,
                access_token=row.access_token,
                access_expires_at=row.access_expires_at,
                refresh_expires_at=row.refresh_expires_at,
            )

    def save(self, tokens: OAuthTokens) -> None:
        """Upsert and commit; returns only once the tokens are durable."""
        values = {
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "access_expires_at": tokens.access_expires_at,
            "refresh_expires_at": tokens.refresh_expires_at,
            "updated_at": utcnow(),
        }
        with self._sessions() as session, session.begin():
            insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
            statement = insert(OAuthToken).values(connection=self.connection, **values)
            session.execute(statement.on_conflict_do_update(index_elements=["connection"], set_=values))

    def __repr__(self) -> str:  # never show the tokens themselves
        return f"DbTokenStore(connection={self.connection!r})"
