"""Users of the console: passwords never stored, roles that nest, throttled logins, revocable tokens."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sync_engine.store.models import ApiToken, User
from sync_engine.users import (
    MAX_FAILURES_PER_USER,
    Principal,
    Throttled,
    UserError,
    add_user,
    allowed,
    authenticate,
    create_token,
    disable_user,
    open_session,
    principal_for_session,
    principal_for_token,
    verify_password,
)

PASSWORD = "correct horse battery"


def test_the_password_is_stored_only_as_a_salted_scrypt_hash(session: Session) -> None:
    a = add_user(session, "ann", PASSWORD, "admin")
    b = add_user(session, "bob", PASSWORD, "viewer")
    assert PASSWORD not in a.password_hash and a.password_hash.startswith("scrypt$")
    assert a.password_hash != b.password_hash  # salted
    assert verify_password(PASSWORD, a.password_hash)
    assert not verify_password(PASSWORD + "x", a.password_hash)
    assert not verify_password(PASSWORD, "md5$whatever")


@pytest.mark.parametrize(
    ("username", "password", "role", "message"),
    [
        ("ann", PASSWORD, "root", "unknown role 'root'; allowed: viewer, support, admin"),
        ("ann", "short", "admin", "at least 10 characters"),
        ("a b", PASSWORD, "admin", "without spaces"),
    ],
)
def test_a_bad_user_is_refused_with_what_is_allowed(
    session: Session, username: str, password: str, role: str, message: str
) -> None:
    with pytest.raises(UserError, match=message):
        add_user(session, username, password, role)


def test_a_user_name_is_taken_once(session: Session) -> None:
    add_user(session, "ann", PASSWORD, "admin")
    with pytest.raises(UserError, match="exists already"):
        add_user(session, "ann", PASSWORD, "viewer")


def test_roles_nest_viewer_reads_support_also_replays_admin_does_everything() -> None:
    assert allowed("viewer", "read") and not allowed("viewer", "replay")
    assert (
        allowed("support", "replay") and allowed("support", "resync") and allowed("support", "match_payments")
    )
    assert not allowed("support", "void") and not allowed("support", "read_audit")
    assert all(allowed("admin", p) for p in ("void", "credit_note", "discard", "manage_users", "read_audit"))
    assert not allowed("nobody", "read")


def test_five_wrong_passwords_lock_the_name_for_a_while_but_not_other_users(
    session_factory: sessionmaker[Session],
) -> None:
    now = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
    with session_factory.begin() as session:
        add_user(session, "ann", PASSWORD, "admin")
        add_user(session, "bob", PASSWORD, "viewer")
    for _ in range(MAX_FAILURES_PER_USER):
        with session_factory.begin() as session:
            assert authenticate(session, "ann", "wrong password", "10.0.0.1", now) is None
    with session_factory.begin() as session, pytest.raises(Throttled) as caught:
        authenticate(session, "ann", PASSWORD, "10.0.0.1", now)  # even the right password waits
    assert 0 < caught.value.retry_after <= 15 * 60 + 1
    with session_factory.begin() as session:
        assert authenticate(session, "bob", PASSWORD, "10.0.0.2", now) == Principal(2, "bob", "viewer")
    later = now + dt.timedelta(minutes=16)
    with session_factory.begin() as session:
        assert authenticate(session, "ann", PASSWORD, "10.0.0.1", later) is not None


def test_api_tokens_are_kept_as_hashes_and_die_with_the_user(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        add_user(session, "ops", PASSWORD, "support")
        token = create_token(session, "ops", "monitoring")
    with session_factory.begin() as session:
        stored = session.scalars(select(ApiToken.token_hash)).one()
        assert token not in stored
        assert principal_for_token(session, token) == Principal(1, "ops", "support")
        assert principal_for_token(session, token + "x") is None
        cookie, csrf = open_session(session, Principal(1, "ops", "support"))
    with session_factory.begin() as session:
        assert principal_for_session(session, cookie) == (Principal(1, "ops", "support"), csrf)
        disable_user(session, "ops")
    with session_factory.begin() as session:
        assert principal_for_token(session, token) is None
        assert principal_for_session(session, cookie) is None
        assert authenticate(session, "ops", PASSWORD, None) is None
        assert session.scalars(select(User.active)).one() is False


def test_a_session_expires(session_factory: sessionmaker[Session], tmp_path: Path) -> None:
    start = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    with session_factory.begin() as session:
        user = add_user(session, "ann", PASSWORD, "admin")
        cookie, _ = open_session(session, Principal(user.id, "ann", "admin"), start)
    with session_factory.begin() as session:
        assert principal_for_session(session, cookie, start + dt.timedelta(hours=11)) is not None
        assert principal_for_session(session, cookie, start + dt.timedelta(hours=13)) is None
