"""The demo's invoice delivery: which addresses the local mail server refuses, and what arrived.

The demo data gives a few accounts an address in the ``.invalid`` domain (RFC 2606: it never
exists) and a few none at all. The SMTP sink refuses the former with 550, as a real server would
for a domain without mail exchangers; the latter are printed. The summary counts both from the
customer records, independently of what delivery recorded, so the two can be checked against
each other.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from connectors.salesforce.sandbox import SalesforceSandbox
from sync_engine.demo_payments import UNDELIVERABLE
from sync_engine.einvoices import FOLDER_STREAM
from sync_engine.mailer import customer_addresses
from sync_engine.runtime import Runtime
from sync_engine.smtp_sink import SmtpSink
from sync_engine.store.models import CanonicalRecord, CreditNote, DeadLetter, Invoice, InvoiceDelivery

__all__ = ["refuse_undeliverable", "summarise_delivery"]


def refuse_undeliverable(sandbox: SalesforceSandbox, sink: SmtpSink) -> int:
    """Make ``sink`` refuse every billing address of the CRM in the undeliverable domain."""
    refused = 0
    for account in sandbox.records("Account"):
        address = str(account.get("Billing_Email__c") or "")
        if address.endswith(UNDELIVERABLE):
            sink.fail(address, 550, f"5.1.2 <{address}>: Recipient address rejected: Domain not found")
            refused += 1
    return refused


def summarise_delivery(runtime: Runtime, sink: SmtpSink) -> dict[str, Any]:
    """Delivery as recorded, the addresses as the customer records have them, mail as received."""
    with runtime.sessions() as session:
        notes = list(session.execute(select(CreditNote.number, CreditNote.delivery_status)))
        invoices = list(
            session.execute(
                select(Invoice.customer_id, Invoice.delivery_status).where(Invoice.number.is_not(None))
            )
        )
        customers = {
            record.id: customer_addresses(record.data)
            for record in session.scalars(select(CanonicalRecord).where(CanonicalRecord.entity == "customer"))
        }
        print_files = sorted({f for f in session.scalars(select(InvoiceDelivery.print_file)) if f})
        formats = Counter(
            session.scalars(
                select(InvoiceDelivery.document_format).where(
                    InvoiceDelivery.status == "sent",
                    InvoiceDelivery.purpose == "initial",
                    InvoiceDelivery.document_kind == "invoice",
                )
            )
        )
        invalid = session.scalar(
            select(func.count())
            .select_from(DeadLetter)
            .where(DeadLetter.stream == FOLDER_STREAM, DeadLetter.status == "open")
        )
    statuses = Counter(status for _, status in invoices)
    missing = sum(1 for customer, _ in invoices if not customers.get(customer))
    bad = sum(
        1
        for customer, _ in invoices
        if customers.get(customer) and all(a.endswith(UNDELIVERABLE) for a in customers[customer])
    )
    mails = [
        str(m.message["Message-ID"]).strip()
        for m in sink.messages
        if str(m.message["Message-ID"]).strip().startswith("<invoice.")
    ]
    return {
        "invoices_finalised": len(invoices),
        "credit_notes_issued": len(notes),
        "credit_notes_delivered": sum(1 for _, status in notes if status == "delivered"),
        "invoices_delivered": statuses.get("delivered", 0),
        "deliveries_failed": statuses.get("failed", 0),
        "invoices_to_print": statuses.get("print", 0),
        "invoices_with_bad_address": bad,
        "invoices_without_address": missing,
        "invoice_mails_received": len(set(mails)),
        "duplicate_invoice_mails": len(mails) - len(set(mails)),
        "print_files": print_files,
        "invoices_delivered_by_format": dict(sorted((str(k), v) for k, v in formats.items())),
        "einvoice_files": _einvoice_files(runtime),
        "einvoices_invalid": invalid or 0,
    }


def _einvoice_files(runtime: Runtime) -> dict[str, int]:
    """Files in ``einvoice.folder`` per format (from their names: ``INV-000001-ubl.xml``)."""
    folder = runtime.settings.einvoice.folder
    if folder is None:
        return {}
    path = Path(folder) if Path(folder).is_absolute() else runtime.settings.base_dir / folder
    found: Counter[str] = Counter()
    for file in path.glob("*-*.*") if path.is_dir() else []:
        if not file.name.startswith("."):
            found[file.stem.rsplit("-", 1)[-1]] += 1
    return dict(sorted(found.items()))


def issue_demo_credit_notes(runtime: Runtime, today: dt.date) -> list[str]:
    """Credit a tenth of the first line of three open invoices (an XRechnung and a Factur-X customer,
    and one in USD), as support would after a complaint. QuickBooks gets each as a CreditMemo set
    against its invoice, so every system agrees on what is still due."""
    from sync_engine.credit_notes import issue_credit_note

    with runtime.sessions() as session:
        formats = {  # customers the mail reaches
            record.id: record.data.get("invoice_format")
            for record in session.scalars(select(CanonicalRecord).where(CanonicalRecord.entity == "customer"))
            if (found := customer_addresses(record.data))
            and not any(a.endswith(UNDELIVERABLE) for a in found)
        }
        open_invoices = list(
            session.scalars(select(Invoice).where(Invoice.status == "open").order_by(Invoice.number.desc()))
        )
        chosen: list[tuple[str, Decimal]] = []
        for wanted in ("xrechnung", "facturx", None):
            for invoice in open_invoices:
                if invoice.number in {n for n, _ in chosen} or not invoice.lines:
                    continue
                if invoice.customer_id not in formats:
                    continue
                usd = invoice.currency == "USD"
                if (wanted is None and usd) or (
                    wanted is not None and formats.get(invoice.customer_id) == wanted
                ):
                    credit = (invoice.lines[0].amount / 10).quantize(Decimal("0.01"))
                    if credit > 0:
                        chosen.append((str(invoice.number), credit))
                        break
    issued = []
    for number, credit in chosen:
        note = issue_credit_note(
            runtime,
            number,
            reason="Service credit: ten per cent of the first line after an outage",
            amounts={1: credit},
            requested_by="demo",
            as_of=today,
        )
        issued.append(str(note["number"]))
    return issued
