"""Invoice documents: the data of one stored invoice as JSON, an HTML page, and a PDF of that page.

One dict (``invoice_data``) feeds all three, so the PDF a customer receives and the JSON a script
reads can never disagree. Amounts in it are exact decimal strings (``"1234.50"``), dates ISO 8601,
``period_end`` exclusive as everywhere in billsync; the HTML shows the last day of a period instead
(``2026-11-01 to 2026-11-30``), which is how people read periods.

The template is Jinja2 with autoescaping on, so a customer named ``<b>Acme</b>`` or
``{number}`` prints literally: no value from the CRM can change the markup. WeasyPrint renders the
page without fetching anything (every URL is refused), and is imported only when a PDF is asked
for, so the rest of billsync runs on machines without Pango.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, NoReturn

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from billing import Currency
from sync_engine.store.models import CreditNote, Invoice

__all__ = [
    "PLACEHOLDER_SELLER",
    "PdfUnavailableError",
    "credit_note_data",
    "invoice_data",
    "render_html",
    "render_json",
    "render_pdf",
]

TEMPLATES: Final = Path(__file__).resolve().parent / "templates"
#: Printed when billsync.yaml has no ``seller`` block yet.
PLACEHOLDER_SELLER: Final = "Your company"
_ADDRESS_KEYS: Final = ("street", "city", "postal_code", "state", "country")


class PdfUnavailableError(RuntimeError):
    """WeasyPrint cannot run here (its system libraries, Pango, are missing)."""


def _amount(value: Decimal, currency: Currency) -> str:
    """Exact string: on the minor unit when that loses nothing (``7.240000`` -> ``7.24``)."""
    quantized = value.quantize(currency.quantum)
    return str(quantized) if quantized == value else f"{value.normalize():f}"


def _plain(value: Decimal) -> str:
    """A quantity or rate without storage zeros (``2.000000`` -> ``2``, ``100`` stays ``100``)."""
    return f"{value.normalize():f}"


def _iso(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def _address_lines(address: object) -> list[str]:
    """Address lines from a list of lines, a multi-line string, or a canonical address mapping."""
    if address is None:
        return []
    if isinstance(address, str):
        return [row.strip() for row in address.splitlines() if row.strip()]
    if isinstance(address, Mapping):
        street = str(address.get("street") or "")
        place = " ".join(str(address.get(k)) for k in ("postal_code", "city") if address.get(k))
        rest = [str(address.get(k)) for k in ("state", "country") if address.get(k)]
        return [*street.splitlines(), *([place] if place else []), *rest]
    if isinstance(address, list | tuple):
        return [str(row) for row in address if str(row).strip()]
    return [str(address)]


def _seller(seller: Mapping[str, Any] | None) -> dict[str, Any]:
    if not seller:
        return {
            "name": PLACEHOLDER_SELLER,
            "address": [],
            "tax_id": None,
            "email": None,
            "phone": None,
            "configured": False,
        }
    return {
        "name": str(seller.get("name") or PLACEHOLDER_SELLER),
        "address": _address_lines(seller.get("address")),
        "tax_id": seller.get("tax_id"),
        "email": seller.get("email"),
        "phone": seller.get("phone"),
        "configured": bool(seller.get("name")),
    }


def _buyer(customer_id: str, customer: Mapping[str, Any] | None) -> dict[str, Any]:
    data = customer or {}
    return {
        "id": customer_id,
        "name": str(data.get("name") or customer_id),
        "account_number": data.get("account_number"),
        "email": data.get("email"),
        "phone": data.get("phone"),
        "address": _address_lines(data.get("billing_address")),
    }


def invoice_data(
    invoice: Invoice,
    customer: Mapping[str, Any] | None,
    seller: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The document of a stored invoice (lines and tax lines loaded) as JSON-ready data.

    ``customer`` is the canonical customer record (name, billing_address, ...); None prints the
    customer id. ``seller`` is the seller block of the settings (name, address, tax_id, email,
    phone, payment_instructions); None prints the placeholder "Your company".
    """
    currency = Currency.of(invoice.currency)
    assert invoice.number is not None, "only finalised invoices have documents"

    def money(value: Decimal) -> str:
        return _amount(value, currency)

    lines = [
        {
            "position": line.position,
            "description": line.description,
            "product_code": line.product_code,
            "quantity": _plain(line.quantity),
            "unit_price": money(line.unit_price),
            "amount": money(line.amount),
            "discount": money(line.discount_amount),
            "tax_id": line.tax_id,
            "tax_rate": None if line.tax_rate is None else _plain(line.tax_rate),
            "tax_inclusive": line.tax_inclusive,
            "tax": money(line.tax_amount),
            "period_start": _iso(line.period_start),
            "period_end": _iso(line.period_end),
        }
        for line in invoice.lines
    ]
    taxes = [
        {
            "id": tax.tax_id,
            "name": tax.name,
            "rate": _plain(tax.rate),
            "inclusive": tax.inclusive,
            "taxable": money(tax.taxable),
            "amount": money(tax.amount),
        }
        for tax in invoice.tax_lines
    ]
    total = money(invoice.total)
    instructions = (seller or {}).get("payment_instructions") or (
        f"Please pay {currency.code} {total} by {invoice.due_date.isoformat()}."
    )
    return {
        "number": invoice.number,
        "status": invoice.status,
        "currency": currency.code,
        "issue_date": invoice.issue_date.isoformat(),
        "due_date": invoice.due_date.isoformat(),
        "period_start": _iso(invoice.period_start),
        "period_end": _iso(invoice.period_end),
        "seller": _seller(seller),
        "buyer": _buyer(invoice.customer_id, customer),
        "lines": lines,
        "taxes": taxes,
        "subtotal": money(invoice.subtotal),
        "discount": money(invoice.discount_total),
        "tax": money(invoice.tax_total),
        "total": total,
        "amount_paid": money(invoice.amount_paid),
        "amount_due": money(invoice.total - invoice.amount_paid),
        "payment_instructions": str(instructions),
    }


