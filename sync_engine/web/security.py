"""Who is asking, and may they: console sessions (cookie + CSRF token) and API tokens (Bearer).

- Every route but ``/login``, ``/health``, the static assets and the Stripe webhook (which Stripe's
  signature authenticates) needs a user: pages redirect to the login form, the API answers 401.
- A state-changing request made with the session cookie must carry the session's CSRF token (form
  field ``csrf_token`` or header ``X-CSRF-Token``); with a Bearer token there is no ambient
  credential to abuse, so none is needed.
- A permission a role lacks is answered 403 and written to the audit log as ``denied``.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from sync_engine import audit
from sync_engine.runtime import Runtime
from sync_engine.users import Principal, principal_for_session, principal_for_token

SESSION_COOKIE = "billsync_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Auth:
    principal: Principal
    csrf_token: str | None  # None: authenticated by API token

    @property
    def username(self) -> str:
        return self.principal.username


class NotAuthenticated(Exception):
    """No valid session or token: a page redirects to the login form, the API answers 401."""

    def __init__(self, page: bool, next_url: str = "/") -> None:
        self.page = page
        self.next_url = next_url


class Forbidden(Exception):
    """Authenticated, but the role lacks the permission (403), or the CSRF token is missing/wrong."""

    def __init__(self, message: str, page: bool) -> None:
        super().__init__(message)
        self.page = page


def _lookup(runtime: Runtime, request: Request) -> Auth | None:
    header = request.headers.get("authorization", "")
    with runtime.sessions() as session, session.begin():
        if header.lower().startswith("bearer "):
            principal = principal_for_token(session, header[7:].strip())
            return Auth(principal, None) if principal else None
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        found = principal_for_session(session, cookie)
        return Auth(*found) if found else None


async def _csrf_ok(request: Request, expected: str) -> bool:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    return sent is not None and hmac.compare_digest(sent, expected)


def requires(permission: str, *, page: bool) -> Callable[[Request], Awaitable[Auth]]:
    """A FastAPI dependency: the caller, if authenticated, allowed ``permission`` and CSRF-safe."""

    async def dependency(request: Request) -> Auth:
        runtime: Runtime = request.app.state.runtime
        auth = await run_in_threadpool(_lookup, runtime, request)
        if auth is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise NotAuthenticated(page, quote(target, safe="/?=&"))
        if request.method not in SAFE_METHODS and auth.csrf_token is not None:
            if not await _csrf_ok(request, auth.csrf_token):
                await run_in_threadpool(
                    audit.record, runtime.sessions, auth.username, "csrf_rejected", request.url.path, "denied"
                )
                raise Forbidden("the form's security token is missing or expired; reload the page", page)
        if not auth.principal.can(permission):
            await run_in_threadpool(
                audit.record,
                runtime.sessions,
                auth.username,
                permission,
                f"{request.method} {request.url.path}",
                "denied",
                role=auth.principal.role,
            )
            raise Forbidden(f"your role ({auth.principal.role}) may not {permission.replace('_', ' ')}", page)
        request.state.auth = auth
        return auth

    return dependency


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def audited(
    runtime: Runtime, auth: Auth, action: str, target: str | None, work: Callable[[], Any], **details: Any
) -> Any:
    """Run ``work`` and write the audit entry of the outcome (ok, or failed with the error)."""
    try:
        result = work()
    except Exception as exc:
        audit.record(
            runtime.sessions, auth.username, action, target, "failed", error=str(exc)[:500], **details
        )
        raise
    audit.record(runtime.sessions, auth.username, action, target, "ok", **details)
    return result
