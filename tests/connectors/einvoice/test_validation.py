"""E-invoice validation agrees with the official EN 16931, Peppol BIS 3 and XRechnung test files.

Fixtures are an unchanged subset of the official artefacts (``tests/fixtures/standards/einvoice``,
see its README for provenance and the two test-file formats):

- valid examples (CEN UBL/CII, Peppol 2026.5, XRechnung) must pass: no fatal or error failure;
- CEN and Peppol unit tests (vefa ``<testSet>`` files): each embedded document must fail exactly the
  rules its ``<error>``/``<warning>`` expects (with the expected count) and not the ``<success>`` ones;
- KoSIT xml-mutate instances: each derived document must fail, or not, the XRechnung rule named in
  its ``schematron-invalid`` / ``schematron-valid`` instruction.

One module-scoped :class:`Validator` compiles each stylesheet once for the whole file.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from connectors.einvoice import (
    FormatError,
    ValidationReport,
    Validator,
    detect_format,
    format_report,
    validate,
)
from connectors.einvoice.validation import RULES_DIR, STYLESHEETS, hardened_parser

FIXTURES = Path(__file__).parents[2] / "fixtures" / "standards" / "einvoice"
CEN = FIXTURES / "en16931-cen"
PEPPOL = FIXTURES / "peppol-bis-billing-3"
XR = FIXTURES / "xrechnung" / "instances"
VEFA = "http://difi.no/xsd/vefa/validator/1.0"

BASE_EXAMPLE = PEPPOL / "examples" / "base-example.xml"  # Peppol BIS 3 invoice, valid
CII_EXAMPLE = CEN / "cii" / "examples" / "CII_example1.xml"  # plain EN 16931 CII, valid


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator()


def _rel(path: Path) -> str:
    return str(path.relative_to(FIXTURES))


# -- valid examples -------------------------------------------------------------------------------

VALID = (
    [(p, "ubl") for p in sorted((CEN / "ubl" / "examples").iterdir())]
    + [(p, "ubl") for p in sorted((CEN / "test" / "testfiles").glob("*.xml"))]
    + [(p, "cii") for p in sorted((CEN / "cii" / "examples").glob("*.xml"))]
    + [(p, None) for p in sorted((PEPPOL / "examples").glob("*.xml"))]
    + [(p, None) for p in sorted(XR.glob("*/*-br-de-1-test.xml"))]
)


def test_the_fixture_set_is_complete() -> None:
    assert len(VALID) == 18 + 4 + 15 + 10 + 3
    assert len(list((CEN / "test").glob("*-unit-UBL/*.xml"))) == 54 + 17
    assert len(list(XR.glob("*/*.xml"))) == 19


@pytest.mark.parametrize(("path", "fmt"), VALID, ids=lambda v: _rel(v) if isinstance(v, Path) else str(v))
def test_official_example_is_valid(validator: Validator, path: Path, fmt: str | None) -> None:
    report = validator.validate(path, format=fmt)

    assert report.ok, format_report(report)
    assert not [f for f in report.failures if f.stage == "schema"]
    if fmt is None:  # the CIUS comes from the document's own customization id
        expected = "peppol" if path.parent.name == "examples" else "xrechnung"
        assert report.format == expected


# -- CEN and Peppol unit tests (vefa testSet format) ----------------------------------------------


@dataclass(frozen=True)
class Expectation:
    kind: str  # success | error | warning
    rule_id: str
    count: int | None


@dataclass(frozen=True)
class UnitCase:
    name: str
    document: bytes
    expectations: tuple[Expectation, ...]


def _unit_cases(paths: list[Path]) -> list[UnitCase]:
    cases = []
    for path in paths:
        root = etree.parse(str(path), hardened_parser()).getroot()
        for index, test in enumerate(root.iterfind(f"{{{VEFA}}}test"), start=1):
            expectations = tuple(
                Expectation(etree.QName(e).localname, (e.text or "").strip(), _count(e))
                for a in test.iterfind(f"{{{VEFA}}}assert")
                for e in a
                if etree.QName(e).localname in ("success", "error", "warning")
            )
            documents = [c for c in test if isinstance(c.tag, str) and etree.QName(c).namespace != VEFA]
            assert len(documents) == 1, f"{path}: test {index} embeds {len(documents)} documents"
            cases.append(UnitCase(f"{_rel(path)}#{index}", etree.tostring(documents[0]), expectations))
    return cases


def _count(element: etree._Element) -> int | None:
    # on <success>, "number" counts passing evaluations, which SVRL does not report
    number = element.get("number")
    return int(number) if number and etree.QName(element).localname != "success" else None


def _disagreements(report: ValidationReport, stage: str, expectations: tuple[Expectation, ...]) -> list[str]:
    failures = [f for f in report.failures if f.stage == stage]
    wrong = []
    for e in expectations:
        hits = [f for f in failures if f.rule_id == e.rule_id]
        if e.kind == "success":
            matching = hits
            agrees = not hits
        else:
            matching = [f for f in hits if f.blocking == (e.kind == "error")]
            agrees = bool(matching) and (e.count is None or len(matching) == e.count)
        if not agrees:
            got = [f"{f.rule_id}[{f.flag}]" for f in hits]
            wrong.append(f"expected {e.kind} {e.rule_id} (x{e.count or 'any'}), got {got or 'nothing'}")
    return wrong


CEN_UNIT = _unit_cases(sorted((CEN / "test").glob("*-unit-UBL/*.xml")))
CEN_CII_UNIT = _unit_cases(sorted((CEN / "test" / "cii").glob("*.xml")))
PEPPOL_UNIT = _unit_cases(sorted((PEPPOL / "unit-UBL-PEPPOL").glob("*.xml")))


def test_the_unit_tests_expect_failures_and_successes() -> None:
    """Guards the harness: a parser that found no expectations would make every case pass."""
    for cases, minimum in ((CEN_UNIT, 250), (CEN_CII_UNIT, 9), (PEPPOL_UNIT, 100)):
        kinds = [e.kind for c in cases for e in c.expectations]
        assert len(cases) >= minimum and all(c.expectations for c in cases)
        assert kinds.count("error") > len(cases) / 4 and kinds.count("success") > len(cases) / 4
    assert any(e.kind == "warning" for c in CEN_UNIT for e in c.expectations)
    assert any(e.count for c in PEPPOL_UNIT for e in c.expectations)


@pytest.mark.parametrize("case", CEN_UNIT, ids=lambda c: c.name)
def test_cen_ubl_unit_test_agrees(validator: Validator, case: UnitCase) -> None:
    report = validator.validate(case.document, format="ubl")
    assert _disagreements(report, "en16931", case.expectations) == []


@pytest.mark.parametrize("case", CEN_CII_UNIT, ids=lambda c: c.name)
def test_cen_cii_unit_test_agrees(validator: Validator, case: UnitCase) -> None:
    report = validator.validate(case.document, format="cii")
    assert _disagreements(report, "en16931", case.expectations) == []


@pytest.mark.parametrize("case", PEPPOL_UNIT, ids=lambda c: c.name)
def test_peppol_unit_test_agrees(validator: Validator, case: UnitCase) -> None:
    report = validator.validate(case.document, format="peppol")
    assert _disagreements(report, "peppol", case.expectations) == []


# -- XRechnung xml-mutate instances ---------------------------------------------------------------

_PI_ATTRIBUTE = re.compile(r'([\w-]+)\s*=\s*"([^"]*)"', re.S)


@dataclass(frozen=True)
class MutateCase:
    name: str
    document: bytes
    invalid: tuple[str, ...]  # XRechnung rules that must fail
    valid: tuple[str, ...]  # XRechnung rules that must not fail


def _mutate_cases(paths: list[Path]) -> Iterator[MutateCase]:
    for path in paths:
        tree = etree.parse(str(path), hardened_parser())
        instructions = tree.xpath('//processing-instruction("xmute")')
        for index, instruction in enumerate(instructions):
            spec = dict(_PI_ATTRIBUTE.findall(instruction.text or ""))
            rules = {
                kind: tuple(r.split(":", 1)[1] for r in re.split(r"[\s,]+", spec.get(kind, "")) if r)
                for kind in ("schematron-invalid", "schematron-valid")
            }
            if not any(rules.values()):
                continue
            mutator = spec["mutator"]
            values: list[str | None] = [None]
            if mutator == "code":
                values = [v.strip() for v in spec["values"].split(spec.get("separator", ","))]
            for value in values:
                mutated = copy.deepcopy(tree)
                target = mutated.xpath('//processing-instruction("xmute")')[index].getnext()
                while target is not None and not isinstance(target.tag, str):
                    target = target.getnext()
                assert target is not None, f"{path}: no element after instruction {index}"
                _mutate(target, mutator, spec.get("attribute"), value)
                name = f"{_rel(path)}#{spec.get('id', index)}" + (f"={value}" if value is not None else "")
                yield MutateCase(
                    name, etree.tostring(mutated), rules["schematron-invalid"], rules["schematron-valid"]
                )


def _mutate(target: etree._Element, mutator: str, attribute: str | None, value: str | None) -> None:
    if mutator == "identity":
        return
    if mutator == "remove":
        parent = target.getparent()
        assert parent is not None
        parent.remove(target)
    elif mutator in ("empty", "code"):
        new = value if mutator == "code" else ""
        assert new is not None
        if attribute:
            target.set(attribute, new)
        else:
            for child in list(target):
                target.remove(child)
            target.text = new
    else:
        raise AssertionError(f"unsupported xml-mutate mutator {mutator!r}")


XR_CASES = list(_mutate_cases(sorted(XR.glob("*/*.xml"))))


def test_the_xrechnung_instances_expect_failures_and_successes() -> None:
    assert len(XR_CASES) > 150
    assert sum(bool(c.invalid) for c in XR_CASES) > 50 and sum(bool(c.valid) for c in XR_CASES) > 50


@pytest.mark.parametrize("case", XR_CASES, ids=lambda c: c.name)
def test_xrechnung_instance_agrees(validator: Validator, case: MutateCase) -> None:
    report = validator.validate(case.document, format="xrechnung")
    fired = {f.rule_id for f in report.failures if f.stage == "xrechnung"}

    assert {r for r in case.invalid if r not in fired} == set(), "expected to fail"
    assert {r for r in case.valid if r in fired} == set(), "expected not to fail"


# -- what a user notices on broken documents ------------------------------------------------------


def _line_of(data: bytes, marker: bytes) -> int:
    return data[: data.index(marker)].count(b"\n") + 1


def test_a_total_one_cent_off_fails_br_co_16(validator: Validator) -> None:
    original = BASE_EXAMPLE.read_bytes()
    data = original.replace(b">1656.25</cbc:PayableAmount>", b">1656.24</cbc:PayableAmount>")
    assert data != original

    report = validator.validate(data)

    assert not report.ok
    assert report.failed_rules() == {"BR-CO-16"}  # schema-valid, only the arithmetic is wrong
    (failure,) = report.errors
    assert (failure.stage, failure.flag) == ("en16931", "fatal")
    assert failure.short_location == "/Invoice[1]/LegalMonetaryTotal[1]"
    assert failure.line == _line_of(data, b"<cac:LegalMonetaryTotal>")
    assert failure.text.startswith("Amount due for payment (BT-115)")


def test_a_removed_issue_date_fails_the_schema_and_br_03(validator: Validator) -> None:
    data = re.sub(rb"\s*<cbc:IssueDate>[^<]*</cbc:IssueDate>", b"", BASE_EXAMPLE.read_bytes(), count=1)

    report = validator.validate(data)

    assert report.failed_rules("schema") == {"XSD"}
    assert report.failed_rules("en16931") == {"BR-03"}  # both kinds are reported in one run
    assert "cbc:IssueDate" in report.errors[0].text


def test_an_unknown_element_fails_only_the_schema_with_its_line(validator: Validator) -> None:
    data = BASE_EXAMPLE.read_bytes().replace(
        b"<cbc:IssueDate>", b"<cbc:Colour>red</cbc:Colour>\n    <cbc:IssueDate>", 1
    )

    report = validator.validate(data)

    (failure,) = report.failures
    line = _line_of(data, b"<cbc:Colour>")
    assert (failure.rule_id, failure.stage, failure.location, failure.line) == (
        "XSD",
        "schema",
        f"line {line}",
        line,
    )
    assert "Element 'cbc:Colour': This element is not expected" in failure.text


@pytest.mark.parametrize("bad_date", ["2017-13-45", "13.11.2017"])
def test_a_bad_date_fails_the_schema(validator: Validator, bad_date: str) -> None:
    data = re.sub(
        rb"<cbc:IssueDate>[^<]*<", f"<cbc:IssueDate>{bad_date}<".encode(), BASE_EXAMPLE.read_bytes(), count=1
    )

    report = validator.validate(data, format="ubl")

    assert not report.ok
    (failure,) = [f for f in report.failures if f.stage == "schema"]
    assert failure.line == _line_of(data, b"<cbc:IssueDate>")
    assert f"'{bad_date}' is not a valid value of the atomic type 'xs:date'" in failure.text


def test_malformed_xml_is_one_clear_failure(validator: Validator) -> None:
    data = BASE_EXAMPLE.read_bytes().replace(b"</cbc:ID>", b"</cbc:Id>", 1)

    report = validator.validate(data, source="broken.xml")

    (failure,) = report.failures
    line = _line_of(data, b"</cbc:Id>")
    assert (failure.rule_id, failure.stage, failure.flag, failure.location) == (
        "XML",
        "schema",
        "fatal",
        f"line {line}",
    )
    assert "Opening and ending tag mismatch" in failure.text
    assert report.syntax is None and not report.ok
    assert format_report(report).splitlines()[1] == f"  XML [fatal] line {line}: {failure.text}"


@pytest.mark.parametrize("data", [b"", b"not xml at all", b"<Invoice>"])
def test_empty_or_truncated_input_is_a_schema_failure(validator: Validator, data: bytes) -> None:
    report = validator.validate(data)
    assert [(f.rule_id, f.stage) for f in report.failures] == [("XML", "schema")]


def test_a_doctype_is_refused_and_entities_are_never_expanded(validator: Validator) -> None:
    body = BASE_EXAMPLE.read_bytes()
    body = body[body.index(b"<Invoice") :].replace(b"<cbc:Note>", b"<cbc:Note>&boom;", 1)
    data = b'<?xml version="1.0"?>\n<!DOCTYPE Invoice [<!ENTITY boom SYSTEM "file:///etc/passwd">]>\n' + body

    report = validator.validate(data)

    (failure,) = report.failures
    assert failure.rule_id == "XML" and "DOCTYPE" in failure.text
    assert "root:" not in format_report(report)


def test_a_document_that_is_no_invoice_is_named_as_such(validator: Validator) -> None:
    report = validator.validate(b"<?xml version='1.0'?>\n<Order xmlns='urn:example'/>")
    (failure,) = report.failures
    assert failure.rule_id == "SYNTAX" and "{urn:example}Order" in failure.text and failure.line == 2


def test_a_type_error_inside_the_rules_is_reported_not_printed(
    validator: Validator, capfd: pytest.CaptureFixture[str]
) -> None:
    """Rules that cast a bad boolean fail with a Saxon error: shown as a failure, not on stderr."""
    original = (CEN / "ubl" / "examples" / "guide-example2.xml").read_bytes()
    data = original.replace(b"<cbc:ChargeIndicator>false<", b"<cbc:ChargeIndicator>nope<", 1)
    assert data != original

    report = validator.validate(data, format="ubl")

    assert report.failed_rules() == {"XSD", "RULES-NOT-RUN"}
    assert "cannot be cast to a boolean" in report.errors[-1].text
    assert capfd.readouterr().err == ""


# -- formats, detection, warnings -----------------------------------------------------------------


def test_the_format_comes_from_the_customization_id(validator: Validator) -> None:
    detected = {
        path.name: detect_format(etree.parse(str(path), hardened_parser()).getroot())
        for path in (
            BASE_EXAMPLE,
            CII_EXAMPLE,
            XR / "cii" / "cii-br-de-1-test.xml",
            XR / "ubl-cn" / "ubl-cn-br-de-1-test.xml",
        )
    }
    assert detected == {
        "base-example.xml": ("ubl-invoice", "peppol"),
        "CII_example1.xml": ("cii", "cii"),
        "cii-br-de-1-test.xml": ("cii", "xrechnung"),
        "ubl-cn-br-de-1-test.xml": ("ubl-creditnote", "xrechnung"),
    }


def test_the_caller_can_override_the_format(validator: Validator) -> None:
    """issue116.xml claims Peppol but has Swedish ids Peppol rejects; as plain EN 16931 it is valid."""
    path = CEN / "ubl" / "examples" / "issue116.xml"

    as_peppol = validator.validate(path)
    as_en16931 = validator.validate(path, format="ubl")

    assert (as_peppol.format, as_peppol.ok) == ("peppol", False)
    assert as_peppol.failed_rules() == as_peppol.failed_rules("peppol") == {"PEPPOL-COMMON-R049"}
    assert (as_en16931.format, as_en16931.ok) == ("ubl", True)


def test_facturx_is_cii_with_the_en16931_rules(validator: Validator) -> None:
    data = CII_EXAMPLE.read_bytes()
    marked = re.sub(
        rb"(<ram:GuidelineSpecifiedDocumentContextParameter>\s*<ram:ID>)[^<]*",
        rb"\1urn:cen.eu:en16931:2017#conformant#urn:factur-x.eu:1p0:extended",
        data,
        count=1,
    )
    assert marked != data

    assert validator.validate(marked).format == "facturx"
    as_facturx = validator.validate(data, format="Factur-X")
    assert (as_facturx.format, as_facturx.ok) == ("facturx", True)
    broken = data.replace(b"<ram:IssuerAssignedID>", b"<ram:IssuerAssignedID>x", 1)
    assert (
        validator.validate(broken, format="facturx").failures
        == validator.validate(broken, format="cii").failures
    )


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        (BASE_EXAMPLE, "cii"),
        (BASE_EXAMPLE, "facturx"),
        (CII_EXAMPLE, "ubl"),
        (CII_EXAMPLE, "peppol"),
        (CII_EXAMPLE, "pdf"),
    ],
    ids=lambda v: v.name if isinstance(v, Path) else v,
)
def test_a_format_that_cannot_apply_is_refused(validator: Validator, path: Path, fmt: str) -> None:
    with pytest.raises(FormatError, match=fmt):
        validator.validate(path, format=fmt)


def test_a_peppol_cii_document_gets_the_en16931_rules_and_a_warning(validator: Validator) -> None:
    data = re.sub(
        rb"(<ram:GuidelineSpecifiedDocumentContextParameter>\s*<ram:ID>)[^<]*",
        rb"\1urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0",
        CII_EXAMPLE.read_bytes(),
        count=1,
    )

    report = validator.validate(data)

    assert report.ok and report.format == "cii"
    assert [(f.rule_id, f.flag, f.stage) for f in report.failures] == [
        ("PEPPOL-CII-UNAVAILABLE", "warning", "peppol")
    ]


def test_warnings_do_not_make_a_document_invalid(validator: Validator) -> None:
    report = validator.validate(XR / "cii" / "cii-br-de-1-test.xml")
    assert report.ok and report.warnings and not report.errors
    assert all(f.flag in ("warning", "information") for f in report.warnings)


# -- report text, caching, API --------------------------------------------------------------------


def test_format_report_prints_one_line_per_failure_and_a_summary(validator: Validator) -> None:
    bad = BASE_EXAMPLE.read_bytes().replace(b">1656.25</cbc:PayableAmount>", b">1656.24</cbc:PayableAmount>")
    reports = [validator.validate(BASE_EXAMPLE), validator.validate(bad, source="bad.xml")]
    line = _line_of(bad, b"<cac:LegalMonetaryTotal>")

    assert format_report(reports).splitlines() == [
        f"{BASE_EXAMPLE}: valid (peppol, UBL Invoice)",
        "bad.xml: INVALID (peppol, UBL Invoice) — 1 error",
        f"  BR-CO-16 [fatal] /Invoice[1]/LegalMonetaryTotal[1] (line {line}): Amount due for payment (BT-115) "
        "= Invoice total amount with VAT (BT-112) -Paid amount (BT-113) +Rounding amount (BT-114).",
        "2 files: 1 valid, 1 invalid — 1 error",
    ]


def test_each_stylesheet_is_compiled_once() -> None:
    fresh = Validator()
    ubl = CEN / "ubl" / "examples"

    fresh.validate(ubl / "ubl-tc434-example1.xml", format="ubl")
    fresh.validate(ubl / "ubl-tc434-example2.xml", format="ubl")
    assert fresh.compile_count == 1
    fresh.validate(BASE_EXAMPLE)  # peppol: the CEN stylesheet again plus the Peppol one
    fresh.validate(BASE_EXAMPLE)
    assert fresh.compile_count == 2
    assert set(fresh.compile_seconds) == {"EN16931-UBL-validation.xslt", "PEPPOL-EN16931-UBL.xslt"}


def test_concurrent_validation_gives_the_same_reports() -> None:
    fresh = Validator()
    paths = [p for p, _ in VALID[:6]] + [BASE_EXAMPLE, CII_EXAMPLE] * 3
    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(lambda p: fresh.validate(p, format=None), paths))
    assert [r.failures for r in reports] == [fresh.validate(p).failures for p in paths]
    assert fresh.compile_count == 3  # CEN UBL, Peppol UBL, CEN CII: each once, under the lock


def test_the_module_level_validate_reads_paths_and_bytes() -> None:
    assert validate(BASE_EXAMPLE).source == str(BASE_EXAMPLE)
    assert validate(BASE_EXAMPLE.read_bytes()).source == "<document>"
    with pytest.raises(TypeError):
        validate(str(BASE_EXAMPLE))  # type: ignore[arg-type]


def test_the_shipped_rules_are_self_contained() -> None:
    """The stylesheets compile from the package folder and pull in no other file."""
    for path in STYLESHEETS.values():
        assert path.is_relative_to(RULES_DIR) and path.is_file()
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"<xsl:(include|import)\b|\bdocument\(|\bdoc\(|unparsed-text", text), path.name
