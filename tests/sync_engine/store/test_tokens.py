"""QBO tokens in the state store: a rotated refresh token is durable as soon as ``save`` returns."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session, sessionmaker

from connectors.quickbooks.tokens import OAuthTokens, TokenStore
from sync_engine.store import make_engine
from sync_engine.store import session_factory as make_session_factory
from sync_engine.store.tokens import DbTokenStore

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def _tokens(refresh: str, access: str | None = "access-1") -> OAuthTokens:
    return OAuthTokens(
        refresh_token=refresh,
        access_token=access,
        access_expires_at=NOW + dt.timedelta(hours=1),
        refresh_expires_at=NOW + dt.timedelta(days=100),
    )


def test_a_new_connection_has_no_tokens(session_factory: sessionmaker[Session]) -> None:
    store: TokenStore = DbTokenStore(session_factory, "qbo-main")
    assert store.load() is None


def test_saved_tokens_survive_a_restart(db_url: str, session_factory: sessionmaker[Session]) -> None:
    DbTokenStore(session_factory, "qbo-main").save(_tokens("refresh-1"))

    # a fresh engine, as after a restart of the daemon
    engine = make_engine(db_url)
    try:
        loaded = DbTokenStore(make_session_factory(engine), "qbo-main").load()
    finally:
        engine.dispose()

    assert loaded == _tokens("refresh-1")
    assert loaded is not None and loaded.access_valid(NOW)  # aware datetimes compare with aware "now"


def test_a_rotated_refresh_token_replaces_the_old_one(session_factory: sessionmaker[Session]) -> None:
    store = DbTokenStore(session_factory, "qbo-main")
    store.save(_tokens("refresh-1"))

    store.save(_tokens("refresh-2", access=None))

    assert store.load() == _tokens("refresh-2", access=None)


def test_connections_keep_their_own_tokens(session_factory: sessionmaker[Session]) -> None:
    DbTokenStore(session_factory, "qbo-eu").save(_tokens("refresh-eu"))
    DbTokenStore(session_factory, "qbo-us").save(_tokens("refresh-us"))

    loaded = DbTokenStore(session_factory, "qbo-eu").load()
    assert loaded is not None and loaded.refresh_token == "refresh-eu"


def test_the_repr_never_shows_a_token(session_factory: sessionmaker[Session]) -> None:
    store = DbTokenStore(session_factory, "qbo-main")
    store.save(_tokens("refresh-secret"))
    assert "secret" not in repr(store)
