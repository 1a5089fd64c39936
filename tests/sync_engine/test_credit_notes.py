"""Credit notes: what the customer, the books and every other system see when part or all of an
invoice is given back.

Invoices are stored the way the billing run leaves them (lines with their tax, tax lines, totals),
then credited through :func:`issue_credit_note`; the invoice's balance and status, the outbox, the
customer's credit, the Beancount ledger, the mail the customer receives (a real SMTP server on
127.0.0.1) and the e-invoice files (validated against the official rules) are checked. Runs on SQLite
and (with BILLSYNC_TEST_DATABASE_URL) PostgreSQL. A PDF costs about 0.3 s to render: few per test.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from beancount import loader
from beancount.core.data import Transaction
from lxml import etree
from pypdf import PdfReader
from sqlalchemy import func, select, update

from connectors.einvoice.facturx import extract_xml
from connectors.einvoice.validation import ValidationReport, format_report, validate
from sync_engine.credit_notes import CreditNoteError, issue_credit_note
from sync_engine.delivery import delivery_history, resend_invoice, run_deliveries
from sync_engine.demo import DEMO_SELLER
from sync_engine.demo_payments import DEMO_BANK_IBAN, gln
from sync_engine.einvoices import FORMATS, export_einvoice, run_folder_exports
from sync_engine.ledger import export_beancount
from sync_engine.payments import (
    Receipt,
    amount_due,
    apply_credit,
    customer_balance_document,
    record_payment,
)
from sync_engine.runtime import Runtime
from sync_engine.settings import (
    BankAccountSettings,
    DeliverySettings,
    DestinationSettings,
    EInvoiceSettings,
    PaymentSettings,
    SellerSettings,
)
from sync_engine.smtp_sink import ReceivedMessage, SmtpSink
from sync_engine.store.models import (
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoiceTaxLine,
    NumberSequence,
    OutboxItem,
    Payment,
)
from tests.sync_engine import books

D = Decimal
AS_OF = dt.date(2026, 11, 25)
ISSUED = dt.date(2026, 11, 20)
DUE = dt.date(2026, 12, 20)
CUSTOMER = "cus_kunde"
SENDER = "billing@demo-seller.example.com"
UBL = {
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
}
CII = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
}
#: A German business customer who reads German mail and is reachable by GLN (EAS scheme 0088).
GERMAN_CUSTOMER: dict[str, Any] = {
    "name": "Kunde GmbH",
    "currency": "EUR",
    "language": "de",
    "billing_address": {
        "street": "Hauptstraße 1",
        "city": "München",
        "postal_code": "80331",
        "country": "Germany",
    },
    "billing_email": "rechnung@kunde.example",
    "vat_id": "DE987654321",
    "electronic_address": gln("400000000002"),
    "electronic_address_scheme": "0088",
    "buyer_reference": "991-00002-44",
}


def runtime_with(db_url: str, folder: Path, **fields: Any) -> Runtime:
    """The demo seller with its bank account, ``vat19*`` as standard rate, and two destinations:
    QuickBooks (invoices and payments) and a CRM that shows each invoice's status."""
    settings: dict[str, Any] = {
        "seller": SellerSettings(**DEMO_SELLER),
        "payments": PaymentSettings(
            quickbooks="books",
            bank_account=BankAccountSettings(name="Demo Bank", iban=DEMO_BANK_IBAN, bic="COBADEFFXXX"),
        ),
        "einvoice": EInvoiceSettings(tax_categories={"vat19": "S", "vat19incl": "S"}),
        "destinations": [
            DestinationSettings(
                name="qbo",
                connection="books",
                mappings={
                    "invoice": "builtin:quickbooks/invoice.out",
                    "payment": "builtin:quickbooks/payment.out",
                },
            ),
            DestinationSettings(
                name="crm",
                connection="sf",
                mappings={"invoice_status": "builtin:salesforce/invoice_status.out"},
            ),
        ],
        **fields,
    }
    runtime = books.make_runtime(db_url, folder, **settings)
    books.add_rows(runtime, books.customer_row(CUSTOMER, **GERMAN_CUSTOMER))
    return runtime


