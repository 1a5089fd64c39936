"""People who use the console and the API: accounts, roles, passwords, API tokens, sessions, throttling.

Why it is shaped this way:

- passwords are hashed with scrypt (stdlib, memory-hard), each with its own salt; API tokens and
  session ids are random 256-bit values of which only the SHA-256 is stored, so a copy of the
  database lets nobody log in;
- roles are a closed, ordered set: ``viewer`` reads, ``support`` also resyncs, replays and matches
  payments, ``admin`` may do everything (void, credit notes, discard, users, the audit log);
- failed logins are rows, not process memory, so throttling holds across restarts and workers.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from sync_engine.store.models import ApiToken, LoginAttempt, User, WebSession, utcnow

ROLES: Final = ("viewer", "support", "admin")

#: What each role may do; a role has its own permissions and every lower role's.
PERMISSIONS: Final[dict[str, str]] = {
    "read": "viewer",
    "resync": "support",
    "replay": "support",
    "match_payments": "support",
    "discard": "admin",
    "void": "admin",
    "credit_note": "admin",
    "manage_users": "admin",
    "read_audit": "admin",
}

SESSION_HOURS: Final = 12
#: A user name (or a client address) with this many failures in the window must wait.
MAX_FAILURES_PER_USER: Final = 5
MAX_FAILURES_PER_CLIENT: Final = 20
THROTTLE_WINDOW: Final = dt.timedelta(minutes=15)
MIN_PASSWORD_LENGTH: Final = 10

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class UserError(ValueError):
    """A user cannot be added or changed (the message says why)."""


class Throttled(Exception):
    """Too many failed logins: try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Principal:
    """Who is asking: enough to check a permission and to write the audit log."""

    user_id: int
    username: str
    role: str

    def can(self, permission: str) -> bool:
        return allowed(self.role, permission)


def allowed(role: str, permission: str) -> bool:
    needed = PERMISSIONS[permission]
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


# -- passwords ---------------------------------------------------------------------------------------
def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    encode = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${encode(salt).decode()}${encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    expected = base64.b64decode(digest)
    actual = hashlib.scrypt(
        password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
    )
    return hmac.compare_digest(actual, expected)


#: Checked against when the user name is unknown, so both cases take the same time.
_DUMMY_HASH: Final = hash_password(secrets.token_urlsafe(16))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- accounts ----------------------------------------------------------------------------------------
def add_user(session: Session, username: str, password: str, role: str) -> User:
    username = username.strip()
    if not username or len(username) > 120 or any(c.isspace() for c in username):
        raise UserError("a user name is 1 to 120 characters without spaces")
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; allowed: {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise UserError(f"user {username!r} exists already")
    user = User(username=username, password_hash=hash_password(password), role=role, active=True)
    session.add(user)
    session.flush()
    return user


def user_dict(user: User) -> dict[str, object]:
    """A user as the CLI, the API and the users page show it (never the password hash)."""
    return {
        "username": user.username,
        "role": user.role,
        "active": user.active,
        "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None,
    }


def disable_user(session: Session, username: str) -> User:
    """Disabled users cannot log in; their sessions end and their tokens stop working at once."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise UserError(f"no user {username!r}")
    user.active = False
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def create_token(session: Session, username: str, name: str) -> str:
    """A new API token for ``username``; the value is returned once and only its hash is kept."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.active:
        raise UserError(f"no active user {username!r}")
    token = "bst_" + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, name=name, token_hash=_sha256(token)))
    return token


def principal_for_token(session: Session, token: str) -> Principal | None:
    row = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == _sha256(token), ApiToken.revoked_at.is_(None), User.active)
    ).first()
    if row is None:
        return None
    api_token, user = row
    api_token.last_used_at = utcnow()
    return Principal(user.id, user.username, user.role)


# -- logins and sessions -----------------------------------------------------------------------------
def _check_throttle(session: Session, username: str, client: str | None, now: dt.datetime) -> None:
    since = now - THROTTLE_WINDOW
    checks: list[tuple[object, int]] = [(LoginAttempt.username == username, MAX_FAILURES_PER_USER)]
    if client:
        checks.append((LoginAttempt.client == client, MAX_FAILURES_PER_CLIENT))
    for condition, limit in checks:
        count, oldest = session.execute(
            select(func.count(), func.min(LoginAttempt.attempted_at)).where(
                condition,  # type: ignore[arg-type]
                LoginAttempt.attempted_at > since,
            )
        ).one()
        if count >= limit:
            wait = (oldest + THROTTLE_WINDOW - now).total_seconds()
            raise Throttled(max(1, int(wait) + 1))


def authenticate(
    session: Session, username: str, password: str, client: str | None, now: dt.datetime | None = None
) -> Principal | None:
    """The user if the password is right; a failure is recorded. Raises :class:`Throttled` first."""
    now = now or utcnow()
    _check_throttle(session, username, client, now)
    user = session.scalar(select(User).where(User.username == username))
    good = verify_password(password, user.password_hash if user else _DUMMY_HASH)
    if user is None or not good or not user.active:
        session.add(LoginAttempt(username=username[:120], client=client, attempted_at=now))
        return None
    user.last_login_at = now
    session.execute(delete(LoginAttempt).where(LoginAttempt.username == username))
    return Principal(user.id, user.username, user.role)


def open_session(session: Session, principal: Principal, now: dt.datetime | None = None) -> tuple[str, str]:
    """A new console session: ``(cookie value, CSRF token)``."""
    now = now or utcnow()
    cookie = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    session.execute(delete(WebSession).where(WebSession.expires_at < now))
    session.add(
        WebSession(
            id_hash=_sha256(cookie),
            user_id=principal.user_id,
            csrf_token=csrf,
            created_at=now,
            expires_at=now + dt.timedelta(hours=SESSION_HOURS),
        )
    )
    return cookie, csrf


def principal_for_session(
    session: Session, cookie: str, now: dt.datetime | None = None
) -> tuple[Principal, str] | None:
    """``(who, their CSRF token)`` for a live session cookie of an active user."""
    row = session.execute(
        select(WebSession, User)
        .join(User, User.id == WebSession.user_id)
        .where(WebSession.id_hash == _sha256(cookie), User.active)
    ).first()
    if row is None:
        return None
    web_session, user = row
    if web_session.expires_at <= (now or utcnow()):
        return None
    return Principal(user.id, user.username, user.role), web_session.csrf_token


def close_session(session: Session, cookie: str) -> None:
    session.execute(delete(WebSession).where(WebSession.id_hash == _sha256(cookie)))
