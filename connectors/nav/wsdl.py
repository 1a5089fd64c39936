"""WSDLs that follow Dynamics NAV's page and codeunit web-service conventions, for the sandbox.

Generated from :mod:`connectors.nav.schema` in the shape NAV publishes (compare
``shared/fixtures/soap_erp/nav/page-CustomerList.xml``): target namespace
``urn:microsoft-dynamics-schemas/page/<page in lower case>`` (codeunits keep their case), one
``<Page>`` complex type with ``Key`` first, ``<Page>_List``, ``<Page>_Fields`` (an enum of the
filterable fields), ``<Page>_Filter{Field, Criteria}``, request/response elements ``<Op>`` and
``<Op>_Result``, messages of one ``parameters`` part, ``<Page>_Port``, ``<Page>_Binding`` with
document/literal operations whose soapAction is ``<namespace>:<Op>``, and ``<Page>_Service``.
A page publishes only its :attr:`~connectors.nav.schema.PageSpec.operations` (a read-only page:
``Read`` and ``ReadMultiple``), and ``Read`` takes its primary key in the key field's type.
"""

from __future__ import annotations

from html import escape

from connectors.nav.schema import CODEUNITS, PAGE_OPERATIONS, PAGES, SUBPAGES, XSD_TYPES, PageSpec

__all__ = ["PAGE_OPERATIONS", "codeunit_namespace", "codeunit_wsdl", "page_namespace", "page_wsdl"]

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
SOAP_NS = "http://schemas.xmlsoap.org/wsdl/soap/"


def page_namespace(page: str) -> str:
    return f"urn:microsoft-dynamics-schemas/page/{page.lower()}"


def codeunit_namespace(codeunit: str) -> str:
    return f"urn:microsoft-dynamics-schemas/codeunit/{codeunit}"


def _element(name: str, type_: str, *, min_occurs: int = 0, max_occurs: str = "1") -> str:
    return (
        f'<xsd:element minOccurs="{min_occurs}" maxOccurs="{max_occurs}" name="{escape(name)}" '
        f'type="{escape(type_)}"/>'
    )


def _field_type(spec: PageSpec, name: str, kind: str) -> str:
    if name in spec.parts:
        return f"tns:{spec.parts[name]}_List"
    if kind in spec.enums:
        return f"tns:{kind}"
    return XSD_TYPES[kind]


def _record_types(spec: PageSpec) -> list[str]:
    """``<simpleType>`` enums, the record type and its ``_List``, for a page or a sub-page."""
    out = []
    for enum, values in spec.enums.items():
        items = "".join(f'<xsd:enumeration value="{escape(v)}"/>' for v in values)
        out.append(
            f'<xsd:simpleType name="{enum}"><xsd:restriction base="xsd:string">{items}'
            "</xsd:restriction></xsd:simpleType>"
        )
    fields = "".join(_element(n, _field_type(spec, n, k)) for n, k in spec.fields.items())
    out.append(f'<xsd:complexType name="{spec.name}"><xsd:sequence>{fields}</xsd:sequence></xsd:complexType>')
    out.append(
        f'<xsd:complexType name="{spec.name}_List"><xsd:sequence>'
        + _element(spec.name, f"tns:{spec.name}", min_occurs=1, max_occurs="unbounded")
        + "</xsd:sequence></xsd:complexType>"
    )
    return out


def _wrapper(name: str, *children: str) -> str:
    return f'<xsd:element name="{name}"><xsd:complexType><xsd:sequence>{"".join(children)}</xsd:sequence></xsd:complexType></xsd:element>'


def _definitions(
    namespace: str, port: str, operations: list[str], types: list[str], service: str, address: str
) -> str:
    messages = "".join(
        f'<message name="{name}"><part name="parameters" element="tns:{name}"/></message>'
        for op in operations
        for name in (op, f"{op}_Result")
    )
    port_ops = "".join(
        f'<operation name="{op}"><input name="{op}" message="tns:{op}"/>'
        f'<output name="{op}_Result" message="tns:{op}_Result"/></operation>'
        for op in operations
    )
    binding_ops = "".join(
        f'<operation name="{op}"><operation xmlns="{SOAP_NS}" soapAction="{namespace}:{op}" style="document"/>'
        f'<input name="{op}"><body xmlns="{SOAP_NS}" use="literal"/></input>'
        f'<output name="{op}_Result"><body xmlns="{SOAP_NS}" use="literal"/></output></operation>'
        for op in operations
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<definitions xmlns="{WSDL_NS}" xmlns:tns="{namespace}" targetNamespace="{namespace}">'
        "<types>"
        f'<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema" elementFormDefault="qualified" '
        f'targetNamespace="{namespace}">{"".join(types)}</xsd:schema>'
        "</types>"
        f"{messages}"
        f'<portType name="{port}_Port">{port_ops}</portType>'
        f'<binding name="{port}_Binding" type="tns:{port}_Port">'
        f'<binding xmlns="{SOAP_NS}" transport="http://schemas.xmlsoap.org/soap/http"/>{binding_ops}</binding>'
        f'<service name="{service}"><port name="{port}_Port" binding="tns:{port}_Binding">'
        f'<address xmlns="{SOAP_NS}" location="{escape(address)}"/></port></service>'
        "</definitions>"
    )


