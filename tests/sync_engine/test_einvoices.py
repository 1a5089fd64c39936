"""Structured e-invoices of stored invoices: what the customer's software reads is what was billed.

Invoices are stored the way the billing run leaves them (lines and tax lines, six-decimal columns,
read back through the state store) with a seller like the demo's; then built
(:func:`build_einvoice`), written and validated against the official rules in every format
(:func:`validated_einvoice`), mailed to customers who want them (:func:`run_deliveries`) and
exported to the folder destination (:func:`run_folder_exports`). Runs on SQLite and (with
BILLSYNC_TEST_DATABASE_URL) PostgreSQL. A Factur-X PDF costs about 0.3 s to render: few invoices.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from lxml import etree
from sqlalchemy import select

from connectors.einvoice.facturx import extract_xml
from connectors.einvoice.model import EInvoice
from connectors.einvoice.validation import ValidationReport, format_report, validate
from sync_engine.delivery import STREAM, delivery_history, queue_delivery, run_deliveries
from sync_engine.demo import DEMO_SELLER
from sync_engine.demo_payments import DEMO_BANK_IBAN, SEPA_CREDITOR_ID, gln
from sync_engine.einvoices import (
    FOLDER_DESTINATION,
    FOLDER_STREAM,
    FORMATS,
    EInvoiceConfigError,
    EInvoiceInvalidError,
    ExportedInvoice,
    build_einvoice,
    run_folder_exports,
    validated_einvoice,
)
from sync_engine.invoice_tools import find_invoice
from sync_engine.invoicing import run_billing
from sync_engine.runtime import Runtime
from sync_engine.settings import (
    BankAccountSettings,
    DeliverySettings,
    EInvoiceSettings,
    PaymentSettings,
    SellerSettings,
    SepaSettings,
    Settings,
)
from sync_engine.smtp_sink import SmtpSink
from sync_engine.store.models import (
    CanonicalRecord,
    DeadLetter,
    Invoice,
    InvoiceLine,
    InvoiceTaxLine,
    OutboxItem,
)
from tests.sync_engine import books
from tests.sync_engine.test_invoicing import CATALOG, seed, seed_order

ISSUED = dt.date(2026, 11, 25)
DUE = dt.date(2026, 12, 25)
UBL = {
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
}
PAYMENTS = PaymentSettings(
    bank_account=BankAccountSettings(name="Demo Bank", iban=DEMO_BANK_IBAN, bic="COBADEFFXXX"),
    sepa=SepaSettings(creditor_id=SEPA_CREDITOR_ID),
)
#: A German business customer, as the Salesforce mapping stores it (the country as a name).
GERMAN_CUSTOMER: dict[str, Any] = {
    "name": "Kunde GmbH",
    "currency": "EUR",
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
US_CUSTOMER: dict[str, Any] = {
    "name": "Acme Corp",
    "currency": "USD",
    "billing_address": {
        "street": "1 Main Street\nSuite 200",
        "city": "Austin",
        "postal_code": "73301",
        "state": "TX",
        "country": "United States",
    },
    "billing_email": "ap@acme.example",
    "vat_id": "US-EIN-12-3456789",
    "electronic_address": gln("400000000019"),
    "electronic_address_scheme": "0088",
}
DIRECT_DEBIT_CUSTOMER: dict[str, Any] = {
    **GERMAN_CUSTOMER,
    "name": "Lastschrift AG",
    "payment_method": "direct_debit",
    "iban": "DE02370400440000000042",
    "sepa_mandate_id": "MANDATE-00042",
    "sepa_mandate_signed_on": "2025-01-15",
}


def seller(**changes: Any) -> SellerSettings:
    """The demo seller (Berlin, VAT id, GLN), with ``changes`` (a value None removes the field)."""
    fields = {**DEMO_SELLER, **changes}
    return SellerSettings(**{k: v for k, v in fields.items() if v is not None})


def einvoice_runtime(db_url: str, folder: Path, **fields: Any) -> Runtime:
    """A runtime with the demo seller, its bank account and SEPA creditor id, ``vat19`` as ``S``."""
    settings: dict[str, Any] = {
        "seller": seller(),
        "payments": PAYMENTS,
        "einvoice": EInvoiceSettings(tax_categories={"vat19": "S"}),
        **fields,
    }
    return books.make_runtime(db_url, folder, **settings)


@pytest.fixture
def runtime(db_url: str, tmp_path: Path) -> Iterator[Runtime]:
    runtime = einvoice_runtime(db_url, tmp_path)
    yield runtime
    runtime.close()


def line(
    position: int,
    description: str,
    quantity: str,
    amount: str,
    *,
    discount: str = "0",
    tax_id: str | None = None,
    rate: str | None = None,
    tax: str = "0",
    inclusive: bool = False,
    product: str | None = "PLAN",
) -> InvoiceLine:
    """One billed line as the billing run stores it: ``amount`` before the discount; the tax is
    inside it when ``inclusive``, else added on top."""
    return InvoiceLine(
        position=position,
        source_key=f"test:{position}:{description}",
        product_code=product,
        description=description,
        quantity=Decimal(quantity),
        unit_price=(Decimal(amount) / Decimal(quantity)).quantize(Decimal("0.000001")),
        amount=Decimal(amount),
        discount_amount=Decimal(discount),
        tax_id=tax_id,
        tax_rate=None if rate is None else Decimal(rate),
        tax_inclusive=inclusive,
        tax_amount=Decimal(tax),
        period_start=dt.date(2026, 11, 1),
        period_end=dt.date(2026, 12, 1),
    )


def invoice_with(
    number: str, customer_id: str, lines: list[InvoiceLine], *, currency: str = "EUR"
) -> Invoice:
    """A finalised invoice of ``lines`` with its totals and one tax line per tax id, computed the
    way the billing run does (total = subtotal - discounts + exclusive tax)."""
    subtotal = sum((ln.amount for ln in lines), Decimal("0"))
    discounts = sum((ln.discount_amount for ln in lines), Decimal("0"))
    taxes = sum((ln.tax_amount for ln in lines), Decimal("0"))
    exclusive = sum((ln.tax_amount for ln in lines if not ln.tax_inclusive), Decimal("0"))
    invoice = books.invoice_row(
        number,
        subtotal - discounts + exclusive,
        customer_id=customer_id,
        due=DUE,
        issue=ISSUED,
        currency=currency,
        period_start=dt.date(2026, 11, 1),
        period_end=dt.date(2026, 12, 1),
    )
    invoice.subtotal, invoice.discount_total, invoice.tax_total = subtotal, discounts, taxes
    invoice.lines = lines
    tax_ids = list(dict.fromkeys(ln.tax_id for ln in lines if ln.tax_id is not None))
    for position, tax_id in enumerate(tax_ids, start=1):
        taxed = [ln for ln in lines if ln.tax_id == tax_id]
        tax = sum((ln.tax_amount for ln in taxed), Decimal("0"))
        gross = sum((ln.amount - ln.discount_amount for ln in taxed), Decimal("0"))
        assert taxed[0].tax_rate is not None
        invoice.tax_lines.append(
            InvoiceTaxLine(
                position=position,
                tax_id=tax_id,
                name=f"VAT {taxed[0].tax_rate}%",
                rate=taxed[0].tax_rate,
                inclusive=taxed[0].tax_inclusive,
                taxable=gross - tax if taxed[0].tax_inclusive else gross,
                amount=tax,
            )
        )
    return invoice


def store(
    runtime: Runtime,
    number: str,
    customer_id: str,
    customer: dict[str, Any] | None,
    lines: list[InvoiceLine],
    *,
    currency: str = "EUR",
    deliver: bool = False,
) -> str:
    """The customer record (unless None or already there) and its finalised invoice; returns its id."""
    with runtime.transaction() as session:
        if customer is not None:
            session.merge(books.customer_row(customer_id, **customer))
        invoice = invoice_with(number, customer_id, lines, currency=currency)
        session.add(invoice)
        session.flush()
        if deliver:
            queue_delivery(session, invoice)
        return invoice.id


def german_vat_lines() -> list[InvoiceLine]:
    """2 seats at 50.00 and a setup fee of 100.00; 19 % VAT on top: 238.00 in all."""
    return [
        line(1, "Basic plan, 2 seats", "2", "100.00", tax_id="vat19", rate="19", tax="19.00"),
        line(2, "Setup", "1", "100.00", tax_id="vat19", rate="19", tax="19.00", product="SETUP"),
    ]


def discounted_lines() -> list[InvoiceLine]:
    """The same with 20.00 off the seats: 19 % VAT on 180.00, 214.20 in all."""
    return [
        line(
            1, "Basic plan, 2 seats", "2", "100.00", discount="20.00", tax_id="vat19", rate="19", tax="15.20"
        ),
        line(2, "Setup", "1", "100.00", tax_id="vat19", rate="19", tax="19.00", product="SETUP"),
    ]


def untaxed_usd_lines() -> list[InvoiceLine]:
    return [line(1, "Basic plan", "3", "147.00"), line(2, "Setup", "1", "500.00", product="SETUP")]


def stored(runtime: Runtime, number: str) -> tuple[Invoice, dict[str, Any] | None]:
    """The invoice as read back from the store (lines loaded) and its customer record."""
    with runtime.sessions() as session:
        invoice = find_invoice(session, number)
        record = session.get(CanonicalRecord, invoice.customer_id)
        session.expunge_all()
        return invoice, None if record is None else dict(record.data)


def built(runtime: Runtime, number: str, fmt: str = "ubl", settings: Settings | None = None) -> EInvoice:
    invoice, customer = stored(runtime, number)
    return build_einvoice(invoice, customer, settings or runtime.settings, fmt)


def exported(runtime: Runtime, number: str, fmt: str, settings: Settings | None = None) -> ExportedInvoice:
    invoice, customer = stored(runtime, number)
    return validated_einvoice(invoice, customer, settings or runtime.settings, fmt)


def xml_of(content: bytes) -> bytes:
    return extract_xml(content) if content.startswith(b"%PDF") else content


def revalidated(content: bytes, fmt: str | None = None) -> ValidationReport:
    """A fresh validation of a file as the receiver would run it (its declared format)."""
    pdf = content.startswith(b"%PDF")  # Factur-X declares plain EN 16931: the PDF says which
    report = validate(xml_of(content), format=fmt or ("facturx" if pdf else None))
    assert report.ok, format_report(report)
    return report


def rules(exc: EInvoiceInvalidError) -> set[str]:
    return {f.rule_id for f in exc.failures}


def with_settings(runtime: Runtime, **changes: Any) -> Settings:
    settings = runtime.settings.model_copy(update=changes)
    settings._base_dir = runtime.settings.base_dir
    return settings


# --------------------------------------------------------------------------------------------
# build_einvoice: the model says what was billed


def test_the_e_invoice_states_exactly_the_amounts_that_were_billed(runtime: Runtime) -> None:
    store(runtime, "INV-000001", "cus_kunde", GERMAN_CUSTOMER, discounted_lines())
    invoice, _ = stored(runtime, "INV-000001")

    model = built(runtime, "INV-000001")
    xml = etree.fromstring(exported(runtime, "INV-000001", "ubl").content)

    assert invoice.total == Decimal("214.20")
    assert model.tax_inclusive == model.payable == invoice.total  # BT-112, BT-115
    assert model.line_total == sum(ln.net_amount for ln in model.lines) == Decimal("180.00")  # BT-106
    assert model.tax_total == invoice.tax_total == Decimal("34.20")
    assert [(t.category, t.rate, t.taxable, t.tax) for t in model.taxes] == [
        ("S", Decimal("19"), Decimal("180.00"), Decimal("34.20"))
    ]
    assert xml.findtext("cac:LegalMonetaryTotal/cbc:PayableAmount", namespaces=UBL) == "214.20"
    assert xml.findtext("cac:LegalMonetaryTotal/cbc:LineExtensionAmount", namespaces=UBL) == "180.00"
    # the seats' discount is a line allowance: 2 x 50.00 - 20.00 = 80.00
    seats, setup = model.lines
    assert (seats.quantity, seats.net_price, seats.net_amount) == (
        Decimal("2"),
        Decimal("50"),
        Decimal("80.00"),
    )
    assert [a.amount for a in seats.allowances] == [Decimal("20.00")]
    assert (setup.net_amount, setup.allowances, setup.base_quantity) == (Decimal("100.00"), (), None)
    assert (seats.period_start, seats.period_end) == (dt.date(2026, 11, 1), dt.date(2026, 11, 30))
    assert (model.buyer.country, model.seller.country) == ("DE", "DE")
    assert (model.seller.vat_id, model.buyer.vat_id) == ("DE123456789", "DE987654321")
    [means] = model.payment_means
    assert (means.code, means.iban, means.remittance) == ("58", DEMO_BANK_IBAN, "INV-000001")


def test_a_tax_inclusive_line_becomes_a_net_line_and_the_total_stays_what_was_billed(
    runtime: Runtime,
) -> None:
    # 119.00 including 19 % VAT, 11.90 off: 107.10 paid, of which 17.10 is VAT
    store(
        runtime,
        "INV-000001",
        "cus_kunde",
        GERMAN_CUSTOMER,
        [
            line(
                1,
                "Plan",
                "1",
                "119.00",
                discount="11.90",
                tax_id="vat19",
                rate="19",
                tax="17.10",
                inclusive=True,
            )
        ],
    )
    invoice, _ = stored(runtime, "INV-000001")

    model = built(runtime, "INV-000001")

    assert invoice.total == Decimal("107.10")
    [plan] = model.lines
    assert (plan.net_price, plan.net_amount, plan.allowances) == (Decimal("90"), Decimal("90.00"), ())
    assert (model.line_total, model.tax_total, model.payable) == (
        Decimal("90.00"),
        Decimal("17.10"),
        invoice.total,
    )
    revalidated(exported(runtime, "INV-000001", "ubl").content)


@pytest.mark.parametrize(
    "billed",
    [
        # 30 000 seats for 2 469.14: no price of six decimals gives that amount
        [("Seats", "30000", "2469.14")],
        # a plan change: the new plan, and the unused part of the old one credited (negative quantity)
        [("Seats, new plan", "30000", "2469.14"), ("Seats, unused", "-25000", "-1234.57")],
    ],
    ids=["seats", "with-proration-credit"],
)
def test_a_price_that_is_not_exact_is_stated_for_the_whole_quantity_and_validates(
    runtime: Runtime, billed: list[tuple[str, str, str]]
) -> None:
    lines = [line(n, name, quantity, amount) for n, (name, quantity, amount) in enumerate(billed, start=1)]
    store(runtime, "INV-000001", "cus_acme", US_CUSTOMER, lines, currency="USD")
    invoice, _ = stored(runtime, "INV-000001")

    model = built(runtime, "INV-000001")

    assert model.payable == invoice.total
    for stored_line, written in zip(invoice.lines, model.lines, strict=True):
        assert written.net_amount == stored_line.amount
        assert written.base_quantity is not None  # BT-149: the price is that of all of them
        # BR-27 / PEPPOL-EN16931-R121: neither the price nor the base quantity is negative
        assert written.net_price >= 0 and written.base_quantity > 0
        assert written.quantity * written.net_price / written.base_quantity == stored_line.amount
    for fmt in ("ubl", "peppol"):  # Peppol checks quantity x price / base quantity = line amount
        revalidated(exported(runtime, "INV-000001", fmt).content)


@pytest.mark.parametrize(
    ("country", "code"),
    [("Germany", "DE"), ("United States", "US"), ("USA", "US"), ("de", "DE"), ("FRA", "FR")],
)
def test_a_country_name_becomes_its_iso_code(runtime: Runtime, country: str, code: str) -> None:
    customer = {**US_CUSTOMER, "billing_address": {"city": "Somewhere", "country": country}}
    store(runtime, "INV-000001", "cus_acme", customer, untaxed_usd_lines(), currency="USD")

    assert built(runtime, "INV-000001").buyer.country == code


@pytest.mark.parametrize("country", ["Atlantis", "XX", None])
def test_a_country_no_one_knows_is_a_configuration_error_naming_the_customer(
    runtime: Runtime, country: str | None
) -> None:
    customer = {**US_CUSTOMER, "billing_address": {"city": "Somewhere", "country": country}}
    store(runtime, "INV-000001", "cus_nowhere", customer, untaxed_usd_lines(), currency="USD")

    with pytest.raises(EInvoiceConfigError, match="cus_nowhere"):
        built(runtime, "INV-000001")


def test_untaxed_lines_are_not_subject_to_vat_with_the_reason_and_no_vat_ids(runtime: Runtime) -> None:
    settings = with_settings(
        runtime,
        einvoice=EInvoiceSettings(
            untaxed_category="O", exemption_reason="US customer: not subject to EU VAT"
        ),
    )
    store(runtime, "INV-000001", "cus_acme", US_CUSTOMER, untaxed_usd_lines(), currency="USD")

    model = built(runtime, "INV-000001", settings=settings)
    xml = etree.fromstring(exported(runtime, "INV-000001", "ubl", settings).content)

    assert {(ln.vat_category, ln.vat_rate) for ln in model.lines} == {("O", None)}
    assert [(t.category, t.rate, t.tax, t.exemption_reason) for t in model.taxes] == [
        ("O", None, Decimal("0.00"), "US customer: not subject to EU VAT")
    ]
    # BR-O-02: no VAT identifier of either party next to "not subject to VAT"
    assert (model.seller.vat_id, model.buyer.vat_id) == (None, None)
    assert xml.xpath("//cbc:CompanyID[../cac:TaxScheme/cbc:ID='VAT']", namespaces=UBL) == []
    assert "DE123456789" not in etree.tostring(xml).decode()
    assert model.seller.legal_id == "HRB 123456 B"  # the seller stays identified (BR-CO-26)


def test_taxed_lines_take_their_category_from_the_tax_id(runtime: Runtime) -> None:
    settings = with_settings(runtime, einvoice=EInvoiceSettings(tax_categories={"vat19": "S", "books0": "Z"}))
    store(
        runtime,
        "INV-000001",
        "cus_kunde",
        GERMAN_CUSTOMER,
        [
            line(1, "Plan", "1", "100.00", tax_id="vat19", rate="19", tax="19.00"),
            line(2, "Handbook", "1", "30.00", tax_id="books0", rate="0", product="BOOK"),
            line(3, "Catering", "1", "50.00", tax_id="vat7", rate="7", tax="3.50", product="FOOD"),
        ],
    )

    model = built(runtime, "INV-000001", settings=settings)

    assert [(ln.vat_category, ln.vat_rate) for ln in model.lines] == [
        ("S", Decimal("19")),
        ("Z", Decimal("0")),
        ("S", Decimal("7")),  # a tax id not listed is standard rated
    ]
    assert sorted((t.category, t.rate, t.taxable, t.tax) for t in model.taxes) == [
        ("S", Decimal("7"), Decimal("50.00"), Decimal("3.50")),
        ("S", Decimal("19"), Decimal("100.00"), Decimal("19.00")),
        ("Z", Decimal("0"), Decimal("30.00"), Decimal("0.00")),
    ]
    assert model.payable == Decimal("202.50")
    revalidated(exported(runtime, "INV-000001", "ubl", settings).content)


def test_peppol_never_falls_back_to_an_email_address(runtime: Runtime) -> None:
    by_mail = {k: v for k, v in GERMAN_CUSTOMER.items() if not k.startswith("electronic_address")}
    store(runtime, "INV-000001", "cus_kunde", by_mail, german_vat_lines())

    ubl, peppol = built(runtime, "INV-000001", "ubl"), built(runtime, "INV-000001", "peppol")

    assert (ubl.buyer.electronic_address, ubl.buyer.electronic_address_scheme) == (
        "rechnung@kunde.example",
        "EM",
    )
    assert peppol.buyer.electronic_address is None  # EM is no Peppol scheme: it must be configured
    with pytest.raises(EInvoiceInvalidError) as failed:
        exported(runtime, "INV-000001", "peppol")
    assert "PEPPOL-EN16931-R010" in rules(failed.value)


# --------------------------------------------------------------------------------------------
# validated_einvoice: valid in every format


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_german_invoice_with_vat_is_valid_in_every_format(runtime: Runtime, fmt: str) -> None:
    store(runtime, "INV-000001", "cus_kunde", GERMAN_CUSTOMER, german_vat_lines())

    result = exported(runtime, "INV-000001", fmt)

    report = revalidated(result.content)
    assert report.format == fmt  # the file declares its own format (CustomizationID / profile)
    suffix = ".pdf" if fmt == "facturx" else ".xml"
    assert (result.filename, result.number) == (f"INV-000001-{fmt}{suffix}", "INV-000001")
    assert b"238.00" in xml_of(result.content) and b"DE987654321" in xml_of(result.content)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_discounted_line_is_a_valid_line_allowance_in_every_format(runtime: Runtime, fmt: str) -> None:
    store(runtime, "INV-000001", "cus_kunde", GERMAN_CUSTOMER, discounted_lines())

    try:
        result = exported(runtime, "INV-000001", fmt)
    except EInvoiceInvalidError as exc:  # BR-DEC-24: the stored 20.000000 written as it is
        pytest.fail(f"{exc}: {[(f.rule_id, f.text) for f in exc.failures]}")

    revalidated(result.content)
    assert b"214.20" in xml_of(result.content)


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_untaxed_usd_invoice_to_a_us_customer_is_valid_in_every_format(runtime: Runtime, fmt: str) -> None:
    store(runtime, "INV-000001", "cus_acme", US_CUSTOMER, untaxed_usd_lines(), currency="USD")

    result = exported(runtime, "INV-000001", fmt)

    revalidated(result.content)
    xml = xml_of(result.content)
    assert b"647.00" in xml and b"USD" in xml and b">US<" in xml


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_direct_debit_invoice_is_valid_in_every_format_and_names_mandate_creditor_and_iban(
    runtime: Runtime, fmt: str
) -> None:
    store(runtime, "INV-000001", "cus_debit", DIRECT_DEBIT_CUSTOMER, german_vat_lines())

    [means] = built(runtime, "INV-000001", fmt).payment_means
    result = exported(runtime, "INV-000001", fmt)

    assert (means.code, means.mandate_id, means.creditor_id, means.debited_account) == (
        "59",
        "MANDATE-00042",
        SEPA_CREDITOR_ID,
        "DE02370400440000000042",
    )
    revalidated(result.content)
    xml = xml_of(result.content)
    for value in (b"MANDATE-00042", SEPA_CREDITOR_ID.encode(), b"DE02370400440000000042"):
        assert value in xml
    assert DEMO_BANK_IBAN.encode() not in xml  # nothing to transfer: the seller collects


@pytest.mark.parametrize(
    ("changes", "key"),
    [({"seller": None}, "seller"), ({"seller": seller(country=None)}, "seller.country")],
    ids=["no-seller", "no-country"],
)
def test_missing_seller_configuration_names_the_key(
    runtime: Runtime, changes: dict[str, Any], key: str
) -> None:
    store(runtime, "INV-000001", "cus_kunde", GERMAN_CUSTOMER, german_vat_lines())

    with pytest.raises(EInvoiceConfigError, match=key.replace(".", r"\.")):
        exported(runtime, "INV-000001", "ubl", with_settings(runtime, **changes))


# --------------------------------------------------------------------------------------------
# delivery: the customer's invoice_format


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


def mailing_runtime(db_url: str, folder: Path, sink: SmtpSink, **seller_changes: Any) -> Runtime:
    return einvoice_runtime(
        db_url,
        folder,
        seller=seller(**seller_changes),
        mail=sink.mail_settings(from_address="billing@demo-seller.example.com"),
        delivery=DeliverySettings(retry_seconds=0.05),
    )


def history(runtime: Runtime, number: str) -> dict[str, Any]:
    with runtime.sessions() as session:
        return delivery_history(session, number)


def letters(runtime: Runtime, stream: str) -> list[DeadLetter]:
    with runtime.sessions() as session:
        return list(session.scalars(select(DeadLetter).where(DeadLetter.stream == stream)))


@pytest.mark.parametrize("fmt", ["peppol", "xrechnung", "ubl", "cii"])
def test_a_customer_who_wants_an_xml_e_invoice_receives_the_pdf_and_the_validated_xml(
    db_url: str, tmp_path: Path, sink: SmtpSink, fmt: str
) -> None:
    runtime = mailing_runtime(db_url, tmp_path, sink)
    customer = {**GERMAN_CUSTOMER, "invoice_format": fmt}
    store(runtime, "INV-000001", "cus_kunde", customer, german_vat_lines(), deliver=True)

    result = run_deliveries(runtime)
    [sent] = history(runtime, "INV-000001")["deliveries"]
    runtime.close()

    assert (result.delivered, result.failed) == (1, 0)
    [mail] = sink.messages
    (pdf_name, pdf_type, pdf), (xml_name, xml_type, xml) = mail.attachments()
    assert (pdf_name, pdf_type) == ("INV-000001.pdf", "application/pdf") and pdf.startswith(b"%PDF-")
    assert (xml_name, xml_type) == (f"INV-000001-{fmt}.xml", "application/xml")
    assert revalidated(xml).format == fmt
    assert (sent["status"], sent["format"]) == ("sent", fmt)


def test_a_factur_x_customer_receives_one_pdf_that_carries_the_invoice(
    db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    runtime = mailing_runtime(db_url, tmp_path, sink)
    customer = {**GERMAN_CUSTOMER, "invoice_format": "facturx"}
    store(runtime, "INV-000001", "cus_kunde", customer, german_vat_lines(), deliver=True)

    result = run_deliveries(runtime)
    [sent] = history(runtime, "INV-000001")["deliveries"]
    runtime.close()

    assert result.delivered == 1
    [mail] = sink.messages
    [(name, mime, pdf)] = mail.attachments()  # the Factur-X replaces the plain PDF
    assert (name, mime) == ("INV-000001-facturx.pdf", "application/pdf") and pdf.startswith(b"%PDF-")
    assert revalidated(pdf).format == "facturx"
    assert b"238.00" in extract_xml(pdf)
    assert (sent["status"], sent["format"]) == ("sent", "facturx")


def test_an_e_invoice_that_cannot_be_valid_is_not_sent_and_support_sees_the_rule(
    db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    runtime = mailing_runtime(db_url, tmp_path, sink, phone=None)  # XRechnung requires it (BR-DE-6)
    customer = {**GERMAN_CUSTOMER, "invoice_format": "xrechnung"}
    invoice_id = store(runtime, "INV-000001", "cus_kunde", customer, german_vat_lines(), deliver=True)

    result = run_deliveries(runtime)
    again = run_deliveries(runtime)
    shown = history(runtime, "INV-000001")
    [letter] = letters(runtime, STREAM)
    runtime.close()

    assert (result.delivered, result.failed, again.delivered, again.failed) == (0, 1, 0, 0)
    assert sink.messages == []
    assert shown["delivery_status"] == "failed"
    [attempt] = shown["deliveries"]
    assert attempt["status"] == "failed" and "BR-DE-6" in (attempt["error"] or "")
    assert (letter.external_id, letter.status) == ("INV-000001", "open")
    assert "BR-DE-6" in letter.error and letter.payload["invoice_id"] == invoice_id


# --------------------------------------------------------------------------------------------
# the folder destination


def billed_runtime(
    db_url: str, folder: Path, formats: list[str], customers: dict[str, dict[str, Any]]
) -> Runtime:
    """A runtime exporting to ``einvoices/`` in ``formats``, with a one-off setup fee (500.00 USD,
    no tax) ordered by each of ``customers``."""
    runtime = einvoice_runtime(
        db_url,
        folder,
        einvoice=EInvoiceSettings.model_validate(
            {"folder": "einvoices", "folder_formats": formats, "exemption_reason": "Export"}
        ),
    )
    (folder / "catalog.yaml").write_text(yaml.safe_dump(CATALOG), encoding="utf-8")
    seed(runtime, "product", "prd_setup", {"code": "SETUP", "name": "Setup"})
    for customer_id, data in customers.items():
        seed(runtime, "customer", customer_id, data)
        seed_order(
            runtime, f"ord_{customer_id}", customer_id, [(f"oli_{customer_id}", "prd_setup", "1", None)]
        )
    return runtime


def folder_rows(runtime: Runtime) -> dict[str, str]:
    """Invoice number -> status of its folder export row."""
    with runtime.sessions() as session:
        rows = session.execute(
            select(Invoice.number, OutboxItem.status)
            .join(Invoice, Invoice.id == OutboxItem.canonical_id)
            .where(OutboxItem.destination == FOLDER_DESTINATION)
        ).all()
    return {str(number): status for number, status in rows}


def test_the_billing_run_owes_each_invoice_to_the_folder_and_the_export_writes_each_format_validated(
    db_url: str, tmp_path: Path
) -> None:
    runtime = billed_runtime(
        db_url,
        tmp_path,
        ["ubl", "xrechnung", "facturx"],
        {"cus_acme": US_CUSTOMER, "cus_beta": {**US_CUSTOMER, "name": "Beta Inc"}},
    )

    billed = run_billing(runtime, ISSUED)
    queued = folder_rows(runtime)
    first = run_folder_exports(runtime)
    folder = tmp_path / "einvoices"
    written = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    run_billing(runtime, ISSUED)  # nothing new billed: nothing owed again
    second = run_folder_exports(runtime)
    done = folder_rows(runtime)
    runtime.close()

    assert billed.numbers == ["INV-000001", "INV-000002"]
    assert queued == {"INV-000001": "pending", "INV-000002": "pending"}
    assert (first.written, first.failed, first.errors) == (6, 0, [])
    assert sorted(written) == [
        f"INV-00000{n}-{fmt}" for n in (1, 2) for fmt in ("facturx.pdf", "ubl.xml", "xrechnung.xml")
    ]  # and no half-written ".part" file
    for path in folder.iterdir():
        report = revalidated(path.read_bytes())
        assert report.format == path.stem.rsplit("-", 1)[1]
        assert b"500.00" in xml_of(path.read_bytes())
    assert (second.written, second.failed) == (0, 0)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == written
    assert done == {"INV-000001": "sent", "INV-000002": "sent"}


def test_an_invoice_that_cannot_be_valid_is_not_written_and_its_dead_letter_lists_the_rules(
    db_url: str, tmp_path: Path
) -> None:
    # XRechnung needs the buyer's city and postal code (BR-DE-8, BR-DE-9); Beta's record has neither
    no_city = {**US_CUSTOMER, "name": "Beta Inc", "billing_address": {"country": "US"}}
    runtime = billed_runtime(
        db_url, tmp_path, ["ubl", "xrechnung"], {"cus_acme": US_CUSTOMER, "cus_beta": no_city}
    )

    run_billing(runtime, ISSUED)
    with runtime.sessions() as session:
        beta = session.scalars(select(Invoice).where(Invoice.customer_id == "cus_beta")).one().number
    result = run_folder_exports(runtime)
    again = run_folder_exports(runtime)
    rows = folder_rows(runtime)
    [letter] = letters(runtime, FOLDER_STREAM)
    runtime.close()

    acme = "INV-000001" if beta == "INV-000002" else "INV-000002"
    assert (result.written, result.failed, again.written, again.failed) == (2, 1, 0, 0)
    assert sorted(p.name for p in (tmp_path / "einvoices").iterdir()) == [
        f"{acme}-ubl.xml",
        f"{acme}-xrechnung.xml",
    ]  # not even Beta's UBL, which alone would have passed
    assert rows == {acme: "sent", beta: "failed"}
    assert (letter.external_id, letter.status) == (beta, "open")
    assert {"BR-DE-8", "BR-DE-9"} <= {r["rule"] for r in letter.payload["rules"]}
    assert all(r["text"] for r in letter.payload["rules"])
    assert "BR-DE-8" in letter.error