@pytest.fixture
def runtime(db_url: str, tmp_path: Path) -> Iterator[Runtime]:
    rt = runtime_with(db_url, tmp_path)
    yield rt
    rt.close()


def line(
    position: int,
    description: str,
    amount: str,
    *,
    tax: str = "0",
    discount: str = "0",
    tax_id: str | None = "vat19",
    inclusive: bool = False,
    quantity: str = "1",
) -> InvoiceLine:
    """A billed line: ``amount`` before the discount; 19 % ``tax`` on top (or inside, ``inclusive``)."""
    return InvoiceLine(
        position=position,
        source_key=f"order-line:{description.lower()}:{position}",
        product_code=description.upper()[:10],
        description=description,
        quantity=D(quantity),
        unit_price=(D(amount) / D(quantity)).quantize(D("0.000001")),
        amount=D(amount),
        discount_amount=D(discount),
        tax_id=tax_id,
        tax_rate=None if tax_id is None else D("19"),
        tax_inclusive=inclusive,
        tax_amount=D(tax),
    )


def standard_lines() -> list[InvoiceLine]:
    """Platform 100.00 and 10 seats at 5.00, 19 % VAT on top of each: 178.50 in all."""
    return [
        line(1, "Platform", "100.00", tax="19.00"),
        line(2, "Seats", "50.00", tax="9.50", quantity="10"),
    ]


def add_invoice(
    runtime: Runtime,
    number: str,
    lines: list[InvoiceLine],
    *,
    status: str = "open",
    customer_id: str = CUSTOMER,
) -> str:
    """A finalised invoice of ``lines`` with totals and tax lines as the billing run computes them
    (total = subtotal - discounts + exclusive tax); returns its id."""
    subtotal = sum((ln.amount for ln in lines), D("0"))
    discounts = sum((ln.discount_amount for ln in lines), D("0"))
    exclusive = sum((ln.tax_amount for ln in lines if not ln.tax_inclusive), D("0"))
    invoice = books.invoice_row(
        number,
        subtotal - discounts + exclusive,
        customer_id=customer_id,
        due=DUE,
        issue=ISSUED,
        currency="EUR",
        status=status,
    )
    invoice.subtotal = subtotal
    invoice.discount_total = discounts
    invoice.tax_total = sum((ln.tax_amount for ln in lines), D("0"))
    for ln in lines:  # a source key is billed once, on one invoice
        ln.source_key = f"{number}:{ln.source_key}"
    invoice.lines = lines
    for position, tax_id in enumerate(dict.fromkeys(ln.tax_id for ln in lines if ln.tax_id), start=1):
        taxed = [ln for ln in lines if ln.tax_id == tax_id]
        tax = sum((ln.tax_amount for ln in taxed), D("0"))
        gross = sum((ln.amount - ln.discount_amount for ln in taxed), D("0"))
        invoice.tax_lines.append(
            InvoiceTaxLine(
                position=position,
                tax_id=str(tax_id),
                name="VAT 19%",
                rate=D("19"),
                inclusive=taxed[0].tax_inclusive,
                taxable=gross - tax if taxed[0].tax_inclusive else gross,
                amount=tax,
            )
        )
    invoice_id = invoice.id
    books.add_rows(runtime, invoice)
    return invoice_id


def credit(runtime: Runtime, number: str = "INV-000001", **amounts: str) -> dict[str, Any]:
    """Credit invoice ``number`` on AS_OF: ``line1="20"`` credits 20.00 net of line 1; nothing: all."""
    wanted = {int(k.removeprefix("line")): D(v) for k, v in amounts.items()} or None
    return issue_credit_note(
        runtime, number, reason="Two seats were not used", amounts=wanted, requested_by="sue", as_of=AS_OF
    )


def invoice(runtime: Runtime, invoice_id: str) -> Invoice:
    with runtime.sessions() as session:
        found = session.get(Invoice, invoice_id)
        assert found is not None
        session.expunge(found)
        return found


