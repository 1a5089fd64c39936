"""Factur-X: the PDF/A-3 keeps its visible invoice and carries the validated CII XML.

The input PDF is what billsync renders (WeasyPrint, ``pdf_variant="pdf/a-3b"``). Checked: the
embedded ``factur-x.xml`` comes back out byte for byte and passes the EN 16931 rules, the XMP names
the Factur-X EN 16931 profile, the page text is still there, and the wrong inputs are refused.
"""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from typing import cast

import facturx
import pytest
from lxml import etree
from pypdf import PdfReader
from pypdf.generic import ArrayObject, DictionaryObject

from connectors.einvoice.cii import write_cii
from connectors.einvoice.facturx import FACTURX_FILENAME, FacturXError, extract_xml, write_facturx
from connectors.einvoice.model import EInvoice
from connectors.einvoice.validation import validate
from tests.connectors.einvoice.samples import CII_SAMPLES, assert_valid, credit_note, german_invoice

VISIBLE_TEXT = "Invoice INV-1 total 100.00"
XMP_NS = {
    "fx": "urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#",
    "pdfaid": "http://www.aiim.org/pdfa/ns/id/",
}


def _render(pdf_variant: str | None) -> bytes:
    try:
        from weasyprint import HTML
    except OSError as exc:  # the package is there but Pango is not
        pytest.skip(f"WeasyPrint cannot load its system libraries: {exc}")
    options = {"pdf_variant": pdf_variant} if pdf_variant else {}
    pdf = HTML(string=f"<p>{VISIBLE_TEXT}</p>").write_pdf(**options)
    assert isinstance(pdf, bytes)
    return pdf


@pytest.fixture(scope="module")
def pdfa3() -> bytes:
    return _render("pdf/a-3b")


@pytest.mark.parametrize("name", list(CII_SAMPLES))
def test_embedded_xml_round_trips_and_validates(name: str, pdfa3: bytes) -> None:
    invoice: EInvoice = CII_SAMPLES[name]()
    xml = extract_xml(write_facturx(invoice, pdfa3))
    assert xml == write_cii(invoice, format="facturx")
    assert_valid(validate(xml, format="facturx", source=f"{name}.pdf#{FACTURX_FILENAME}"))


def test_pdf_carries_factur_x_attachment_metadata_and_the_visible_page(pdfa3: bytes) -> None:
    reader = PdfReader(BytesIO(write_facturx(german_invoice(), pdfa3, lang="de-DE")))

    assert list(reader.attachments) == [FACTURX_FILENAME]
    catalog = reader.root_object
    associated = cast(ArrayObject, catalog["/AF"].get_object())  # PDF/A-3 associated files
    (filespec,) = [cast(DictionaryObject, ref.get_object()) for ref in associated]
    assert str(filespec["/F"]) == FACTURX_FILENAME
    assert str(filespec["/AFRelationship"]) == "/Data"  # the XML is the invoice's data, not a side file
    assert str(catalog["/Lang"]) == "de-DE"

    assert reader.xmp_metadata is not None
    xmp = etree.fromstring(reader.xmp_metadata.stream.get_data())
    assert xmp.findtext(".//fx:ConformanceLevel", namespaces=XMP_NS) == "EN 16931"
    assert xmp.findtext(".//fx:DocumentFileName", namespaces=XMP_NS) == FACTURX_FILENAME
    assert xmp.findtext(".//fx:DocumentType", namespaces=XMP_NS) == "INVOICE"
    assert xmp.findtext(".//pdfaid:part", namespaces=XMP_NS) == "3"
    assert xmp.findtext(".//pdfaid:conformance", namespaces=XMP_NS) == "B"

    assert len(reader.pages) == 1
    assert VISIBLE_TEXT in reader.pages[0].extract_text()
    assert reader.metadata is not None
    assert reader.metadata.title == "Nordlicht Software GmbH: Invoice RE-2024-0042"


def test_credit_note_metadata_says_credit_note(pdfa3: bytes) -> None:
    pdf = write_facturx(credit_note(), pdfa3)
    reader = PdfReader(BytesIO(pdf))
    assert reader.metadata is not None
    assert reader.metadata.title == "Nordlicht Software GmbH: Credit note GS-2024-0007"
    assert b"<ram:TypeCode>381</ram:TypeCode>" in extract_xml(pdf)


def test_plain_pdf_is_refused() -> None:
    with pytest.raises(FacturXError, match="PDF/A-3"):
        write_facturx(german_invoice(), _render(None))


@pytest.mark.parametrize(
    ("make_pdf", "message"),
    [
        (lambda: _render("pdf/a-3b"), "no embedded Factur-X"),
        (lambda: b"this is not a PDF", "not a readable PDF"),
    ],
)
def test_extract_from_a_pdf_without_invoice_xml_fails(make_pdf: Callable[[], bytes], message: str) -> None:
    with pytest.raises(FacturXError, match=message):
        extract_xml(make_pdf())


def test_schema_invalid_embedded_xml_still_comes_out_for_the_validator(pdfa3: bytes) -> None:
    """A broken Factur-X from elsewhere must be reported as broken, not as 'no XML found'."""
    broken = write_cii(german_invoice(), format="facturx").replace(
        b"<ram:ApplicableHeaderTradeDelivery/>", b""
    )
    pdf = facturx.generate_from_binary(pdfa3, broken, flavor="factur-x", level="en16931", check_xsd=False)
    xml = extract_xml(pdf)
    assert xml == broken
    report = validate(xml, format="facturx")
    assert not report.ok
    assert "XSD" in report.failed_rules("schema")
