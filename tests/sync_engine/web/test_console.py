"""The console and the API over HTTP (FastAPI's TestClient): who may see and do what, CSRF, throttled
logins, the audit trail, and pages and API showing the same figures."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.routing import Mount

from sync_engine.runtime import Runtime
from sync_engine.store.models import AuditEntry, DeadLetter, Invoice, OutboxItem
from sync_engine.users import add_user, create_token
from sync_engine.web import create_app
from sync_engine.web.app import PUBLIC_PATHS
from tests.sync_engine.books import add_rows, customer_row, invoice_row, make_runtime

PASSWORD = "a long enough password"
TODAY = dt.datetime.now(dt.UTC).date()


@dataclass
class Console:
    runtime: Runtime
    client: TestClient
    tokens: dict[str, str]

    def login(self, username: str) -> str:
        """Log in through the form; returns the CSRF token of the session."""
        page = self.client.post(
            "/login", data={"username": username, "password": PASSWORD, "next": "/"}, follow_redirects=False
        )
        assert page.status_code == 303, page.text
        return csrf_of(self.client.get("/").text)

    def api(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def audit(self) -> list[tuple[str, str, str | None, str]]:
        with self.runtime.sessions() as session:
            rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id))
            return [(e.actor, e.action, e.target, e.outcome) for e in rows]


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


@pytest.fixture
def console(db_url: str, tmp_path: Path) -> Iterator[Console]:
    runtime = make_runtime(db_url, tmp_path)
    tokens = {}
    with runtime.transaction() as session:
        for role in ("admin", "support", "viewer"):
            add_user(session, role, PASSWORD, role)
            tokens[role] = create_token(session, role, "tests")
    add_rows(
        runtime,
        customer_row("cus_1", name="Acme GmbH", currency="EUR", email="ap@acme.example"),
        invoice_row(
            "INV-000001", "119.00", customer_id="cus_1", due=TODAY + dt.timedelta(days=10), currency="EUR"
        ),
        invoice_row(
            "INV-000002", "50.00", customer_id="cus_1", due=TODAY + dt.timedelta(days=10), currency="EUR"
        ),
        OutboxItem(
            destination="quickbooks",
            entity="invoice",
            canonical_id="inv_INV-000001",
            idempotency_key="qbo-invoice-1",
            status="failed",
            last_error="6000 business validation",
        ),
        DeadLetter(
            stream="push:quickbooks",
            system="quickbooks",
            entity="invoice",
            external_id="inv_INV-000001",
            payload={"number": "INV-000001"},
            error="6000: a business validation error has occurred",
            error_type="RecordError",
        ),
    )
    with TestClient(create_app(runtime), base_url="http://testserver") as client:
        yield Console(runtime, client, tokens)
    runtime.close()


# -- nobody gets in without logging in ---------------------------------------------------------------
def _routes(app: object) -> Iterator[tuple[str, str]]:
    """Every (method, path) the app answers, with path parameters filled in; included routers too."""
    for route in app.routes:  # type: ignore[attr-defined]
        if isinstance(route, Mount):
            continue
        if hasattr(route, "original_router"):  # FastAPI's included router (prefixes live on the router)
            yield from _routes(route.original_router)
            continue
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                yield method, re.sub(r"\{[^}]+\}", "1", route.path)


def test_every_route_but_login_and_health_needs_a_user(console: Console) -> None:
    walked = 0
    for method, path in _routes(console.client.app):
        if path.startswith(PUBLIC_PATHS):
            continue
        answer = console.client.request(method, path, follow_redirects=False)
        walked += 1
        if path.startswith(("/api", "/metrics")):
            assert answer.status_code == 401, f"{method} {path}: {answer.status_code}"
            assert answer.json() == {"error": "authentication required"}
        else:
            assert answer.status_code == 303, f"{method} {path}: {answer.status_code}"
            assert answer.headers["location"].startswith("/login?next=")
    assert walked >= 40
    assert console.client.get("/health").json() == {"status": "ok"}
    assert console.client.get("/login").status_code == 200


def test_a_wrong_password_fails_and_five_lock_the_name(console: Console) -> None:
    for _ in range(5):
        answer = console.client.post("/login", data={"username": "support", "password": "nope nope nope"})
        assert answer.status_code == 401 and "Wrong user name or password" in answer.text
    locked = console.client.post("/login", data={"username": "support", "password": PASSWORD})
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert ("support", "login", None, "denied") in console.audit()


def test_after_login_the_next_page_is_on_this_site_only(console: Console) -> None:
    answer = console.client.post(
        "/login",
        data={"username": "viewer", "password": PASSWORD, "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/"


# -- pages -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/runs",
        "/runs/live",
        "/dead-letters",
        "/dead-letters/1",
        "/customers",
        "/customers/cus_1",
        "/invoices",
        "/invoices/INV-000001",
        "/payments",
        "/analytics",
        "/audit",
        "/users",
    ],
)
def test_every_main_page_renders_for_an_admin(console: Console, path: str) -> None:
    console.login("admin")
    page = console.client.get(path)
    assert page.status_code == 200, page.text[-2000:]
    assert "<html" in page.text or path == "/runs/live"


def test_customer_page_shows_invoices_and_search_finds_by_name(console: Console) -> None:
    console.login("viewer")
    assert "cus_1" in console.client.get("/customers", params={"q": "acme"}).text
    assert "Acme" not in console.client.get("/customers", params={"q": "nobody"}).text.split("<main>")[1]
    page = console.client.get("/customers/cus_1").text
    assert "INV-000001" in page and "INV-000002" in page
    assert "Resync this customer" not in page  # a viewer cannot resync


def test_a_viewer_sees_no_replay_button_and_the_api_refuses(console: Console) -> None:
    console.login("viewer")
    page = console.client.get("/dead-letters").text
    assert "6000: a business validation error" in page and "Replay selected" not in page
    refused = console.client.post(
        "/api/dead-letters/replay", json={"ids": [1]}, headers=console.api("viewer")
    )
    assert refused.status_code == 403 and "viewer" in refused.json()["error"]
    assert ("viewer", "replay", "POST /api/dead-letters/replay", "denied") in console.audit()


def test_a_form_without_its_csrf_token_is_refused(console: Console) -> None:
    console.login("support")
    refused = console.client.post("/dead-letters/replay", data={"ids": "1"}, follow_redirects=False)
    assert refused.status_code == 403 and "security token" in refused.text
    with console.runtime.sessions() as session:
        assert session.get(DeadLetter, 1).status == "open"  # type: ignore[union-attr]


def test_support_replays_a_dead_letter_from_the_page_and_it_goes_back_to_the_outbox(console: Console) -> None:
    csrf = console.login("support")
    done = console.client.post("/dead-letters/replay", data={"ids": "1", "csrf_token": csrf})
    assert done.status_code == 200 and "Replayed 1: 1 resolved, 0 still failing." in done.text
    with console.runtime.sessions() as session:
        assert session.get(DeadLetter, 1).status == "resolved"  # type: ignore[union-attr]
        assert session.scalars(select(OutboxItem.status)).one() == "pending"
    assert ("support", "replay", "1", "ok") in console.audit()
    again = console.client.post("/api/dead-letters/replay", json={"ids": [1]}, headers=console.api("support"))
    assert again.status_code == 409 and "none of these dead letters is open" in again.json()["error"]


def test_an_admin_voids_an_invoice_and_the_audit_log_shows_it(console: Console) -> None:
    csrf = console.login("admin")
    page = console.client.post(
        "/invoices/INV-000002/void", data={"reason": "ordered twice", "csrf_token": csrf}
    )
    assert page.status_code == 200 and "Invoice INV-000002 voided." in page.text
    with console.runtime.sessions() as session:
        invoice = session.scalars(select(Invoice).where(Invoice.number == "INV-000002")).one()
        assert (invoice.status, invoice.void_reason, invoice.voided_by) == ("void", "ordered twice", "admin")
    log = console.client.get("/audit").text
    assert "void" in log and "INV-000002" in log and "ordered twice" in log
    api_log = console.client.get("/api/audit", headers=console.api("admin")).json()
    assert (
        api_log[0]["action"] == "void"
        and api_log[0]["target"] == "INV-000002"
        and api_log[0]["outcome"] == "ok"
    )
    # support may not void, and the audit log is for admins only
    assert (
        console.client.post(
            "/api/invoices/INV-000001/void", json={"reason": "x"}, headers=console.api("support")
        ).status_code
        == 403
    )
    assert console.client.get("/api/audit", headers=console.api("support")).status_code == 403


def test_a_refused_action_says_why_and_is_logged_as_failed(console: Console) -> None:
    answer = console.client.post(
        "/api/invoices/INV-999999/void", json={"reason": "typo"}, headers=console.api("admin")
    )
    assert answer.status_code == 409 and "INV-999999" in answer.json()["error"]
    assert ("admin", "void", "INV-999999", "failed") in console.audit()


# -- API ---------------------------------------------------------------------------------------------
def test_the_api_shows_money_as_text_and_the_same_rows_as_the_pages(console: Console) -> None:
    rows = console.client.get("/api/invoices", headers=console.api("viewer")).json()
    assert {r["number"]: r["total"] for r in rows} == {"INV-000001": "119.00", "INV-000002": "50.00"}
    detail = console.client.get("/api/invoices/INV-000001", headers=console.api("viewer")).json()
    assert detail["amount_due"] == "119.00" and detail["customer"] == "Acme GmbH"
    assert console.client.get("/api/invoices/NOPE", headers=console.api("viewer")).status_code == 404
    status = console.client.get("/api/status", headers=console.api("viewer")).json()
    assert status["dead_letters"] == {"push:quickbooks": 1}
    assert status["outbox"] == {"quickbooks/failed": 1}


def test_the_openapi_document_lists_the_api(console: Console) -> None:
    assert console.client.get("/api/openapi.json").status_code == 401
    doc = console.client.get("/api/openapi.json", headers=console.api("viewer")).json()
    assert "/api/dead-letters/replay" in doc["paths"] and "/api/reports/{name}" in doc["paths"]
    assert not any(p in doc["paths"] for p in ("/login", "/dead-letters", "/webhooks/stripe"))


def test_reports_through_the_api_equal_the_report_itself(console: Console) -> None:
    from sync_engine.reports import REPORT_NAMES, run_report

    assert console.client.get("/api/reports", headers=console.api("viewer")).json() == list(REPORT_NAMES)
    for name in REPORT_NAMES:
        answer = console.client.get(f"/api/reports/{name}", headers=console.api("viewer"))
        assert answer.status_code == 200, answer.text
        assert answer.json() == run_report(console.runtime, name).to_dict()
    assert console.client.get("/api/reports/nope", headers=console.api("viewer")).status_code == 404


def test_metrics_for_prometheus(console: Console) -> None:
    assert console.client.get("/metrics").status_code == 401
    text = console.client.get("/metrics", headers=console.api("viewer")).text
    assert 'billsync_dead_letters{status="open",stream="push:quickbooks"} 1.0' in text
    assert 'billsync_outbox_items{destination="quickbooks",status="failed"} 1.0' in text
    assert 'billsync_invoices{currency="EUR",status="open"} 2.0' in text
    assert "billsync_runs_total" in text or "# TYPE billsync_runs counter" in text


def test_users_and_audit_pages_are_for_admins(console: Console) -> None:
    console.login("support")
    assert console.client.get("/audit").status_code == 403
    assert console.client.get("/users").status_code == 403
    assert "Audit log" not in console.client.get("/").text