def due(runtime: Runtime, invoice_id: str) -> Decimal:
    return amount_due(invoice(runtime, invoice_id))


def outbox(runtime: Runtime, entity: str) -> list[tuple[str, str]]:
    with runtime.sessions() as session:
        return [
            (row.destination, row.canonical_id)
            for row in session.scalars(
                select(OutboxItem).where(OutboxItem.entity == entity).order_by(OutboxItem.id)
            )
        ]


def credit_note_numbers(runtime: Runtime) -> list[str]:
    with runtime.sessions() as session:
        return list(session.scalars(select(CreditNote.number).order_by(CreditNote.number)))


def note_lines(summary: dict[str, Any]) -> list[tuple[int, str, str]]:
    return [(ln["invoice_line"], ln["amount"], ln["tax"]) for ln in summary["lines"]]


def pay_by_bank(runtime: Runtime, ref: str, amount: str, invoice_id: str) -> str:
    with runtime.transaction() as session:
        return record_payment(
            session,
            runtime.settings,
            Receipt(
                source="bank",
                source_ref=ref,
                customer_id=CUSTOMER,
                amount=D(amount),
                currency="EUR",
                received_on=AS_OF,
                method="bank_transfer",
                invoice_ids=[invoice_id],
            ),
            as_of=AS_OF,
        ).payment_id


def credit_note_payment(runtime: Runtime, number: str) -> Payment:
    """The receipt a credit note recorded (source ``credit_note``, referring to its number)."""
    with runtime.sessions() as session:
        found = session.scalars(
            select(Payment).where(Payment.source == "credit_note", Payment.source_ref == number)
        ).one()
        session.expunge(found)
        return found


# --------------------------------------------------------------------------------------------
# issuing: amounts, balance, status, numbers


def test_a_full_credit_note_credits_every_line_and_settles_the_invoice_without_a_quickbooks_payment(
    runtime: Runtime,
) -> None:
    # 100.00 less 10.00 discount, 19 % on top (17.10); 119.00 with 19.00 VAT included: 226.10
    inv = add_invoice(
        runtime,
        "INV-000001",
        [
            line(1, "Platform", "100.00", discount="10.00", tax="17.10"),
            line(2, "Support", "119.00", tax="19.00", tax_id="vat19incl", inclusive=True),
        ],
    )
    assert invoice(runtime, inv).total == D("226.10")

    note = credit(runtime)

    assert note["number"] == "CN-000001" and note["invoice"] == "INV-000001"
    assert note_lines(note) == [(1, "90.00", "17.10"), (2, "100.00", "19.00")]
    assert (note["subtotal"], note["tax"], note["total"]) == ("190.00", "36.10", "226.10")
    assert (note["applied_to_invoice"], note["customer_credit"]) == ("226.10", "0.00")
    credited = invoice(runtime, inv)
    assert (credited.status, credited.amount_paid, amount_due(credited)) == ("paid", D("226.10"), D("0"))
    assert credited.paid_on == AS_OF
    # the CRM learns the invoice is settled; QuickBooks gets no Payment: no money came in
    assert ("crm", inv) in outbox(runtime, "invoice_status")
    assert outbox(runtime, "payment") == []
    assert credit_note_payment(runtime, "CN-000001").amount == D("226.10")


def test_partial_credit_notes_by_line_then_the_rest_leave_nothing_to_credit(runtime: Runtime) -> None:
    inv = add_invoice(runtime, "INV-000001", standard_lines())
    assert due(runtime, inv) == D("178.50")

    first = credit(runtime, line1="20")
    assert (first["number"], note_lines(first), first["total"]) == (
        "CN-000001",
        [(1, "20.00", "3.80")],
        "23.80",
    )
    assert invoice(runtime, inv).status == "partially_paid"
    assert due(runtime, inv) == D("178.50") - D("23.80")

    second = credit(runtime, line1="30", line2="10")
    assert (second["number"], note_lines(second), second["total"]) == (
        "CN-000002",
        [(1, "30.00", "5.70"), (2, "10.00", "1.90")],
        "47.60",
    )
    assert due(runtime, inv) == D("107.10")

    rest = credit(runtime)  # no amounts: whatever the earlier notes left of each line
    assert (rest["number"], note_lines(rest), rest["total"]) == (
        "CN-000003",
        [(1, "50.00", "9.50"), (2, "40.00", "7.60")],
        "107.10",
    )
    settled = invoice(runtime, inv)
    assert (settled.status, amount_due(settled)) == ("paid", D("0"))

    with pytest.raises(CreditNoteError, match="INV-000001 is credited in full already"):
        credit(runtime)
    with pytest.raises(CreditNoteError, match="INV-000001"):
        credit(runtime, line2="0.01")
    assert credit_note_numbers(runtime) == ["CN-000001", "CN-000002", "CN-000003"]


