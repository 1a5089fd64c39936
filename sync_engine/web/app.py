"""``billsync serve``: the support console, the JSON API, Prometheus metrics, the Stripe webhook.

The webhook handler needs the exact bytes Stripe signed, so its body is read raw (never parsed and
re-serialised by the framework) and handed to
:func:`sync_engine.stripe_payments.handle_stripe_webhook`; the state store is synchronous, so store
work runs in worker threads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectors.stripe.webhook import SIGNATURE_HEADER
from sync_engine.runtime import Runtime
from sync_engine.stripe_payments import handle_stripe_webhook
from sync_engine.web import api, metrics, pages
from sync_engine.web.security import Auth, Forbidden, NotAuthenticated, requires

#: Stripe's events are a few KB; anything far larger is not one of them.
MAX_WEBHOOK_BYTES = 1_000_000
#: Reachable without logging in; everything else needs a session or a token.
PUBLIC_PATHS = ("/login", "/health", "/webhooks/stripe", "/static")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
}


NUL_REFUSED = "a request may not contain NUL characters (\\u0000, %00)"


class RefuseNul:
    """Answer 400 to a request whose path, query or form/JSON body holds a NUL character.

    Why: PostgreSQL text cannot hold NUL, so any such value that reaches a query or the audit log
    makes the driver raise and the request end in a 500 (found by the schemathesis test); no real
    user name, invoice number or reason contains one. The body is read once and handed on unchanged.
    The Stripe webhook is left alone: its signature covers the exact bytes.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/webhooks/"):
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope["query_string"]:
            await self._refuse(scope, receive, send)
            return
        content_type = Headers(scope=scope).get("content-type", "")
        if not content_type.startswith(("application/json", "application/x-www-form-urlencoded")):
            await self.app(scope, receive, send)
            return
        body, messages = b"", []
        while True:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        if _has_nul(body, form=content_type.startswith("application/x-www-form-urlencoded")):
            await self._refuse(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"].startswith("/api"):
            answer: Response = JSONResponse({"error": NUL_REFUSED}, status_code=400)
        else:
            answer = Response(NUL_REFUSED, status_code=400, media_type="text/plain")
        await answer(scope, receive, send)


def _has_nul(body: bytes, *, form: bool) -> bool:
    if b"\x00" in body or (form and b"%00" in body):
        return True
    if form:
        return False
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # not JSON (or absurdly nested): FastAPI itself answers that
        return False
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="billsync", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runtime = runtime
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.add_middleware(RefuseNul)  # added first: runs inside security_headers, so refusals get them too

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path.startswith(("/api", "/metrics")) or "text/html" in response.headers.get(
            "content-type", ""
        ):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(NotAuthenticated)
    async def not_authenticated(request: Request, exc: NotAuthenticated) -> Response:
        if exc.page:
            return RedirectResponse(f"/login?next={exc.next_url}", status_code=303)
        return JSONResponse(
            {"error": "authentication required"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        if exc.page:
            auth = getattr(request.state, "auth", None)
            return pages.render(request, "error.html", auth, 403, message=str(exc))
        return JSONResponse({"error": str(exc)}, status_code=403)

    @app.exception_handler(api.ApiError)
    async def api_error(request: Request, exc: api.ApiError) -> Response:
        return api.api_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
            for e in exc.errors()
        ]
        return JSONResponse({"error": "invalid request", "details": errors}, status_code=422)

    @app.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi(auth: Annotated[Auth, Depends(requires("read", page=False))]) -> dict[str, Any]:
        return app_openapi(app)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(auth: Annotated[Auth, Depends(requires("read", page=False))]) -> Response:
        body = await run_in_threadpool(metrics.render, runtime)
        return Response(body, media_type=metrics.CONTENT_TYPE)

    @app.post("/webhooks/stripe", include_in_schema=False)
    async def stripe_webhook(request: Request) -> JSONResponse:
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BYTES:
            return JSONResponse({"error": "payload too large"}, status_code=413)
        try:
            answer = await run_in_threadpool(
                handle_stripe_webhook, runtime, body, request.headers.get(SIGNATURE_HEADER)
            )
        except LookupError as exc:  # no Stripe connection configured: say so, do not crash
            return JSONResponse({"error": str(exc)}, status_code=503)
        key = "received" if answer.status < 400 else "error"
        return JSONResponse({key: answer.message}, status_code=answer.status)

    app.include_router(api.router)
    app.include_router(pages.router)
    return app


def app_openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of ``/api`` (and ``/health``), with the Bearer scheme declared."""
    if app.openapi_schema is None:
        schema = get_openapi(title="billsync API", version="1", routes=app.routes, description=api.__doc__)
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"}
        }
        schema["security"] = [{"bearer": []}]
        app.openapi_schema = schema
    return app.openapi_schema
