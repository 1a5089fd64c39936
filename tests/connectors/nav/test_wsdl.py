"""The sandbox's generated WSDLs against the real NAV WSDLs of ``shared/fixtures/soap_erp/nav``.

NAV publishes every page the same way, so the generated Customer page must have exactly the
structure of the real ``CustomerList`` page once the page name is swapped, and zeep must build the
same request from both.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import zeep
from lxml import etree

from connectors.nav.schema import CODEUNITS, OBJECT_FIELDS, PAGES, REQUIRED_ON_CREATE
from connectors.nav.wsdl import codeunit_wsdl, page_wsdl

XSD = "{http://www.w3.org/2001/XMLSchema}"
WSDL = "{http://schemas.xmlsoap.org/wsdl/}"
SOAP = "{http://schemas.xmlsoap.org/wsdl/soap/}"


def _shape(root: etree._Element, page: str) -> dict[str, object]:
    """Names, types and occurrences of everything but the page's own field list, page name as ``P``."""

    def norm(text: str | None) -> str:
        return re.sub(re.escape(page), "P", re.sub(re.escape(page.lower()), "p", text or ""))

    schema = root.find(f"{WSDL}types/{XSD}schema")
    assert schema is not None
    elements = {}
    for element in schema.findall(f"{XSD}element"):
        if element.get("name") not in (
            "ReadMultiple",
            "ReadMultiple_Result",
            "CreateMultiple",
            "CreateMultiple_Result",
        ):
            continue
        elements[element.get("name")] = [
            (norm(e.get("name")), norm(e.get("type")), e.get("minOccurs"), e.get("maxOccurs"))
            for e in element.iter(f"{XSD}element")
            if e is not element
        ]
    filter_type = schema.find(f"{XSD}complexType[@name='{page}_Filter']")
    list_type = schema.find(f"{XSD}complexType[@name='{page}_List']")
    assert filter_type is not None and list_type is not None
    binding = root.find(f"{WSDL}binding")
    assert binding is not None
    actions = {
        op.get("name"): norm(op.find(f"{SOAP}operation").get("soapAction"))  # type: ignore[union-attr]
        for op in binding.findall(f"{WSDL}operation")
        if op.get("name") in ("ReadMultiple", "CreateMultiple")
    }
    service = root.find(f"{WSDL}service")
    assert service is not None
    port = service.find(f"{WSDL}port")
    assert port is not None
    return {
        "namespace": norm(root.get("targetNamespace")),
        "form": schema.get("elementFormDefault"),
        "elements": elements,
        "filter": [(norm(e.get("name")), norm(e.get("type"))) for e in filter_type.iter(f"{XSD}element")],
        "list": [
            (norm(e.get("name")), norm(e.get("type")), e.get("maxOccurs"))
            for e in list_type.iter(f"{XSD}element")
        ],
        "port_type": norm(root.find(f"{WSDL}portType").get("name")),  # type: ignore[union-attr]
        "binding": (norm(binding.get("name")), norm(binding.get("type"))),
        "actions": actions,
        "service": (norm(service.get("name")), norm(port.get("name")), norm(port.get("binding"))),
        "address": norm(port.find(f"{SOAP}address").get("location")).rsplit("/", 2)[-2:],  # type: ignore[union-attr]
    }


def test_generated_page_wsdl_has_the_structure_of_the_real_one(real_wsdl: Callable[[str], Path]) -> None:
    real = etree.parse(str(real_wsdl("page-CustomerList.xml"))).getroot()
    ours = etree.fromstring(
        page_wsdl("Customer", "http://nav:7047/DynamicsNAV/WS/CRONUS/Page/Customer").encode()
    )
    assert _shape(ours, "Customer") == _shape(real, "CustomerList")