def page_wsdl(page: str, address: str) -> str:
    """The WSDL of page service ``page`` (a key of :data:`PAGES`) served at ``address``."""
    spec = PAGES[page]
    name = spec.name
    types: list[str] = []
    for sub in spec.parts.values():
        types += _record_types(SUBPAGES[sub])
    types += _record_types(spec)
    filterable = [n for n in spec.fields if n != "Key" and n not in spec.parts]
    enum = "".join(f'<xsd:enumeration value="{escape(n)}"/>' for n in filterable)
    types.append(
        f'<xsd:simpleType name="{name}_Fields"><xsd:restriction base="xsd:string">{enum}'
        "</xsd:restriction></xsd:simpleType>"
    )
    types.append(
        f'<xsd:complexType name="{name}_Filter"><xsd:sequence>'
        + _element("Field", f"tns:{name}_Fields", min_occurs=1)
        + _element("Criteria", "xsd:string", min_occurs=1)
        + "</xsd:sequence></xsd:complexType>"
    )
    record = f"tns:{name}"
    listing = f"tns:{name}_List"
    key_type = XSD_TYPES.get(spec.fields.get(spec.key_field, "string"), "xsd:string")
    wrappers = {
        "Read": (
            _wrapper("Read", _element(spec.key_field, key_type, min_occurs=1)),
            _wrapper("Read_Result", _element(name, record)),
        ),
        "ReadMultiple": (
            _wrapper(
                "ReadMultiple",
                _element("filter", f"tns:{name}_Filter", min_occurs=1, max_occurs="unbounded"),
                _element("bookmarkKey", "xsd:string"),
                _element("setSize", "xsd:int", min_occurs=1),
            ),
            _wrapper("ReadMultiple_Result", _element("ReadMultiple_Result", listing)),
        ),
        "IsUpdated": (
            _wrapper("IsUpdated", _element("Key", "xsd:string", min_occurs=1)),
            _wrapper("IsUpdated_Result", _element("IsUpdated_Result", "xsd:boolean", min_occurs=1)),
        ),
        "Create": (
            _wrapper("Create", _element(name, record, min_occurs=1)),
            _wrapper("Create_Result", _element(name, record, min_occurs=1)),
        ),
        "CreateMultiple": (
            _wrapper("CreateMultiple", _element(f"{name}_List", listing, min_occurs=1)),
            _wrapper("CreateMultiple_Result", _element(f"{name}_List", listing, min_occurs=1)),
        ),
        "Update": (
            _wrapper("Update", _element(name, record, min_occurs=1)),
            _wrapper("Update_Result", _element(name, record, min_occurs=1)),
        ),
        "UpdateMultiple": (
            _wrapper("UpdateMultiple", _element(f"{name}_List", listing, min_occurs=1)),
            _wrapper("UpdateMultiple_Result", _element(f"{name}_List", listing, min_occurs=1)),
        ),
        "Delete": (
            _wrapper("Delete", _element("Key", "xsd:string", min_occurs=1)),
            _wrapper("Delete_Result", _element("Delete_Result", "xsd:boolean", min_occurs=1)),
        ),
    }
    operations = [op for op in PAGE_OPERATIONS if op in spec.operations]
    for op in operations:
        types += wrappers[op]
    return _definitions(page_namespace(name), name, operations, types, f"{name}_Service", address)


def codeunit_wsdl(codeunit: str, address: str) -> str:
    """The WSDL of codeunit service ``codeunit`` (a key of :data:`CODEUNITS`) served at ``address``.

    Like NAV, every parameter is ``minOccurs=1`` and the result carries ``return_value``; the service
    element is named after the codeunit itself (no ``_Service`` suffix).
    """
    operations = CODEUNITS[codeunit]
    types = []
    for op in operations.values():
        params = [_element(n, XSD_TYPES[k], min_occurs=1) for n, k in op.parameters]
        types.append(_wrapper(op.name, *params))
        types.append(
            _wrapper(f"{op.name}_Result", _element("return_value", XSD_TYPES[op.returns], min_occurs=1))
        )
    return _definitions(codeunit_namespace(codeunit), codeunit, list(operations), types, codeunit, address)