@pytest.mark.parametrize(
    ("number", "amounts", "message"),
    [
        ("INV-999999", {}, "no invoice INV-999999"),
        ("INV-000001", {"line7": "5"}, r"INV-000001 has no line 7 \(lines: 1, 2\)"),
        ("INV-000001", {"line2": "50.01"}, "INV-000001"),
        ("INV-000001", {"line1": "-5"}, "INV-000001"),
        ("INV-000002", {}, "INV-000002 is void"),
    ],
)
def test_a_refused_credit_note_says_why_changes_nothing_and_spends_no_number(
    runtime: Runtime, number: str, amounts: dict[str, str], message: str
) -> None:
    inv = add_invoice(runtime, "INV-000001", standard_lines())
    add_invoice(runtime, "INV-000002", [line(1, "Platform", "100.00", tax="19.00")], status="void")

    with pytest.raises(CreditNoteError, match=message):
        credit(runtime, number, **amounts)

    untouched = invoice(runtime, inv)
    assert (untouched.status, untouched.amount_paid) == ("open", D("0"))
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Payment)) == 0
    assert credit(runtime, line2="5")["number"] == "CN-000001"  # the refusal took no number
    with pytest.raises(CreditNoteError):
        credit(runtime, "INV-999999")
    assert credit(runtime, line2="5")["number"] == "CN-000002"


def test_a_credit_note_needs_a_reason(runtime: Runtime) -> None:
    add_invoice(runtime, "INV-000001", standard_lines())
    with pytest.raises(CreditNoteError, match="reason"):
        issue_credit_note(runtime, "INV-000001", reason="  ", requested_by="sue", as_of=AS_OF)
    assert credit_note_numbers(runtime) == []


def test_an_over_credit_names_the_line_as_the_user_numbered_it_and_what_is_left(runtime: Runtime) -> None:
    """The user names lines by position (``--line 2=45``); the refusal should too, in money."""
    add_invoice(runtime, "INV-000001", standard_lines())
    credit(runtime, line2="10")
    with pytest.raises(CreditNoteError) as refused:
        credit(runtime, line2="45")
    message = str(refused.value)
    assert "line 2" in message, message
    assert re.search(r"\b40\.00(?!\d)", message), message  # what is left, as money (not 40.000000)
    assert credit_note_numbers(runtime) == ["CN-000001"]


def test_the_rest_after_uneven_partial_credits_leaves_nothing_due(runtime: Runtime) -> None:
    """Thirds of 100.00 at 19 %: tax is rounded on what has been credited so far (6.33, then
    12.67 - 6.33 = 6.34, then 19.00 - 12.67 = 6.33), so "the rest" gives back all 19.00 of tax
    and the customer never owes a cent no credit note can clear."""
    inv = add_invoice(runtime, "INV-000001", [line(1, "Platform", "100.00", tax="19.00")])
    credit(runtime, line1="33.33")
    credit(runtime, line1="33.33")
    rest = credit(runtime)

    with runtime.sessions() as session:
        notes = list(session.scalars(select(CreditNote)))
        assert sum((n.tax_total for n in notes), D("0")) == D("19.00")
        assert sum((n.total for n in notes), D("0")) == D("119.00")
    assert [n.tax_total for n in sorted(notes, key=lambda n: n.number)] == [D("6.33"), D("6.34"), D("6.33")]
    assert rest["total"] == "39.67"
    settled = invoice(runtime, inv)
    assert (settled.status, amount_due(settled)) == ("paid", D("0"))