def test_zeep_builds_the_same_request_from_both(real_wsdl: Callable[[str], Path], tmp_path: Path) -> None:
    ours_path = tmp_path / "page-Customer.xml"
    ours_path.write_text(page_wsdl("Customer", "http://nav.invalid/Page/Customer"), encoding="utf-8")
    real = zeep.Client(str(real_wsdl("page-CustomerList.xml")))
    ours = zeep.Client(str(ours_path))

    def envelope(client: zeep.Client, page: str) -> str:
        message = client.create_message(
            client.service,
            "ReadMultiple",
            filter=[{"Field": "No", "Criteria": "A|B"}],
            bookmarkKey="k",
            setSize=10,
        )
        text = etree.tostring(message).decode()
        return text.replace(page.lower(), "p").replace(page, "P")

    assert envelope(ours, "Customer") == envelope(real, "CustomerList")
    operation = ours.service._binding._operations["ReadMultiple"]
    assert operation.soapaction == "urn:microsoft-dynamics-schemas/page/customer:ReadMultiple"


def test_generated_codeunit_wsdl_follows_the_real_codeunit(
    real_wsdl: Callable[[str], Path], tmp_path: Path
) -> None:
    real = etree.parse(str(real_wsdl("codeunit-IntegrationEntry.xml"))).getroot()
    ours = etree.fromstring(
        codeunit_wsdl("PaymentStatus", "http://nav.invalid/Codeunit/PaymentStatus").encode()
    )
    assert real.get("targetNamespace") == "urn:microsoft-dynamics-schemas/codeunit/IntegrationEntry"
    assert ours.get("targetNamespace") == "urn:microsoft-dynamics-schemas/codeunit/PaymentStatus"  # case kept
    for root, name in ((real, "IntegrationEntry"), (ours, "PaymentStatus")):
        service = root.find(f"{WSDL}service")
        assert service is not None and service.get("name") == name  # no _Service suffix on codeunits
        assert root.find(f"{WSDL}portType").get("name") == f"{name}_Port"  # type: ignore[union-attr]
    result = ours.find(f".//{XSD}element[@name='RecordPaymentStatus_Result']//{XSD}element")
    assert result is not None and result.get("name") == "return_value"
    params = ours.findall(f".//{XSD}element[@name='RecordPaymentStatus']//{XSD}element")
    assert {p.get("minOccurs") for p in params} == {"1"}  # NAV sends every codeunit parameter
    path = tmp_path / "codeunit-PaymentStatus.xml"
    path.write_text(codeunit_wsdl("PaymentStatus", "http://nav.invalid/x"), encoding="utf-8")
    assert list(zeep.Client(str(path)).service._binding._operations) == ["RecordPaymentStatus"]


def test_sales_invoice_lines_are_a_sub_page_list() -> None:
    root = etree.fromstring(page_wsdl("SalesInvoice", "http://nav.invalid/x").encode())
    header = root.find(f".//{XSD}complexType[@name='SalesInvoice']")
    assert header is not None
    fields = [e.get("name") for e in header.iter(f"{XSD}element")]
    assert fields[0] == "Key"  # NAV puts Key first
    lines = header.find(f".//{XSD}element[@name='SalesLines']")
    assert lines is not None and lines.get("type") == "tns:Sales_Invoice_Line_List"
    enum = root.find(f".//{XSD}simpleType[@name='SalesInvoice_Fields']")
    assert enum is not None
    filterable = [e.get("value") for e in enum.iter(f"{XSD}enumeration")]
    assert "Key" not in filterable and "SalesLines" not in filterable and "External_Document_No" in filterable


def test_schema_tables_cover_the_mapping_targets() -> None:
    assert set(OBJECT_FIELDS) == {*PAGES, *CODEUNITS}
    assert {"No", "Name", "Currency_Code", "Key"} <= set(OBJECT_FIELDS["Customer"])
    assert {"External_Document_No", "SalesLines", "Sell_to_Customer_No"} <= set(OBJECT_FIELDS["SalesInvoice"])
    for obj, required in REQUIRED_ON_CREATE.items():
        assert set(required) <= set(OBJECT_FIELDS[obj])
