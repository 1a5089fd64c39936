"""billsync's HTTP side: the Stripe webhook endpoint and a health check (``billsync serve``).

Kept small on purpose: the webhook handler needs the exact bytes Stripe signed, so the body is read
raw (never parsed and re-serialised by the framework) and handed to
:func:`sync_engine.stripe_payments.handle_stripe_webhook`, which runs in a worker thread because the
state store is synchronous.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from connectors.stripe.webhook import SIGNATURE_HEADER
from sync_engine.runtime import Runtime
from sync_engine.stripe_payments import handle_stripe_webhook

#: Stripe's events are a few KB; anything far larger is not one of them.
MAX_WEBHOOK_BYTES = 1_000_000


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="billsync", version="1", docs_url=None, redoc_url=None)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/webhooks/stripe")
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

    return app