def test_an_amount_finer_than_a_cent_is_refused(runtime: Runtime) -> None:
    """1.005 EUR cannot be credited: it would leave sub-cent balances and break the ledger."""
    inv = add_invoice(runtime, "INV-000001", standard_lines())
    with pytest.raises(CreditNoteError):
        credit(runtime, line2="1.005")
    assert credit_note_numbers(runtime) == []
    assert invoice(runtime, inv).amount_paid == D("0")
    with runtime.sessions() as session:
        export_beancount(session, runtime.settings)  # the books still export


def test_a_tax_inclusive_line_is_credited_net_and_its_tax_follows(runtime: Runtime) -> None:
    inv = add_invoice(
        runtime, "INV-000001", [line(1, "Support", "119.00", tax="19.00", tax_id="vat19incl", inclusive=True)]
    )
    note = credit(runtime, line1="50")
    assert (note_lines(note), note["total"]) == ([(1, "50.00", "9.50")], "59.50")
    assert due(runtime, inv) == D("59.50")
    with pytest.raises(CreditNoteError):
        credit(runtime, line1="50.01")  # 100.00 net was billed: 50.00 is left
    assert credit(runtime)["total"] == "59.50"
    assert due(runtime, inv) == D("0")


def test_the_summary_states_what_went_to_the_invoice_and_to_credit_in_the_currency_s_cents(
    runtime: Runtime,
) -> None:
    """What the CLI prints (``23.80 off what is due, 0.00 kept as customer credit``) reads as money."""
    first = add_invoice(runtime, "INV-000001", standard_lines())
    add_invoice(runtime, "INV-000002", [line(1, "Platform", "100.00", tax="19.00")])
    pay_by_bank(runtime, "stmt-1", "178.50", first)
    paid = credit(runtime, line1="20")  # INV-000001 is paid: all of it becomes credit
    credit(runtime, "INV-000002", line1="20")
    rest = credit(runtime, "INV-000002")  # what is left, computed from the stored (6-decimal) lines
    shown = [(n["total"], n["applied_to_invoice"], n["customer_credit"]) for n in (paid, rest)]
    assert shown == [("23.80", "0.00", "23.80"), ("95.20", "95.20", "0.00")]


def test_every_credit_note_tells_the_crm_the_invoice_s_new_balance(runtime: Runtime) -> None:
    """The CRM shows each invoice's amount due: a second partial credit (the status stays
    ``partially_paid``) changes it too, so the CRM must hear of it again."""
    inv = add_invoice(runtime, "INV-000001", standard_lines())
    credit(runtime, line1="20")
    after_first = outbox(runtime, "invoice_status").count(("crm", inv))
    assert after_first == 1
    with runtime.transaction() as session:  # the push delivered it (a pending row would cover the next)
        session.execute(update(OutboxItem).where(OutboxItem.entity == "invoice_status").values(status="sent"))
    credit(runtime, line1="20")
    assert invoice(runtime, inv).status == "partially_paid"
    assert outbox(runtime, "invoice_status").count(("crm", inv)) == after_first + 1


# --------------------------------------------------------------------------------------------
# a paid invoice: the credit is the customer's, for the next invoice