def credit_note_data(
    note: CreditNote,
    invoice: Invoice,
    customer: Mapping[str, Any] | None,
    seller: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The document of a stored credit note, in the shape of :func:`invoice_data` (amounts credited,
    positive) plus ``document: credit_note`` and ``credits``: the invoice it credits and why."""
    currency = Currency.of(note.currency)

    def money(value: Decimal) -> str:
        return _amount(value, currency)

    lines = [
        {
            "position": line.position,
            "description": line.description,
            "product_code": line.product_code,
            "quantity": "1",
            "unit_price": money(line.amount),
            "amount": money(line.amount),
            "discount": money(Decimal(0)),
            "tax_id": line.tax_id,
            "tax_rate": None if line.tax_rate is None else _plain(line.tax_rate),
            "tax_inclusive": False,
            "tax": money(line.tax_amount),
            "period_start": _iso(line.period_start),
            "period_end": _iso(line.period_end),
        }
        for line in note.lines
    ]
    taxes: dict[tuple[str, Decimal], dict[str, Any]] = {}
    for line in note.lines:
        if line.tax_id is None or line.tax_rate is None:
            continue
        entry = taxes.setdefault(
            (line.tax_id, line.tax_rate),
            {
                "id": line.tax_id,
                "name": line.tax_id,
                "rate": _plain(line.tax_rate),
                "inclusive": False,
                "taxable": Decimal(0),
                "amount": Decimal(0),
            },
        )
        entry["taxable"] += line.amount
        entry["amount"] += line.tax_amount
    total = money(note.total)
    return {
        "document": "credit_note",
        "number": note.number,
        "status": note.status,
        "currency": currency.code,
        "issue_date": note.issue_date.isoformat(),
        "due_date": None,
        "period_start": None,
        "period_end": None,
        "credits": {
            "number": invoice.number,
            "issue_date": invoice.issue_date.isoformat(),
            "reason": note.reason,
        },
        "seller": _seller(seller),
        "buyer": _buyer(note.customer_id, customer),
        "lines": lines,
        "taxes": [
            {**t, "taxable": money(t["taxable"]), "amount": money(t["amount"])} for t in taxes.values()
        ],
        "subtotal": money(note.subtotal),
        "discount": money(Decimal(0)),
        "tax": money(note.tax_total),
        "total": total,
        "amount_paid": money(Decimal(0)),
        "amount_due": money(Decimal(0)),
        "payment_instructions": f"Credited against invoice {invoice.number}: {currency.code} {total}.",
    }


def render_json(data: Mapping[str, Any]) -> str:
    """The document as pretty JSON (UTF-8 text, keys in document order)."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _display(amount: str, currency: Currency) -> str:
    """``1234.5`` -> ``1,234.50``: thousands separated, at least the currency's minor unit."""
    value = Decimal(amount)
    if value == value.quantize(currency.quantum):
        value = value.quantize(currency.quantum)
    return f"{value:,}"


def _period(start: str | None, end: str | None) -> str | None:
    """A half-open period as people read it: from the first to the last day included."""
    if start is None or end is None:
        return None
    last = dt.date.fromisoformat(end) - dt.timedelta(days=1)
    return start if last.isoformat() <= start else f"{start} to {last.isoformat()}"


def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html",), default=True),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def render_html(data: Mapping[str, Any]) -> str:
    """The invoice page (one self-contained HTML file, stylesheet inlined)."""
    currency = Currency.of(data["currency"])

    def shown(amount: str) -> str:
        return _display(amount, currency)

    lines = [
        {
            "position": line["position"],
            "description": line["description"],
            "period": _period(line["period_start"], line["period_end"]),
            "quantity": line["quantity"],
            "unit_price": shown(line["unit_price"]),
            "discount": shown(line["discount"]),
            "tax": shown(line["tax"]) + (" incl." if line["tax_inclusive"] else ""),
            "amount": shown(line["amount"]),
        }
        for line in data["lines"]
    ]
    taxes = [
        {**tax, "taxable": shown(tax["taxable"]), "amount": shown(tax["amount"])} for tax in data["taxes"]
    ]
    template = _environment().get_template("invoice.html")
    credit = data.get("document") == "credit_note"
    stylesheet = (TEMPLATES / "invoice.css").read_text(encoding="utf-8")
    return template.render(
        stylesheet=Markup(stylesheet),  # our own package file, not data: inserted as is
        number=data["number"],
        title="Credit note" if credit else "Invoice",
        credits=data.get("credits"),
        status=data["status"].replace("_", " "),
        currency=currency.code,
        issue_date=data["issue_date"],
        due_date=data["due_date"],
        period=_period(data["period_start"], data["period_end"]),
        seller=data["seller"],
        buyer=data["buyer"],
        lines=lines,
        taxes=taxes,
        has_discounts=Decimal(data["discount"]) != 0,
        has_taxes=bool(data["taxes"]),
        has_payments=Decimal(data["amount_paid"]) != 0,
        subtotal=shown(data["subtotal"]),
        discount=shown(data["discount"]),
        tax=shown(data["tax"]),
        total=shown(data["total"]),
        amount_paid=shown(data["amount_paid"]),
        amount_due=shown(data["amount_due"]),
        payment_instructions=data["payment_instructions"],
    )


def _refuse(url: str, *args: object, **kwargs: object) -> NoReturn:
    raise ValueError(f"invoice documents load nothing from outside: {url!r} refused")


def _no_fetching() -> Any:
    """A URL fetcher that refuses every scheme (WeasyPrint >= 66 takes a URLFetcher instance)."""
    try:
        from weasyprint.urls import URLFetcher
    except ImportError:  # pragma: no cover - WeasyPrint < 66 takes a plain function
        return _refuse
    return URLFetcher(allowed_protocols=(), fail_on_errors=False)


def render_pdf(data: Mapping[str, Any], *, variant: str | None = None) -> bytes:
    """The invoice page as a PDF (WeasyPrint; raises ``PdfUnavailableError`` without Pango).

    ``variant``: a PDF/A or PDF/UA flavour WeasyPrint knows (``pdf/a-3b`` is what Factur-X needs:
    fonts embedded, XMP metadata, an output intent).
    """
    try:
        from weasyprint import HTML
    except OSError as exc:  # the Python package is there, the system libraries are not
        raise PdfUnavailableError(
            f"PDF rendering needs Pango (Debian/Ubuntu: apt-get install libpango-1.0-0 "
            f"libpangoft2-1.0-0): {exc}"
        ) from exc
    options: dict[str, Any] = {"pdf_variant": variant} if variant else {}
    pdf = HTML(string=render_html(data), url_fetcher=_no_fetching()).write_pdf(**options)
    assert isinstance(pdf, bytes)
    return pdf
