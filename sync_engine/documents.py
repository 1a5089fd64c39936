"""The documents billsync sends customers: invoices and credit notes, behind one small interface.

Delivery and e-invoicing handle both the same way (queue, render, validate, send, record); only
what a document *is* differs. Keeping that difference here means a credit note goes through exactly
the path an invoice does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from sync_engine.invoice_docs import credit_note_data, invoice_data, render_pdf
from sync_engine.settings import Settings
from sync_engine.store.models import CanonicalRecord, CreditNote, Invoice

__all__ = [
    "Document",
    "customer_of",
    "document_data",
    "document_pdf",
    "find_document",
    "invoice_id_of",
    "kind_of",
    "load_document",
    "sample_credit_note",
    "sample_invoice",
]

Document = Invoice | CreditNote
Kind = Literal["invoice", "credit_note"]


def load_document(session: Session, document_id: str) -> Document | None:
    """The invoice or credit note with this id."""
    return session.get(Invoice, document_id) or session.get(CreditNote, document_id)


def find_document(session: Session, number: str) -> Document | None:
    """The invoice or credit note with this number (``INV-000012``, ``CN-000003``)."""
    invoice = session.scalars(select(Invoice).where(Invoice.number == number)).first()
    if invoice is not None:
        return invoice
    return session.scalars(select(CreditNote).where(CreditNote.number == number)).first()


def kind_of(document: Document) -> Kind:
    return "credit_note" if isinstance(document, CreditNote) else "invoice"


def invoice_id_of(document: Document) -> str:
    """The invoice a document belongs to: itself, or the invoice a credit note credits."""
    return document.invoice_id if isinstance(document, CreditNote) else document.id


def customer_of(session: Session, document: Document) -> dict[str, Any] | None:
    record = session.get(CanonicalRecord, document.customer_id)
    return None if record is None or record.entity != "customer" else dict(record.data)


def document_data(
    document: Document, customer: Mapping[str, Any] | None, settings: Settings
) -> dict[str, Any]:
    """What the PDF shows (see :mod:`sync_engine.invoice_docs`)."""
    seller = settings.seller.model_dump() if settings.seller is not None else None
    if isinstance(document, CreditNote):
        return credit_note_data(document, document.invoice, customer, seller)
    return invoice_data(document, customer, seller)


def sample_invoice(status: str = "open") -> Invoice:
    """An invoice that exists nowhere, to render templates with before a customer is due one."""
    return Invoice(
        id="inv_sample",
        customer_id="cus_sample",
        series="INV",
        number="INV-000000",
        status=status,
        currency="USD",
        issue_date=dt.date(2026, 1, 1),
        due_date=dt.date(2026, 1, 31),
        subtotal=Decimal("100"),
        tax_total=Decimal("0"),
        total=Decimal("100"),
        amount_paid=Decimal("0"),
    )


def sample_credit_note() -> CreditNote:
    """A credit note of :func:`sample_invoice`, for the same purpose."""
    invoice = sample_invoice()
    note = CreditNote(
        id="cn_sample",
        number="CN-000000",
        invoice_id=invoice.id,
        customer_id=invoice.customer_id,
        currency=invoice.currency,
        issue_date=dt.date(2026, 1, 15),
        reason="Sample reason",
        subtotal=Decimal("10"),
        tax_total=Decimal("0"),
        total=Decimal("10"),
        status="issued",
    )
    note.invoice = invoice
    return note


#: Rendered PDFs by content: the mail, the print file and the Factur-X of one document share one
#: rendering (WeasyPrint takes a few hundred milliseconds a page).
_PDF_CACHE: OrderedDict[str, bytes] = OrderedDict()
_PDF_CACHE_SIZE: Final = 512
_PDF_LOCK = threading.Lock()


def document_pdf(
    document: Document,
    customer: Mapping[str, Any] | None,
    settings: Settings,
    *,
    variant: str | None = "pdf/a-3b",
) -> bytes:
    """The document as a PDF; PDF/A-3b by default (archivable, and what Factur-X is built on).

    The same content renders once per process: the key is the document's data, so a changed
    status, payment or address renders anew.
    """
    data = document_data(document, customer, settings)
    key = hashlib.sha256(json.dumps([data, variant], sort_keys=True, default=str).encode()).hexdigest()
    with _PDF_LOCK:
        cached = _PDF_CACHE.get(key)
        if cached is not None:
            _PDF_CACHE.move_to_end(key)
            return cached
    pdf = render_pdf(data, variant=variant)
    with _PDF_LOCK:
        _PDF_CACHE[key] = pdf
        while len(_PDF_CACHE) > _PDF_CACHE_SIZE:
            _PDF_CACHE.popitem(last=False)
    return pdf
