"""Issue 7's acceptance tests in a real browser, on the demo data: what support staff, a viewer and an
admin see and do in the console, and screenshots of every main page (``tests/artifacts/*.png``).

Why a browser and not only TestClient: these prove the console as people use it, through the
rendered HTML, the forms with their CSRF tokens, the cookies, the redirects and the notices, against
the real ``billsync serve`` process.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sync_engine.store.db import make_engine
from sync_engine.store.models import CanonicalRecord, CreditNote, DeadLetter, Invoice, InvoiceDelivery
from tests.browser.conftest import ARTIFACTS, Console, log_in

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@contextmanager
def store(console: Console) -> Iterator[Session]:
    """A session on the console's copy of the demo database (committed on success)."""
    engine = make_engine(console.database_url)
    try:
        with Session(engine) as session, session.begin():
            yield session
    finally:
        engine.dispose()


def open_mail_letter(console: Console) -> DeadLetter:
    """An open dead letter of an invoice mail that bounced (the demo's ``.invalid`` addresses)."""
    with store(console) as session:
        letter = session.scalars(
            select(DeadLetter)
            .where(DeadLetter.stream == "deliver:email", DeadLetter.status == "open")
            .order_by(DeadLetter.id)
        ).first()
        assert letter is not None, "the demo left no bounced invoice mail"
        session.expunge(letter)
        return letter


def table_rows(page: Page, heading: str) -> list[dict[str, str]]:
    """The rows of the table that follows the ``<h2>`` ``heading``, as {column: text}."""
    table = page.locator(f"h2:text-is('{heading}') + table")
    columns = [c.strip() for c in table.locator("thead th").all_inner_texts()]
    return [
        dict(zip(columns, (c.strip() for c in row.locator("td").all_inner_texts()), strict=False))
        for row in table.locator("tbody tr").all()
    ]


# -- support replays a dead letter -------------------------------------------------------------------
def test_support_replays_a_bounced_invoice_mail_after_the_address_is_fixed(
    console: Console, page: Page
) -> None:
    letter = open_mail_letter(console)
    number, customer_id = str(letter.payload["number"]), str(letter.payload["customer_id"])
    fixed = f"accounts-payable@{customer_id.replace('_', '-')}.example.com"
    with store(console) as session:  # the address corrected in the CRM and pulled, as a sync would
        customer = session.get(CanonicalRecord, customer_id)
        assert customer is not None and ".invalid" in str(
            customer.data.get("billing_email") or customer.data.get("email")
        )
        customer.data = {**customer.data, "billing_email": fixed, "email": fixed}
        sent_before = session.scalar(
            select(func.count())
            .select_from(InvoiceDelivery)
            .where(InvoiceDelivery.status == "sent", InvoiceDelivery.document_number == number)
        )
    mails_before = len(console.sink.messages)

    log_in(page, console, "support")
    page.get_by_role("link", name="Dead letters").click()
    page.get_by_label("Stream").fill("deliver:email")
    page.get_by_role("button", name="Filter").click()
    row = page.locator("tbody tr", has_text=number)
    expect(row).to_contain_text(".invalid refused: 550")
    row.get_by_role("link", name=str(letter.id), exact=True).click()
    expect(page.get_by_role("heading", name=f"Dead letter {letter.id}")).to_be_visible()
    expect(page.locator("pre.error")).to_contain_text("Recipient address rejected")

    page.get_by_role("button", name="Replay", exact=True).click()

    expect(page.get_by_role("status")).to_have_text(re.compile(r"^Replayed 1: 1 resolved, 0 still failing\."))
    expect(page.locator("dl.kv")).to_contain_text(re.compile(r"status\s*resolved"))
    expect(page.get_by_role("button", name="Replay", exact=True)).to_have_count(0)  # nothing left to replay

    page.goto(f"{console.base_url}/invoices?q={number}")
    page.get_by_role("link", name=number, exact=True).click()
    deliveries = table_rows(page, "Deliveries")
    assert any(d["status"] == "failed" and ".invalid" in d["to"] for d in deliveries), deliveries
    sent = [d for d in deliveries if d["status"] == "sent" and d["to"] == fixed]
    assert len(sent) == 1 and sent_before == 0, deliveries

    mails = [m for m in console.sink.messages[mails_before:] if fixed in m.rcpt_tos]
    assert len(mails) == 1, [m.rcpt_tos for m in console.sink.messages[mails_before:]]
    assert number in str(mails[0].message["Subject"]) + mails[0].text
    assert any(number in name for name, _, _ in mails[0].attachments())


