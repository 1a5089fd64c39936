"""The console's server-rendered pages (Jinja2; htmx for the live parts), over the same read model
and actions as the API. Every form posts with the session's CSRF token and redirects back
(post/redirect/get) with a one-time notice."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from sync_engine import audit
from sync_engine.reconcile import review_queue
from sync_engine.reports import REPORT_NAMES, UnknownReport, run_report
from sync_engine.runtime import Runtime
from sync_engine.support import LetterFilter, find_letters, letter_dict, list_runs
from sync_engine.users import Throttled, authenticate, close_session, list_users, open_session, user_dict
from sync_engine.web import actions, data
from sync_engine.web.api import ApiError, invoice_pdf_response, parse_line_amounts
from sync_engine.web.charts import chart
from sync_engine.web.security import SESSION_COOKIE, Auth, audited, client_address, requires

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
FLASH_COOKIE = "billsync_notice"

Viewer = Annotated[Auth, Depends(requires("read", page=True))]


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def render(
    request: Request, template: str, auth: Auth | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    notice = unquote(request.cookies.get(FLASH_COOKIE) or "") or None
    response = templates.TemplateResponse(
        request,
        template,
        {"auth": auth, "notice": notice, "csrf": auth.csrf_token if auth else None, **context},
        status_code=status_code,
    )
    if notice:
        response.delete_cookie(FLASH_COOKIE)
    return response


def back(url: str, notice: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(FLASH_COOKIE, quote(notice[:300]), max_age=60, httponly=True, samesite="strict")
    return response


async def act(
    request: Request, auth: Auth, action: str, target: str, work: Any, url: str, done: str, **details: Any
) -> Response:
    """Run an action for a page: audited, then back to ``url`` with what happened."""
    try:
        result = await run_in_threadpool(audited, _runtime(request), auth, action, target, work, **details)
    except (actions.ActionError, ApiError) as exc:
        return back(url, f"Not done: {exc}")
    return back(url, done.format(**result) if isinstance(result, dict) else done)


# -- login -------------------------------------------------------------------------------------------
@router.get("/login")
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", None, next=_local(next))


def _local(url: str) -> str:
    """Only paths of this site after login (no open redirect to another host)."""
    return url if url.startswith("/") and not url.startswith("//") and "\\" not in url else "/"


@router.post("/login")
def login(
    request: Request,
    username: Annotated[str, Form(max_length=120)],
    password: Annotated[str, Form(max_length=1000)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    runtime = _runtime(request)
    client = client_address(request)
    try:
        with runtime.transaction() as session:
            principal = authenticate(session, username, password, client)
            cookie = open_session(session, principal)[0] if principal else None
    except Throttled as exc:
        audit.record(runtime.sessions, username, "login", None, "denied", reason="throttled", client=client)
        response = render(
            request, "login.html", None, 429, next=_local(next), error=str(exc), username=username
        )
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if cookie is None:
        audit.record(runtime.sessions, username, "login", None, "failed", client=client)
        return render(
            request,
            "login.html",
            None,
            401,
            next=_local(next),
            error="Wrong user name or password.",
            username=username,
        )
    audit.record(runtime.sessions, username, "login", None, "ok", client=client)
    redirect = RedirectResponse(_local(next), status_code=303)
    secure = request.url.scheme == "https"
    redirect.set_cookie(
        SESSION_COOKIE, cookie, httponly=True, samesite="strict", secure=secure, max_age=12 * 3600
    )
    return redirect


@router.post("/logout")
def logout(request: Request, auth: Viewer) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        with _runtime(request).transaction() as session:
            close_session(session, cookie)
    audit.record(_runtime(request).sessions, auth.username, "logout", None, "ok")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


# -- overview and runs -------------------------------------------------------------------------------
@router.get("/")
def overview(request: Request, auth: Viewer) -> HTMLResponse:
    return render(request, "overview.html", auth, status=data.overview(_runtime(request)))


@router.get("/runs")
def runs(request: Request, auth: Viewer, stream: str | None = None) -> HTMLResponse:
    runtime = _runtime(request)
    return render(
        request,
        "runs.html",
        auth,
        runs=list_runs(runtime, stream or None, 100),
        stream=stream or "",
        running=data.running_runs(runtime),
    )


@router.get("/runs/live")
def runs_live(request: Request, auth: Viewer) -> HTMLResponse:
    """The running runs and their counts so far: polled every two seconds by the runs page."""
    return render(request, "_running.html", auth, running=data.running_runs(_runtime(request)))


@router.get("/runs/{run_id}")
def run_page(request: Request, auth: Viewer, run_id: int) -> HTMLResponse:
    found = data.run_detail(_runtime(request), run_id)
    if found is None:
        return render(request, "error.html", auth, 404, message=f"No run {run_id}.")
    return render(request, "run.html", auth, run=found)


# -- dead letters ------------------------------------------------------------------------------------
@router.get("/dead-letters")
def dead_letters(
    request: Request,
    auth: Viewer,
    stream: str | None = None,
    entity: str | None = None,
    error_type: str | None = None,
    status: str = "open",
) -> HTMLResponse:
    where = LetterFilter(
        stream=stream or None, entity=entity or None, error_type=error_type or None, status=status or None
    )
    letters = [letter_dict(d) for d in find_letters(_runtime(request), where)]
    return render(
        request,
        "dead_letters.html",
        auth,
        letters=letters,
        filters={
            "stream": stream or "",
            "entity": entity or "",
            "error_type": error_type or "",
            "status": status,
        },
    )


@router.get("/dead-letters/{letter_id}")
def dead_letter(request: Request, auth: Viewer, letter_id: int) -> HTMLResponse:
    found = find_letters(_runtime(request), LetterFilter(ids=[letter_id], status=None))
    if not found:
        return render(request, "error.html", auth, 404, message=f"No dead letter {letter_id}.")
    return render(request, "dead_letter.html", auth, letter=letter_dict(found[0], with_payload=True))


def _ids(values: list[str]) -> list[int]:
    return [int(v) for v in values if v.isdigit()]


@router.post("/dead-letters/replay")
async def replay(
    request: Request,
    auth: Annotated[Auth, Depends(requires("replay", page=True))],
    ids: Annotated[list[str], Form()] = [],  # noqa: B006
    back_to: Annotated[str, Form()] = "/dead-letters",
) -> Response:
    chosen, runtime = _ids(ids), _runtime(request)
    return await act(
        request,
        auth,
        "replay",
        ",".join(map(str, chosen)),
        lambda: actions.replay(runtime, auth.username, chosen),
        _local(back_to),
        "Replayed {replayed}: {resolved} resolved, {still_failing} still failing.",
    )


@router.post("/dead-letters/discard")
async def discard(
    request: Request,
    auth: Annotated[Auth, Depends(requires("discard", page=True))],
    ids: Annotated[list[str], Form()] = [],  # noqa: B006
) -> Response:
    chosen, runtime = _ids(ids), _runtime(request)
    return await act(
        request,
        auth,
        "discard",
        ",".join(map(str, chosen)),
        lambda: actions.discard(runtime, auth.username, chosen),
        "/dead-letters",
        "Discarded {discarded}.",
    )


# -- customers ---------------------------------------------------------------------------------------
@router.get("/customers")
def customers(request: Request, auth: Viewer, q: str | None = None) -> HTMLResponse:
    return render(
        request, "customers.html", auth, customers=data.customers(_runtime(request), q or None), q=q or ""
    )


@router.get("/customers/{customer_id}")
def customer(request: Request, auth: Viewer, customer_id: str) -> HTMLResponse:
    found = data.customer_detail(_runtime(request), customer_id)
    if found is None:
        return render(request, "error.html", auth, 404, message=f"No customer {customer_id}.")
    return render(request, "customer.html", auth, customer=found)


@router.post("/customers/{customer_id}/resync")
async def resync(
    request: Request, customer_id: str, auth: Annotated[Auth, Depends(requires("resync", page=True))]
) -> Response:
    runtime = _runtime(request)
    return await act(
        request,
        auth,
        "resync",
        customer_id,
        lambda: actions.resync(runtime, auth.username, customer_id),
        f"/customers/{quote(customer_id)}",
        "Resynced from {connection} ({record}).",
    )


# -- invoices ----------------------------------------------------------------------------------------
@router.get("/invoices")
def invoices(request: Request, auth: Viewer, q: str | None = None, status: str | None = None) -> HTMLResponse:
    status = status if status in data.INVOICE_STATUSES else None
    rows = data.invoices(_runtime(request), q or None, status)
    return render(
        request,
        "invoices.html",
        auth,
        invoices=rows,
        q=q or "",
        status=status or "",
        statuses=data.INVOICE_STATUSES,
    )


@router.get("/invoices/{number}")
def invoice(request: Request, auth: Viewer, number: str) -> HTMLResponse:
    found = data.invoice_detail(_runtime(request), number)
    if found is None:
        return render(request, "error.html", auth, 404, message=f"No invoice {number}.")
    return render(request, "invoice.html", auth, invoice=found)


@router.get("/invoices/{number}/pdf")
def invoice_pdf(request: Request, auth: Viewer, number: str) -> Response:
    try:
        return invoice_pdf_response(_runtime(request), number)
    except ApiError as exc:
        return render(request, "error.html", auth, exc.status_code, message=str(exc))


@router.post("/invoices/{number}/void")
async def void(
    request: Request,
    number: str,
    auth: Annotated[Auth, Depends(requires("void", page=True))],
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    runtime = _runtime(request)
    return await act(
        request,
        auth,
        "void",
        number,
        lambda: actions.void(runtime, auth.username, number, reason),
        f"/invoices/{quote(number)}",
        "Invoice {number} voided.",
        reason=reason,
    )


@router.post("/invoices/{number}/credit-note")
async def credit(
    request: Request,
    number: str,
    auth: Annotated[Auth, Depends(requires("credit_note", page=True))],
    reason: Annotated[str, Form(max_length=500)] = "",
    lines: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """``lines``: empty for everything, else ``POSITION=AMOUNT`` pairs separated by commas."""
    runtime, url = _runtime(request), f"/invoices/{quote(number)}"
    pairs = dict(item.strip().partition("=")[::2] for item in lines.split(",") if item.strip())
    try:
        amounts = parse_line_amounts(pairs)
    except ApiError as exc:
        return back(url, f"Not done: {exc}")
    return await act(
        request,
        auth,
        "credit_note",
        number,
        lambda: actions.credit_note(runtime, auth.username, number, reason, amounts),
        url,
        "Credit note {number} issued ({currency} {total}).",
        reason=reason,
    )


# -- payments ----------------------------------------------------------------------------------------
@router.get("/payments")
def payments(request: Request, auth: Viewer) -> HTMLResponse:
    runtime = _runtime(request)
    with runtime.sessions() as session:
        queue = review_queue(session)
    return render(request, "payments.html", auth, payments=data.payments(runtime), queue=queue)


@router.post("/payments/lines/{line_id}/match")
async def match(
    request: Request,
    line_id: int,
    auth: Annotated[Auth, Depends(requires("match_payments", page=True))],
    invoices: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    runtime, numbers = _runtime(request), [n for n in invoices.replace(",", " ").split() if n]
    return await act(
        request,
        auth,
        "match_payment",
        str(line_id),
        lambda: actions.match_payment(runtime, auth.username, line_id, numbers),
        "/payments",
        "Line {line} matched: payment {payment}.",
        invoices=numbers,
    )


@router.post("/payments/lines/{line_id}/ignore")
async def ignore(
    request: Request,
    line_id: int,
    auth: Annotated[Auth, Depends(requires("match_payments", page=True))],
    note: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    runtime = _runtime(request)
    return await act(
        request,
        auth,
        "ignore_payment",
        str(line_id),
        lambda: actions.ignore_payment(runtime, auth.username, line_id, note),
        "/payments",
        "Line {line} ignored.",
    )


# -- analytics and administration --------------------------------------------------------------------
@router.get("/analytics")
def analytics(
    request: Request,
    auth: Viewer,
    report: str = "mrr",
    date_from: str | None = None,
    date_to: str | None = None,
    months: str | None = None,
) -> HTMLResponse:
    runtime = _runtime(request)
    error = None
    try:
        result = run_report(
            runtime,
            report,
            date_from=dt.date.fromisoformat(date_from) if date_from else None,
            date_to=dt.date.fromisoformat(date_to) if date_to else None,
            months=int(months) if months else None,
        ).to_dict()
    except (UnknownReport, ValueError) as exc:
        result, error = None, str(exc)
    return render(
        request,
        "analytics.html",
        auth,
        status_code=200 if error is None else 400,
        names=REPORT_NAMES,
        current=report,
        report=result,
        charts=chart(result) if result else [],
        error=error,
        params={"date_from": date_from or "", "date_to": date_to or "", "months": months or ""},
    )


@router.get("/audit")
def audit_log(
    request: Request,
    auth: Annotated[Auth, Depends(requires("read_audit", page=True))],
    actor: str | None = None,
    action: str | None = None,
) -> HTMLResponse:
    with _runtime(request).sessions() as session:
        rows = audit.entries(session, actor=actor or None, action=action or None, limit=500)
    return render(request, "audit.html", auth, entries=rows, actor=actor or "", action=action or "")


@router.get("/users")
def users(
    request: Request, auth: Annotated[Auth, Depends(requires("manage_users", page=True))]
) -> HTMLResponse:
    with _runtime(request).sessions() as session:
        rows = [user_dict(u) for u in list_users(session)]
    return render(request, "users.html", auth, users=rows)