def test_crediting_a_paid_invoice_gives_customer_credit_that_pays_the_next_invoice(runtime: Runtime) -> None:
    first = add_invoice(runtime, "INV-000001", standard_lines())
    bank = pay_by_bank(runtime, "stmt-1", "178.50", first)
    assert invoice(runtime, first).status == "paid"

    note = credit(runtime, line1="20")

    assert (D(note["applied_to_invoice"]), D(note["customer_credit"])) == (D("0"), D("23.80"))
    paid = invoice(runtime, first)
    assert (paid.status, paid.amount_paid) == ("paid", D("178.50"))
    assert credit_note_payment(runtime, "CN-000001").unapplied == D("23.80")
    with runtime.sessions() as session:
        assert customer_balance_document(session, CUSTOMER)["credit"] == D("23.80")

    second = add_invoice(runtime, "INV-000002", [line(1, "Platform", "100.00", tax="19.00")])
    with runtime.transaction() as session:
        changed = apply_credit(session, runtime.settings, [CUSTOMER], as_of=AS_OF + dt.timedelta(days=1))
    assert changed == {second: ("open", "partially_paid")}
    assert invoice(runtime, second).amount_paid == D("23.80")
    assert due(runtime, second) == D("95.20")
    assert credit_note_payment(runtime, "CN-000001").unapplied == D("0")
    # the bank payment goes to QuickBooks; the credit note's receipt never does, applied or not
    assert [cid for dest, cid in outbox(runtime, "payment")] == [bank]


# --------------------------------------------------------------------------------------------
# the ledger


def test_the_ledger_books_a_credit_note_against_revenue_and_tax_and_beancount_loads_it(
    runtime: Runtime,
) -> None:
    add_invoice(runtime, "INV-000001", standard_lines())
    paid = add_invoice(runtime, "INV-000002", [line(1, "Setup", "100.00", tax_id=None)])
    pay_by_bank(runtime, "stmt-1", "100.00", paid)
    credit(runtime, line1="20")  # 23.80 off INV-000001
    credit(runtime, "INV-000002")  # paid already: 100.00 becomes customer credit

    with runtime.sessions() as session:
        text = export_beancount(session, runtime.settings)
        numbers = {
            p.source_ref: p.number
            for p in session.scalars(select(Payment).where(Payment.source == "credit_note"))
        }
    entries, errors, _ = loader.load_string(text)
    assert errors == [], errors
    txns = [e for e in entries if isinstance(e, Transaction)]

    def postings(link: str) -> list[tuple[str, Decimal]]:
        [txn] = [t for t in txns if link in (t.links or ())]
        assert all(p.units is not None for p in txn.postings)
        return [(p.account, p.units.number) for p in txn.postings]  # type: ignore[union-attr,misc]

    assert postings(numbers["CN-000001"]) == [
        ("Income:Sales", D("20.00")),
        ("Liabilities:SalesTax", D("3.80")),
        ("Assets:Receivable", D("-23.80")),
    ]
    assert postings(numbers["CN-000002"]) == [
        ("Income:Sales", D("100.00")),
        ("Liabilities:CustomerCredit", D("-100.00")),
    ]
    totals: dict[str, Decimal] = {}
    for txn in txns:
        for p in txn.postings:
            assert p.units is not None and p.units.number is not None
            totals[p.account] = totals.get(p.account, D("0")) + p.units.number
    assert {k: v for k, v in totals.items() if v} == {
        "Assets:Receivable": D("154.70"),  # 178.50 - 23.80; INV-000002 was paid
        "Assets:Bank": D("100.00"),  # a credit note moves no money
        "Income:Sales": D("-130.00"),  # 150 + 100 billed, 20 + 100 given back
        "Liabilities:SalesTax": D("-24.70"),  # 28.50 - 3.80
        "Liabilities:CustomerCredit": D("-100.00"),
    }


# --------------------------------------------------------------------------------------------
# delivery to the customer


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


def mailing_runtime(db_url: str, folder: Path, sink: SmtpSink) -> Runtime:
    return runtime_with(
        db_url,
        folder,
        mail=sink.mail_settings(from_address=SENDER),
        delivery=DeliverySettings(retry_seconds=0.05),
    )


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def attachments(message: ReceivedMessage) -> dict[str, tuple[str, bytes]]:
    return {name: (mime, content) for name, mime, content in message.attachments()}


def revalidated(content: bytes, fmt: str) -> ValidationReport:
    """A fresh validation of a file as the receiver would run it."""
    xml = extract_xml(content) if content.startswith(b"%PDF") else content
    report = validate(xml, format=fmt)
    assert report.ok, format_report(report)
    return report