# -- a viewer may look but not replay ----------------------------------------------------------------
def test_a_viewer_sees_dead_letters_but_no_replay_button_and_is_refused(console: Console, page: Page) -> None:
    letter = open_mail_letter(console)
    log_in(page, console, "viewer", "/dead-letters")
    expect(page.locator("tbody tr", has_text=str(letter.payload["number"]))).to_be_visible()
    expect(page.get_by_role("button", name="Replay selected")).to_have_count(0)
    expect(page.get_by_role("button", name="Discard selected")).to_have_count(0)
    page.goto(f"{console.base_url}/dead-letters/{letter.id}")
    expect(page.get_by_role("heading", name=f"Dead letter {letter.id}")).to_be_visible()
    expect(page.get_by_role("button", name="Replay", exact=True)).to_have_count(0)

    by_token = httpx.post(
        f"{console.base_url}/api/dead-letters/replay",
        json={"ids": [letter.id]},
        headers=console.api("viewer"),
    )
    assert by_token.status_code == 403 and "viewer" in by_token.json()["error"]

    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert csrf
    by_form = page.request.post(
        f"{console.base_url}/dead-letters/replay",
        form={"ids": str(letter.id), "csrf_token": csrf},
        max_redirects=0,
    )
    assert by_form.status == 403 and "may not replay" in by_form.text()
    with store(console) as session:
        assert session.get(DeadLetter, letter.id).status == "open"  # type: ignore[union-attr]


# -- an admin voids an invoice -----------------------------------------------------------------------
def test_an_admin_voids_an_open_invoice_and_the_audit_log_shows_it(console: Console, page: Page) -> None:
    with store(console) as session:
        credited = select(CreditNote.invoice_id)
        number = session.scalars(
            select(Invoice.number)
            .where(Invoice.status == "open", Invoice.amount_paid == 0, Invoice.id.not_in(credited))
            .order_by(Invoice.number.desc())
        ).first()
    assert number, "the demo left no open, unpaid invoice"

    log_in(page, console, "admin", f"/invoices/{number}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(number)
    page.locator("#void-form").get_by_label("Reason").fill("ordered twice (browser test)")
    page.get_by_role("button", name="Void invoice").click()

    expect(page.get_by_role("status")).to_have_text(f"Invoice {number} voided.")
    expect(page.locator("p.notice:not([role=status])")).to_contain_text(
        "by admin: ordered twice (browser test)"
    )
    expect(page.get_by_role("button", name="Void invoice")).to_have_count(0)

    page.get_by_role("link", name="Audit log").click()
    entries = table_rows_of_audit(page)
    assert any(
        (e["actor"], e["action"], e["target"], e["outcome"]) == ("admin", "void", number, "ok")
        and "ordered twice" in e["details"]
        for e in entries
    ), entries[:5]
    with store(console) as session:
        voided = session.scalars(select(Invoice).where(Invoice.number == number)).one()
        assert (voided.status, voided.voided_by) == ("void", "admin")


def table_rows_of_audit(page: Page) -> list[dict[str, str]]:
    table = page.locator("main table")
    columns = [c.strip() for c in table.locator("thead th").all_inner_texts()]
    return [
        dict(zip(columns, (c.strip() for c in row.locator("td").all_inner_texts()), strict=False))
        for row in table.locator("tbody tr").all()
    ]


# -- screenshots of every main page ------------------------------------------------------------------
def _first_link(page: Page, prefix: str) -> str:
    href = page.locator(f"main a[href^='{prefix}']").first.get_attribute("href")
    assert href, f"no link to {prefix}… on {page.url}"
    return href


def test_screenshots_of_every_main_page(console: Console, page: Page) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots: dict[str, Any] = {}

    def shoot(name: str, path: str, heading: str) -> None:
        answer = page.goto(f"{console.base_url}{path}")
        assert answer is not None and answer.status == 200, f"{path}: {answer.status if answer else None}"
        expect(page.get_by_role("heading", level=1)).to_contain_text(heading)
        target = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(target), full_page=True)
        shots[name] = target

    shoot("login", "/login", "billsync")
    log_in(page, console, "admin")
    shoot("overview", "/", "")
    shoot("runs", "/runs", "Runs")
    shoot("dead-letters", "/dead-letters?status=", "Dead letters")
    shoot("dead-letter", _first_link(page, "/dead-letters/"), "Dead letter")
    shoot("customers", "/customers", "Customers")
    shoot("customer", _first_link(page, "/customers/"), "")
    shoot("invoices", "/invoices", "Invoices")
    shoot("invoice", _first_link(page, "/invoices/INV-"), "INV-")
    shoot("payments", "/payments", "Payments")
    shoot("analytics", "/analytics?report=mrr", "Analytics")
    expect(page.locator("main figure svg").first).to_be_visible()  # the MRR chart is drawn
    page.screenshot(path=str(ARTIFACTS / "analytics.png"), full_page=True)
    shoot("audit", "/audit", "Audit log")
    shoot("users", "/users", "Users")

    for name, target in shots.items():
        assert target.stat().st_size > 5_000, f"{name}: {target.stat().st_size} bytes, a blank page?"
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
