"""The JSON REST API under ``/api``: the same read model and actions as the console's pages.

Authenticate with ``Authorization: Bearer <token>`` (``billsync users token NAME``) or the console's
session cookie (then state-changing calls need the ``X-CSRF-Token`` header). Errors are
``{"error": "..."}`` with 400/401/403/404/409; the OpenAPI document is ``GET /api/openapi.json``.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from sync_engine import audit
from sync_engine.reconcile import review_queue
from sync_engine.reports import REPORT_NAMES, UnknownReport, run_report
from sync_engine.runtime import Runtime
from sync_engine.support import LetterFilter, find_letters, letter_dict, list_runs
from sync_engine.users import list_users, user_dict
from sync_engine.web import actions, data
from sync_engine.web.security import Auth, audited, requires

router = APIRouter(prefix="/api", tags=["api"])

Reader = Annotated[Auth, Depends(requires("read", page=False))]


class ApiError(Exception):
    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _act(
    request: Request, auth: Auth, action: str, target: str, work: Any, **details: Any
) -> dict[str, Any]:
    try:
        result: dict[str, Any] = await run_in_threadpool(
            audited, _runtime(request), auth, action, target, work, **details
        )
    except actions.ActionError as exc:
        raise ApiError(str(exc), exc.status_code) from None
    return result


# -- bodies ------------------------------------------------------------------------------------------
class LetterIds(BaseModel):
    ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(min_length=1, max_length=500)


class VoidBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class CreditBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500)
    #: Net amount to credit per line position (as text, e.g. ``{"1": "10.00"}``); empty: everything.
    lines: dict[str, str] = Field(default_factory=dict)


class MatchBody(BaseModel):
    invoices: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=1, max_length=50)


class IgnoreBody(BaseModel):
    note: str = Field(min_length=1, max_length=500)


# -- who, status, runs -------------------------------------------------------------------------------
@router.get("/me")
def me(auth: Reader) -> dict[str, Any]:
    return {"username": auth.username, "role": auth.principal.role}


@router.get("/status")
def get_status(request: Request, auth: Reader) -> dict[str, Any]:
    return data.overview(_runtime(request))


@router.get("/runs")
def get_runs(
    request: Request,
    auth: Reader,
    stream: Annotated[str | None, Query(max_length=120)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    return list_runs(_runtime(request), stream, limit)


@router.get("/runs/{run_id}")
def get_run(
    request: Request, auth: Reader, run_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)]
) -> dict[str, Any]:
    found = data.run_detail(_runtime(request), run_id)
    if found is None:
        raise ApiError(f"no run {run_id}", 404)
    return found


# -- dead letters ------------------------------------------------------------------------------------
@router.get("/dead-letters")
def get_letters(
    request: Request,
    auth: Reader,
    stream: Annotated[str | None, Query(max_length=120)] = None,
    entity: Annotated[str | None, Query(max_length=40)] = None,
    error_type: Annotated[str | None, Query(max_length=60)] = None,
    status: Annotated[str | None, Query(pattern="^(open|replayed|resolved|discarded)$")] = "open",
) -> list[dict[str, Any]]:
    where = LetterFilter(stream=stream, entity=entity, error_type=error_type, status=status)
    return [letter_dict(d) for d in find_letters(_runtime(request), where)]


@router.get("/dead-letters/{letter_id}")
def get_letter(
    request: Request, auth: Reader, letter_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)]
) -> dict[str, Any]:
    found = find_letters(_runtime(request), LetterFilter(ids=[letter_id], status=None))
    if not found:
        raise ApiError(f"no dead letter {letter_id}", 404)
    return letter_dict(found[0], with_payload=True)


@router.post("/dead-letters/replay")
async def replay_letters(
    request: Request, body: LetterIds, auth: Annotated[Auth, Depends(requires("replay", page=False))]
) -> dict[str, Any]:
    runtime = _runtime(request)
    return await _act(
        request,
        auth,
        "replay",
        ",".join(map(str, body.ids)),
        lambda: actions.replay(runtime, auth.username, body.ids),
    )


@router.post("/dead-letters/discard")
async def discard_letters(
    request: Request, body: LetterIds, auth: Annotated[Auth, Depends(requires("discard", page=False))]
) -> dict[str, Any]:
    runtime = _runtime(request)
    return await _act(
        request,
        auth,
        "discard",
        ",".join(map(str, body.ids)),
        lambda: actions.discard(runtime, auth.username, body.ids),
    )


# -- customers ---------------------------------------------------------------------------------------
@router.get("/customers")
def get_customers(
    request: Request, auth: Reader, q: Annotated[str | None, Query(max_length=200)] = None
) -> list[dict[str, Any]]:
    return data.customers(_runtime(request), q)


@router.get("/customers/{customer_id}")
def get_customer(request: Request, auth: Reader, customer_id: str) -> dict[str, Any]:
    found = data.customer_detail(_runtime(request), customer_id)
    if found is None:
        raise ApiError(f"no customer {customer_id}", 404)
    return found


@router.post("/customers/{customer_id}/resync")
async def resync_customer(
    request: Request, customer_id: str, auth: Annotated[Auth, Depends(requires("resync", page=False))]
) -> dict[str, Any]:
    runtime = _runtime(request)
    return await _act(
        request, auth, "resync", customer_id, lambda: actions.resync(runtime, auth.username, customer_id)
    )


# -- invoices ----------------------------------------------------------------------------------------
@router.get("/invoices")
def get_invoices(
    request: Request,
    auth: Reader,
    q: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(pattern="^(" + "|".join(data.INVOICE_STATUSES) + ")$")] = None,
    customer_id: Annotated[str | None, Query(max_length=64)] = None,
) -> list[dict[str, Any]]:
    return data.invoices(_runtime(request), q, status, customer_id)


@router.get("/invoices/{number}")
def get_invoice(request: Request, auth: Reader, number: str) -> dict[str, Any]:
    found = data.invoice_detail(_runtime(request), number)
    if found is None:
        raise ApiError(f"no invoice {number}", 404)
    return found


@router.get(
    "/invoices/{number}/pdf", response_class=Response, responses={200: {"content": {"application/pdf": {}}}}
)
def get_invoice_pdf(request: Request, auth: Reader, number: str) -> Response:
    return invoice_pdf_response(_runtime(request), number)


def invoice_pdf_response(runtime: Runtime, number: str) -> Response:
    from sync_engine.invoice_docs import PdfUnavailableError
    from sync_engine.invoice_tools import InvoiceNotFoundError, invoice_pdf

    try:
        pdf = invoice_pdf(runtime, number)
    except InvoiceNotFoundError as exc:
        raise ApiError(str(exc), 404) from None
    except PdfUnavailableError as exc:
        raise ApiError(str(exc), 503) from None
    return Response(
        pdf, media_type="application/pdf", headers={"Content-Disposition": f'inline; filename="{number}.pdf"'}
    )


@router.post("/invoices/{number}/void")
async def void_invoice(
    request: Request,
    number: str,
    body: VoidBody,
    auth: Annotated[Auth, Depends(requires("void", page=False))],
) -> dict[str, Any]:
    runtime = _runtime(request)
    return await _act(
        request,
        auth,
        "void",
        number,
        lambda: actions.void(runtime, auth.username, number, body.reason),
        reason=body.reason,
    )


def parse_line_amounts(lines: dict[str, str]) -> dict[int, Decimal] | None:
    """``{"1": "10.00"}`` → ``{1: Decimal("10.00")}``; a wrong key or amount is a 400 naming it."""
    amounts: dict[int, Decimal] = {}
    for position, text in lines.items():
        try:
            amount = Decimal(text.strip())
        except (InvalidOperation, AttributeError):
            raise ApiError(f"line {position}: {text!r} is not an amount (e.g. 10.00)", 400) from None
        if not position.strip().isdigit() or not amount.is_finite():
            raise ApiError(f"line {position!r}: give a line position and a finite amount", 400)
        amounts[int(position)] = amount
    return amounts or None


@router.post("/invoices/{number}/credit-notes")
async def credit_invoice(
    request: Request,
    number: str,
    body: CreditBody,
    auth: Annotated[Auth, Depends(requires("credit_note", page=False))],
) -> dict[str, Any]:
    runtime = _runtime(request)
    amounts = parse_line_amounts(body.lines)
    return await _act(
        request,
        auth,
        "credit_note",
        number,
        lambda: actions.credit_note(runtime, auth.username, number, body.reason, amounts),
        reason=body.reason,
    )


# -- payments ----------------------------------------------------------------------------------------
@router.get("/payments")
def get_payments(
    request: Request, auth: Reader, customer_id: Annotated[str | None, Query(max_length=64)] = None
) -> list[dict[str, Any]]:
    return data.payments(_runtime(request), customer_id)


@router.get("/statement-lines/unmatched")
def get_unmatched(request: Request, auth: Reader) -> list[dict[str, Any]]:
    with _runtime(request).sessions() as session:
        return review_queue(session)


@router.post("/statement-lines/{line_id}/match")
async def match_line(
    request: Request,
    line_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)],
    body: MatchBody,
    auth: Annotated[Auth, Depends(requires("match_payments", page=False))],
) -> dict[str, Any]:
    runtime = _runtime(request)
    return await _act(
        request,
        auth,
        "match_payment",
        str(line_id),
        lambda: actions.match_payment(runtime, auth.username, line_id, body.invoices),
        invoices=body.invoices,
    )


@router.post("/statement-lines/{line_id}/ignore")
async def ignore_line(
    request: Request,
    line_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)],
    body: IgnoreBody,
    auth: Annotated[Auth, Depends(requires("match_payments", page=False))],
) -> dict[str, Any]:
    runtime = _runtime(request)
    return await _act(
        request,
        auth,
        "ignore_payment",
        str(line_id),
        lambda: actions.ignore_payment(runtime, auth.username, line_id, body.note),
    )


# -- analytics ---------------------------------------------------------------------------------------
@router.get("/reports")
def get_reports(auth: Reader) -> list[str]:
    return list(REPORT_NAMES)


@router.get("/reports/{name}")
def get_report(
    request: Request,
    auth: Reader,
    name: str,
    date_from: Annotated[dt.date | None, Query(alias="from")] = None,
    date_to: Annotated[dt.date | None, Query(alias="to")] = None,
    months: Annotated[int | None, Query(ge=1, le=120)] = None,
    as_of: Annotated[dt.date | None, Query()] = None,
) -> dict[str, Any]:
    try:
        report = run_report(
            _runtime(request), name, date_from=date_from, date_to=date_to, months=months, as_of=as_of
        )
    except UnknownReport as exc:
        raise ApiError(str(exc), 404) from None
    except ValueError as exc:
        raise ApiError(str(exc), 400) from None
    return report.to_dict()


# -- administration ----------------------------------------------------------------------------------
@router.get("/audit")
def get_audit(
    request: Request,
    auth: Annotated[Auth, Depends(requires("read_audit", page=False))],
    actor: Annotated[str | None, Query(max_length=120)] = None,
    action: Annotated[str | None, Query(max_length=60)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    with _runtime(request).sessions() as session:
        return audit.entries(session, actor=actor, action=action, limit=limit)


@router.get("/users")
def get_users(
    request: Request, auth: Annotated[Auth, Depends(requires("manage_users", page=False))]
) -> list[dict[str, Any]]:
    with _runtime(request).sessions() as session:
        return [user_dict(u) for u in list_users(session)]


def api_error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=exc.status_code)
