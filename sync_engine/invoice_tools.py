"""What the ``billsync invoices`` commands do: explain a stored invoice, export its document.

Both read an invoice by its number. The explanation is rebuilt from what was stored with each line
when the invoice was finalised (``billing.Explanation``), never recomputed from today's catalog, so
it shows how the amounts on the customer's invoice really came about.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from billing import Currency, explain
from sync_engine.invoice_docs import invoice_data, render_json, render_pdf
from sync_engine.invoicing import billing_invoice, money
from sync_engine.runtime import Runtime
from sync_engine.store.models import CanonicalRecord, Invoice

__all__ = ["InvoiceNotFoundError", "explain_invoice", "export_invoice", "find_invoice"]

DocumentFormat = Literal["pdf", "json"]


class InvoiceNotFoundError(LookupError):
    """No stored invoice has this number (or several series do, and none is the configured one)."""


def find_invoice(session: Session, number: str, series: str | None = None) -> Invoice:
    """The invoice numbered ``number``, with its lines and tax lines loaded.

    Numbers are unique per series; when several series used the same number, ``series`` picks one.
    """
    found = list(
        session.scalars(
            select(Invoice)
            .where(Invoice.number == number)
            .options(selectinload(Invoice.lines), selectinload(Invoice.tax_lines))
        )
    )
    if len(found) > 1:
        found = [invoice for invoice in found if invoice.series == series] or found
    if not found:
        raise InvoiceNotFoundError(f"no invoice numbered {number!r}")
    if len(found) > 1:
        names = ", ".join(sorted(invoice.series for invoice in found))
        raise InvoiceNotFoundError(f"invoice number {number!r} exists in several series: {names}")
    return found[0]


def _customer(session: Session, customer_id: str) -> dict[str, Any] | None:
    record = session.get(CanonicalRecord, customer_id)
    return None if record is None or record.entity != "customer" else dict(record.data)


def explain_invoice(runtime: Runtime, number: str) -> str:
    """How every amount of invoice ``number`` came about: a header, then each line's explanation.

    Raises ``InvoiceNotFoundError`` for an unknown number.
    """
    with runtime.sessions() as session:
        stored = find_invoice(session, number, runtime.settings.billing.series)
        customer = _customer(session, stored.customer_id)
        invoice = billing_invoice(stored)
        currency = Currency.of(stored.currency)
        totals = {
            "subtotal": money(stored.subtotal, currency),
            "discount": money(stored.discount_total, currency),
            "tax": money(stored.tax_total, currency),
            "total": money(stored.total, currency),
            "paid": money(stored.amount_paid, currency),
            "due": money(stored.total - stored.amount_paid, currency),
        }
    name = (customer or {}).get("name")
    out = [
        f"Invoice {number} ({invoice.status.replace('_', ' ')})",
        f"Customer: {name} ({invoice.customer_id})" if name else f"Customer: {invoice.customer_id}",
        f"Issued {invoice.issue_date}, due {invoice.due_date}",
        f"Period {invoice.period_start} to {invoice.period_end} (end exclusive)",
        ", ".join(f"{label} {amount}" for label, amount in totals.items()),
    ]
    for position, line in enumerate(invoice.lines, start=1):
        out += ["", f"Line {position} ({line.source_key})", explain(line)]
    if invoice.tax_lines:
        out += ["", "Taxes:"]
        for tax in invoice.tax_lines:
            how = "included in the prices" if tax.inclusive else "added"
            out.append(f"  {tax.name} ({tax.tax_id}) {tax.rate} % of {tax.taxable}: {tax.amount} ({how})")
    return "\n".join(out) + "\n"


def _seller(runtime: Runtime) -> Mapping[str, Any] | None:
    """The ``seller`` block of billsync.yaml, if the settings have one (a model or a mapping)."""
    seller = getattr(runtime.settings, "seller", None)
    if seller is None:
        return None
    if hasattr(seller, "model_dump"):
        dumped: dict[str, Any] = seller.model_dump()
        return dumped
    return dict(seller)


def export_invoice(
    runtime: Runtime,
    number: str,
    fmt: DocumentFormat = "pdf",
    out: Path | None = None,
    *,
    seller: Mapping[str, Any] | None = None,
) -> Path:
    """Write invoice ``number`` as a PDF or JSON document and return the file written.

    ``out`` is a file (a path with a suffix), or a directory that gets ``<number>.<fmt>`` (default:
    the working directory); missing directories are created.
    ``seller`` overrides the settings' seller block. Raises ``InvoiceNotFoundError`` for an unknown
    number and ``invoice_docs.PdfUnavailableError`` when PDFs cannot be rendered on this machine.
    """
    if fmt not in ("pdf", "json"):
        raise ValueError(f"unknown document format {fmt!r} (allowed: pdf, json)")
    data = _document_data(runtime, number, seller)
    target = out if out is not None else Path.cwd()
    if target.is_dir() or not target.suffix:
        target = target / f"{number.replace('/', '-')}.{fmt}"
    content = render_pdf(data) if fmt == "pdf" else render_json(data).encode("utf-8")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    return target


def _document_data(runtime: Runtime, number: str, seller: Mapping[str, Any] | None = None) -> dict[str, Any]:
    with runtime.sessions() as session:
        stored = find_invoice(session, number, runtime.settings.billing.series)
        return invoice_data(stored, _customer(session, stored.customer_id), seller or _seller(runtime))


def invoice_pdf(runtime: Runtime, number: str) -> bytes:
    """Invoice ``number`` as PDF bytes (the console serves them); same errors as :func:`export_invoice`."""
    return render_pdf(_document_data(runtime, number))
