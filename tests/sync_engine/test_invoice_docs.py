"""Invoice documents: the PDF a customer receives and the same data as JSON, from a stored invoice.

The invoice has what the catalog cannot express yet (a discount, a tax, a tiered usage charge), so
it is generated with the billing engine directly and stored the way the billing run stores it.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from pypdf import PdfReader

from billing import (
    BillingSettings,
    Currency,
    Customer,
    Discount,
    Order,
    OrderLine,
    PriceSpec,
    TaxRate,
    Tier,
    UsageRecord,
    finalize,
    generate,
)
from sync_engine.invoice_docs import PdfUnavailableError, invoice_data, render_html
from sync_engine.invoice_tools import InvoiceNotFoundError, explain_invoice, export_invoice, find_invoice
from sync_engine.invoicing import stored_invoice
from sync_engine.runtime import Runtime
from tests.sync_engine.test_invoicing import make_runtime, seed

AS_OF = dt.date(2026, 11, 25)
NASTY_NAME = "<b>Acme & Sons</b> {number} ${total}"
EUR = Currency.of("EUR")


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    """Invoice INV-000001 for a customer whose name is full of markup: a consulting day at 1000.00
    with 10 % off and 20 % VAT, and 7 API calls in October on graduated tiers (48.00)."""
    runtime = make_runtime(f"sqlite:///{tmp_path / 'billsync.db'}", tmp_path)
    seed(
        runtime,
        "customer",
        "cus_acme",
        {
            "name": NASTY_NAME,
            "currency": "EUR",
            "billing_address": {"street": "1 Rue de la Paix", "postal_code": "75002", "city": "Paris"},
        },
    )
    prices = [
        PriceSpec(
            id="consulting", currency=EUR, model="one_time", amount=Decimal(1000), name="Consulting day", tax="vat20"
        ),
        PriceSpec(
            id="calls", currency=EUR, model="usage", charge="graduated", name="API calls",
            tiers=(Tier(Decimal(5), Decimal(7)), Tier(Decimal(10), Decimal("6.5")), Tier(None, Decimal(6))),
        ),
    ]  # fmt: skip
    order = Order(
        "ord_1", "cus_acme", "EUR", dt.date(2026, 10, 5), None,
        (OrderLine("oli_1", "consulting", Decimal(1), None),), discounts=("welcome",),
    )  # fmt: skip
    usage = [UsageRecord("cus_acme", "calls", dt.datetime(2026, 10, 9, tzinfo=dt.UTC), Decimal(7))]
    [draft] = generate(
        as_of=AS_OF,
        customers=[Customer("cus_acme", "EUR")],
        prices=prices,
        orders=[order],
        usage=usage,
        taxes=[TaxRate("vat20", Decimal(20), name="VAT 20 %")],
        discounts=[Discount("welcome", "percent", Decimal(10))],
        settings=BillingSettings(grouping="customer"),
    ).invoices
    with runtime.transaction() as session:
        session.add(stored_invoice(finalize(draft, "INV-000001"), "INV"))
    yield runtime
    runtime.close()


def test_the_pdf_shows_the_number_the_total_and_the_customer_as_written(
    runtime: Runtime, tmp_path: Path
) -> None:
    try:
        path = export_invoice(runtime, "INV-000001", "pdf", tmp_path)
    except PdfUnavailableError as exc:
        pytest.skip(str(exc))

    assert path == tmp_path / "INV-000001.pdf"
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(path.read_bytes())).pages)
    assert "INV-000001" in text
    assert "1,128.00" in text  # 1000.00 - 100.00 discount + 180.00 VAT + 48.00 usage
    assert "<b>Acme & Sons</b> {number} ${total}" in text
    assert "Your company" in text  # no seller block configured yet


def test_the_json_document_has_the_same_data_with_exact_amounts(runtime: Runtime, tmp_path: Path) -> None:
    seller = {
        "name": "Billsync Demo SAS",
        "address": ["2 Avenue Foch", "75116 Paris", "France"],
        "tax_id": "FR12345678901",
        "payment_instructions": "IBAN FR76 3000 6000 0112 3456 7890 189, BIC AGRIFRPP",
    }
    path = export_invoice(runtime, "INV-000001", "json", tmp_path / "out" / "invoice.json", seller=seller)
    assert path == tmp_path / "out" / "invoice.json"
    assert (
        export_invoice(runtime, "INV-000001", "json", tmp_path / "new")
        == tmp_path / "new" / "INV-000001.json"
    )

    data = json.loads(path.read_text(encoding="utf-8"))
    assert (data["number"], data["status"], data["currency"], data["due_date"]) == (
        "INV-000001", "open", "EUR", "2026-12-25",
    )  # fmt: skip
    assert (data["subtotal"], data["discount"], data["tax"], data["total"], data["amount_due"]) == (
        "1048.00", "100.00", "180.00", "1128.00", "1128.00",
    )  # fmt: skip
    assert data["taxes"] == [
        {
            "id": "vat20",
            "name": "VAT 20 %",
            "rate": "20",
            "inclusive": False,
            "taxable": "900.00",
            "amount": "180.00",
        }
    ]
    consulting, calls = data["lines"]
    assert (consulting["amount"], consulting["discount"], consulting["tax"], consulting["tax_rate"]) == (
        "1000.00", "100.00", "180.00", "20",
    )  # fmt: skip
    assert (calls["quantity"], calls["unit_price"], calls["amount"]) == ("7", "6.857143", "48.00")
    assert (calls["period_start"], calls["period_end"]) == ("2026-10-01", "2026-11-01")  # end exclusive
    assert data["buyer"]["name"] == NASTY_NAME and data["buyer"]["address"] == [
        "1 Rue de la Paix",
        "75002 Paris",
    ]
    assert data["seller"]["name"] == "Billsync Demo SAS" and data["seller"]["configured"] is True
    assert data["payment_instructions"].startswith("IBAN FR76")


def test_the_html_escapes_every_value_from_the_crm(runtime: Runtime) -> None:
    with runtime.sessions() as session:
        data = invoice_data(find_invoice(session, "INV-000001"), {"name": NASTY_NAME}, None)

    page = render_html(data)

    assert "&lt;b&gt;Acme &amp; Sons&lt;/b&gt; {number} ${total}" in page
    assert "<b>Acme" not in page
    assert "2026-10-01 to 2026-10-31" in page  # the usage period, last day included
    assert "Please pay EUR 1128.00 by 2026-12-25." in page  # default payment instructions


def test_explain_shows_the_tier_breakdown_discount_and_tax(runtime: Runtime) -> None:
    text = explain_invoice(runtime, "INV-000001")

    assert "tier 2 (units 6 to 10): 2 x 6.5 = 13" in text
    assert "discount -EUR 100.00" in text and "tax vat20: EUR 180.00 (added)" in text
    assert "VAT 20 % (vat20) 20 % of EUR 900.00: EUR 180.00 (added)" in text


def test_an_unknown_number_or_format_is_refused(runtime: Runtime, tmp_path: Path) -> None:
    with pytest.raises(InvoiceNotFoundError, match="INV-999999"):
        export_invoice(runtime, "INV-999999", "json", tmp_path)
    with pytest.raises(ValueError, match="xml"):
        export_invoice(runtime, "INV-000001", "xml", tmp_path)  # type: ignore[arg-type]
    assert list(tmp_path.glob("*.json")) == []
