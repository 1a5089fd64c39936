"""Factur-X / ZUGFeRD: the invoice PDF a person reads, with its CII XML embedded for machines.

Factur-X 1.0 (= ZUGFeRD 2.x) is a PDF/A-3 whose attachment ``factur-x.xml`` is the legally relevant
invoice and whose XMP metadata names the profile. billsync writes the EN 16931 profile: the XML is
:func:`~connectors.einvoice.cii.write_cii` with ``format="facturx"``. The PDF/A-3 work (embedded
file, ``/AF`` relationship, XMP extension schema) is done by the ``factur-x`` package (Akretion).

Checks: its XSD check stays on (a local file, the Factur-X EN 16931 XSD, stricter than plain D16B);
its Schematron check stays off because it posts the XML to a Saxon HTTP server and, without one,
only logs the failure and passes. billsync validates the XML with its own rules
(:func:`connectors.einvoice.validation.validate` with ``format="facturx"``, on :func:`extract_xml`).
"""

from __future__ import annotations

import re
from io import BytesIO
from typing import Final

import facturx
from pypdf import PdfReader
from pypdf.errors import PyPdfError

from connectors.einvoice.cii import write_cii
from connectors.einvoice.model import EInvoice

__all__ = ["FACTURX_FILENAME", "FACTURX_LEVEL", "FacturXError", "extract_xml", "write_facturx"]

#: The attachment name Factur-X prescribes (and the ``fx:DocumentFileName`` in the XMP).
FACTURX_FILENAME: Final = "factur-x.xml"
#: The profile billsync writes; the XMP says ``fx:ConformanceLevel`` ``EN 16931``.
FACTURX_LEVEL: Final = "en16931"

_PDFA3 = re.compile(rb"pdfaid:part\s*(?:=\s*[\"']|>)\s*3\b")


class FacturXError(ValueError):
    """The PDF or the XML cannot make (or does not contain) a Factur-X invoice."""


def write_facturx(invoice: EInvoice, pdf: bytes, *, lang: str | None = None) -> bytes:
    """``pdf`` (a PDF/A-3 rendering of ``invoice``) with the invoice's CII XML embedded.

    The PDF must already be PDF/A-3 (``render_pdf(data, variant="pdf/a-3b")``): the library
    rewrites the XMP to claim PDF/A-3B whatever the input was, so a plain PDF would come out as a
    Factur-X that fails every PDF/A check. ``lang`` (e.g. ``de-DE``) is the PDF's ``/Lang``.
    """
    if not _declares_pdfa3(pdf):
        raise FacturXError(
            "Factur-X needs a PDF/A-3 invoice PDF; render it with variant='pdf/a-3b' (no pdfaid:part 3 "
            "in its XMP metadata)"
        )
    xml = write_cii(invoice, format="facturx")
    kind = "Credit note" if invoice.is_credit_note else "Invoice"
    metadata = {  # the library's own defaults call a credit note "Refund"
        "author": invoice.seller.name,
        "keywords": f"{kind}, Factur-X",
        "title": f"{invoice.seller.name}: {kind} {invoice.number}",
        "subject": f"{kind} {invoice.number} dated {invoice.issue_date.isoformat()} issued by {invoice.seller.name}",
    }
    try:
        result = facturx.generate_from_binary(
            pdf,
            xml,
            flavor="factur-x",
            level=FACTURX_LEVEL,
            check_xsd=True,
            check_schematron=False,
            pdf_metadata=metadata,
            lang=lang,
        )
    except Exception as exc:  # the library raises bare Exception for an XSD failure
        raise FacturXError(f"cannot build the Factur-X PDF for {invoice.number}: {exc}") from exc
    if not isinstance(result, bytes) or not result:
        raise FacturXError(f"the factur-x library returned no PDF for {invoice.number}")
    return result


def extract_xml(pdf: bytes) -> bytes:
    """The embedded invoice XML of a Factur-X / ZUGFeRD PDF, as stored (to validate it).

    The library's own XSD check is off here: a schema-invalid XML must still come out so that the
    validator can say what is wrong with it, instead of the file looking as if it had no XML at all.
    """
    try:
        name, xml = facturx.get_xml_from_pdf(pdf, check_xsd=False, check_schematron=False)
    except (PyPdfError, ValueError, TypeError) as exc:
        raise FacturXError(f"not a readable PDF: {exc}") from exc
    if not name or not isinstance(xml, bytes):
        raise FacturXError("the PDF has no embedded Factur-X/ZUGFeRD invoice XML")
    return xml


def _declares_pdfa3(pdf: bytes) -> bool:
    try:
        metadata = PdfReader(BytesIO(pdf)).xmp_metadata
    except (PyPdfError, ValueError) as exc:
        raise FacturXError(f"not a readable PDF: {exc}") from exc
    if metadata is None:
        return False
    return bool(_PDFA3.search(metadata.stream.get_data()))