def test_a_credit_note_reaches_the_customer_once_in_their_language_with_its_pdf(
    db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    runtime = mailing_runtime(db_url, tmp_path, sink)
    try:
        add_invoice(runtime, "INV-000001", standard_lines())
        note = credit(runtime, line1="20")
        assert note["delivery_status"] == "pending"
        with runtime.sessions() as session:
            note_id = session.scalars(select(CreditNote.id)).one()

        result = run_deliveries(runtime)
        again = run_deliveries(runtime)

        assert (result.delivered, result.failed, again.delivered) == (1, 0, 0)
        [mail] = sink.messages
        assert mail.rcpt_tos == ("rechnung@kunde.example",)
        # (a subject that fits one folded line comes back with the fold's leading space)
        assert str(mail.message["Subject"]).strip() == (
            "Gutschrift CN-000001 von Demo Seller GmbH: EUR 23.80 zur Rechnung INV-000001"
        )
        assert "Two seats were not used" in mail.text
        assert mail.message["Message-ID"] == f"<creditnote.{note_id}@demo-seller.example.com>"
        files = attachments(mail)
        assert list(files) == ["CN-000001.pdf"]
        mime, pdf = files["CN-000001.pdf"]
        assert mime == "application/pdf" and pdf.startswith(b"%PDF-")
        text = pdf_text(pdf)
        for expected in ("Credit note", "CN-000001", "INV-000001", "23.80"):
            assert expected in text, expected

        with runtime.sessions() as session:
            shown = delivery_history(session, "CN-000001")
            invoice_shown = delivery_history(session, "INV-000001")
        assert (shown["number"], shown["kind"], shown["delivery_status"]) == (
            "CN-000001",
            "credit_note",
            "delivered",
        )
        [sent] = shown["deliveries"]
        assert (sent["channel"], sent["status"], sent["to"], sent["message_id"]) == (
            "email",
            "sent",
            "rechnung@kunde.example",
            mail.message["Message-ID"],
        )
        assert invoice_shown["deliveries"] == []  # the credit note's mail is not the invoice's

        resent = resend_invoice(runtime, "CN-000001", requested_by="sue")
        assert resent["message_id"] == f"<creditnote.{note_id}.resend.1@demo-seller.example.com>"
        assert len(sink.messages) == 2
        copy = sink.messages[1]
        assert copy.message["References"] == mail.message["Message-ID"]
        assert str(copy.message["Subject"]).strip().startswith("Gutschrift CN-000001 ")
        with runtime.sessions() as session:
            rows = delivery_history(session, "CN-000001")["deliveries"]
        assert [(r["purpose"], r["status"], r["requested_by"]) for r in rows] == [
            ("initial", "sent", None),
            ("resend", "sent", "sue"),
        ]
    finally:
        runtime.close()


def test_an_xrechnung_customer_receives_the_credit_note_as_valid_xrechnung_referring_to_the_invoice(
    db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    runtime = mailing_runtime(db_url, tmp_path, sink)
    try:
        with runtime.transaction() as session:
            session.merge(books.customer_row(CUSTOMER, **GERMAN_CUSTOMER, invoice_format="xrechnung"))
        add_invoice(runtime, "INV-000001", standard_lines())
        credit(runtime, line1="20")

        result = run_deliveries(runtime)
        with runtime.sessions() as session:
            [sent] = delivery_history(session, "CN-000001")["deliveries"]
    finally:
        runtime.close()

    assert (result.delivered, result.failed) == (1, 0), result.errors
    [mail] = sink.messages
    files = attachments(mail)
    assert sorted(files) == ["CN-000001-xrechnung.xml", "CN-000001.pdf"]
    mime, xml = files["CN-000001-xrechnung.xml"]
    assert mime == "application/xml"
    assert revalidated(xml, "xrechnung").format == "xrechnung"
    root = etree.fromstring(xml)
    assert root.findtext("rsm:ExchangedDocument/ram:ID", namespaces=CII) == "CN-000001"
    assert root.findtext("rsm:ExchangedDocument/ram:TypeCode", namespaces=CII) == "381"
    settlement = "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeSettlement/"
    assert (
        root.findtext(settlement + "ram:InvoiceReferencedDocument/ram:IssuerAssignedID", namespaces=CII)
        == "INV-000001"
    )
    assert (
        root.findtext(
            settlement + "ram:SpecifiedTradeSettlementHeaderMonetarySummation/ram:GrandTotalAmount",
            namespaces=CII,
        )
        == "23.80"
    )
    assert (sent["status"], sent["format"]) == ("sent", "xrechnung")


# --------------------------------------------------------------------------------------------
# e-invoices


def preceding_invoice(content: bytes) -> tuple[str | None, str | None, str | None]:
    """``(document type code, BT-25 preceding invoice, BT-112 total)`` of a UBL or CII file."""
    root = etree.fromstring(extract_xml(content) if content.startswith(b"%PDF") else content)
    if etree.QName(root).localname == "CreditNote":
        return (
            root.findtext("cbc:CreditNoteTypeCode", namespaces=UBL),
            root.findtext("cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID", namespaces=UBL),
            root.findtext("cac:LegalMonetaryTotal/cbc:TaxInclusiveAmount", namespaces=UBL),
        )
    settlement = "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeSettlement/"
    return (
        root.findtext("rsm:ExchangedDocument/ram:TypeCode", namespaces=CII),
        root.findtext(settlement + "ram:InvoiceReferencedDocument/ram:IssuerAssignedID", namespaces=CII),
        root.findtext(
            settlement + "ram:SpecifiedTradeSettlementHeaderMonetarySummation/ram:GrandTotalAmount",
            namespaces=CII,
        ),
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_credit_note_is_a_valid_e_invoice_in_every_format_referring_to_the_invoice(
    runtime: Runtime, fmt: str
) -> None:
    add_invoice(runtime, "INV-000001", standard_lines())
    credit(runtime, line1="20", line2="10")  # 23.80 + 11.90

    exported = export_einvoice(runtime, "CN-000001", fmt)

    suffix = "pdf" if fmt == "facturx" else "xml"
    assert exported.filename == f"CN-000001-{fmt}.{suffix}"
    revalidated(exported.content, fmt)
    assert preceding_invoice(exported.content) == ("381", "INV-000001", "35.70")
    if fmt in ("ubl", "peppol"):
        assert etree.QName(etree.fromstring(exported.content)).localname == "CreditNote"


def test_the_folder_destination_gets_the_credit_note_files_validated(db_url: str, tmp_path: Path) -> None:
    runtime = runtime_with(
        db_url,
        tmp_path,
        einvoice=EInvoiceSettings(
            tax_categories={"vat19": "S"}, folder="einvoices", folder_formats=["ubl", "xrechnung"]
        ),
    )
    try:
        add_invoice(runtime, "INV-000001", standard_lines())
        credit(runtime, line1="20")
        result = run_folder_exports(runtime)
        again = run_folder_exports(runtime)
    finally:
        runtime.close()

    assert (result.written, result.failed, again.written) == (2, 0, 0), result.errors
    folder = tmp_path / "einvoices"
    assert sorted(p.name for p in folder.iterdir()) == ["CN-000001-ubl.xml", "CN-000001-xrechnung.xml"]
    for fmt in ("ubl", "xrechnung"):
        content = (folder / f"CN-000001-{fmt}.xml").read_bytes()
        revalidated(content, fmt)
        assert preceding_invoice(content) == ("381", "INV-000001", "23.80")


def test_numbers_stay_gapless_across_refusals_in_the_stored_series(runtime: Runtime) -> None:
    """The CN series holds the next number to give: refusals leave it where it was."""
    add_invoice(runtime, "INV-000001", standard_lines())
    credit(runtime, line1="20")
    for bad in ({"line1": "1000"}, {"line9": "1"}):
        with pytest.raises(CreditNoteError):
            credit(runtime, **bad)
    with runtime.sessions() as session:
        sequence = session.get(NumberSequence, "CN")
        assert sequence is not None and sequence.next_value == 2
