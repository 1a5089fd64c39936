"""``billsync invoices export`` and ``billsync invoices validate`` as an operator types them.

The commands run in this process (typer's runner) on a written billsync.yaml whose database is the
test's (SQLite, and PostgreSQL with BILLSYNC_TEST_DATABASE_URL). An exported file is altered the
way a file is damaged or tampered with on its way (one cent, a missing element), and the official
CEN / Peppol / KoSIT test files are run through the same command a receiver would use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import facturx
import pytest
import yaml
from lxml import etree
from typer.testing import CliRunner, Result

from connectors.einvoice.facturx import extract_xml
from sync_engine.cli import app
from sync_engine.demo import DEMO_SELLER
from sync_engine.demo_payments import DEMO_BANK_IBAN
from sync_engine.runtime import Runtime
from sync_engine.settings import load_settings
from sync_engine.store.db import upgrade_database
from tests.sync_engine.test_einvoices import GERMAN_CUSTOMER, german_vat_lines, store

FIXTURES = Path(__file__).parents[1] / "fixtures" / "standards" / "einvoice"
VEFA = "http://difi.no/xsd/vefa/validator/1.0"
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"


def write_config(folder: Path, db_url: str, **seller_changes: Any) -> Path:
    """billsync.yaml on ``db_url`` with the demo seller (``seller_changes``: None removes a key)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "catalog.yaml").write_text("version: 1\nproducts: []\n", encoding="utf-8")
    seller = {k: v for k, v in {**DEMO_SELLER, **seller_changes}.items() if v is not None}
    settings = {
        "version": 1,
        "database_url": db_url,
        "connections": {},
        "streams": [],
        "destinations": [],
        "seller": seller,
        "payments": {"bank_account": {"name": "Demo Bank", "iban": DEMO_BANK_IBAN}},
        "einvoice": {"tax_categories": {"vat19": "S"}},
    }
    path = folder / "billsync.yaml"
    path.write_text(yaml.safe_dump(settings, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Path:
    return write_config(tmp_path / "config", db_url)


@pytest.fixture
def runtime(config: Path) -> Iterator[Runtime]:
    """The state store of ``config``, holding invoice INV-000001 (German customer, 19 % VAT, 238.00)."""
    settings = load_settings(config)
    upgrade_database(settings.database_url)
    runtime = Runtime(settings)
    store(runtime, "INV-000001", "cus_kunde", GERMAN_CUSTOMER, german_vat_lines())
    yield runtime
    runtime.close()


def billsync(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def export(config: Path, fmt: str, out: Path, number: str = "INV-000001") -> Result:
    return billsync("invoices", "export", number, "--format", fmt, "--out", str(out), "-c", str(config))


def validate(*files: Path, fmt: str | None = None) -> Result:
    return billsync("invoices", "validate", *map(str, files), *(["--format", fmt] if fmt else []))


def rule_ids(result: Result) -> set[str]:
    """The rule ids of the failures a report lists (``  RULE [flag] where: text``)."""
    return set(re.findall(r"^  (\S+) \[(?:fatal|error)\]", result.stdout, re.MULTILINE))


def exported(config: Path, fmt: str, folder: Path) -> Path:
    result = export(config, fmt, folder)
    assert result.exit_code == 0, result.output
    path = Path(result.stdout.strip())
    assert path.parent == folder and path.is_file()
    return path


def ubl_edit(path: Path, edit: Any) -> None:
    """Apply ``edit`` to the parsed UBL file and write it back."""
    tree = etree.parse(str(path))
    edit(tree.getroot())
    tree.write(str(path), xml_declaration=True, encoding="UTF-8")


# --------------------------------------------------------------------------------------------
# an exported file, as written and as altered afterwards


def test_an_exported_invoice_is_valid_and_says_so(config: Path, runtime: Runtime, tmp_path: Path) -> None:
    path = exported(config, "ubl", tmp_path)

    checked = validate(path)

    assert path.name == "INV-000001-ubl.xml"
    assert checked.exit_code == 0, checked.output
    assert f"{path}: valid (ubl, UBL Invoice)" in checked.stdout
    assert "1 file: 1 valid, 0 invalid" in checked.stdout


def test_a_payable_amount_changed_by_one_cent_after_export_fails_br_co_16(
    config: Path, runtime: Runtime, tmp_path: Path
) -> None:
    path = exported(config, "ubl", tmp_path)

    def one_cent_more(root: etree._Element) -> None:
        [payable] = root.iterfind(f".//{{{CBC}}}PayableAmount")
        assert payable.text == "238.00"
        payable.text = "238.01"

    ubl_edit(path, one_cent_more)
    checked = validate(path)

    assert checked.exit_code == 1
    assert f"{path}: INVALID" in checked.stdout
    assert rule_ids(checked) == {"BR-CO-16"}  # amount due = total with VAT - paid + rounding


def test_an_element_removed_after_export_fails_the_schema_and_br_03(
    config: Path, runtime: Runtime, tmp_path: Path
) -> None:
    path = exported(config, "ubl", tmp_path)

    def without_issue_date(root: etree._Element) -> None:
        [issued] = root.iterfind(f"{{{CBC}}}IssueDate")
        root.remove(issued)

    ubl_edit(path, without_issue_date)
    checked = validate(path)

    assert checked.exit_code == 1
    assert rule_ids(checked) == {"XSD", "BR-03"}  # BR-03: an invoice shall have an issue date
    assert "IssueDate" in checked.stdout


def test_a_factur_x_pdf_is_validated_through_its_embedded_xml(
    config: Path, runtime: Runtime, tmp_path: Path
) -> None:
    path = exported(config, "facturx", tmp_path)
    valid = validate(path)
    # the same PDF with one cent more in the embedded invoice
    altered = tmp_path / "altered.pdf"
    xml = extract_xml(path.read_bytes()).replace(
        b"<ram:DuePayableAmount>238.00<", b"<ram:DuePayableAmount>238.01<"
    )
    assert xml != extract_xml(path.read_bytes())
    altered.write_bytes(
        facturx.generate_from_binary(
            path.read_bytes(), xml, flavor="factur-x", level="en16931", check_xsd=False
        )
    )
    invalid = validate(altered)

    assert path.name == "INV-000001-facturx.pdf"
    assert valid.exit_code == 0, valid.output
    assert f"{path}: valid (facturx, CII CrossIndustryInvoice)" in valid.stdout
    assert invalid.exit_code == 1
    assert "BR-CO-16" in rule_ids(invalid)


def test_a_pdf_without_an_embedded_invoice_is_reported_not_a_crash(
    config: Path, runtime: Runtime, tmp_path: Path
) -> None:
    printed = billsync("invoices", "pdf", "INV-000001", "--out", str(tmp_path), "-c", str(config))
    assert printed.exit_code == 0, printed.output
    pdf = Path(printed.stdout.strip())

    checked = validate(pdf)

    assert checked.exit_code == 1
    assert isinstance(checked.exception, SystemExit), repr(checked.exception)  # no traceback
    assert str(pdf) in checked.output and "Factur-X" in checked.output


def test_a_format_that_does_not_fit_the_file_exits_2(config: Path, runtime: Runtime, tmp_path: Path) -> None:
    path = exported(config, "cii", tmp_path)

    checked = validate(path, fmt="peppol")
    unknown = validate(path, fmt="edifact")

    assert checked.exit_code == 2
    assert "format 'peppol' does not apply to a CII CrossIndustryInvoice document" in checked.stderr
    assert unknown.exit_code == 2 and "unknown e-invoice format 'edifact'" in unknown.stderr


# --------------------------------------------------------------------------------------------
# the official test files


def test_official_valid_examples_pass() -> None:
    files = [
        FIXTURES / "en16931-cen/ubl/examples/ubl-tc434-example1.xml",
        FIXTURES / "en16931-cen/cii/examples/CII_example1.xml",
        FIXTURES / "peppol-bis-billing-3/examples/base-example.xml",
        FIXTURES / "xrechnung/instances/ubl-inv/ubl-inv-br-de-1-test.xml",
        FIXTURES / "xrechnung/instances/cii/cii-br-de-1-test.xml",
    ]

    checked = validate(*files)

    assert checked.exit_code == 0, checked.output
    assert "5 files: 5 valid, 0 invalid" in checked.stdout
    assert f"{files[2]}: valid (peppol, UBL Invoice)" in checked.stdout
    assert f"{files[4]}: valid (xrechnung, CII CrossIndustryInvoice)" in checked.stdout


def failing_document(unit_file: Path, rule: str) -> bytes:
    """The first document of a vefa unit-test file that is expected to fail ``rule``."""
    root = etree.parse(str(unit_file)).getroot()
    for test in root.iterfind(f"{{{VEFA}}}test"):
        if rule in [e.text.strip() for e in test.iterfind(f"{{{VEFA}}}assert/{{{VEFA}}}error") if e.text]:
            [document] = [c for c in test if isinstance(c.tag, str) and etree.QName(c).namespace != VEFA]
            return bytes(etree.tostring(document, xml_declaration=True, encoding="UTF-8"))
    raise AssertionError(f"{unit_file} has no test expecting {rule}")


@pytest.mark.parametrize(
    ("unit_file", "rule", "fmt"),
    [
        ("en16931-cen/test/Invoice-unit-UBL/BR-CO-16.xml", "BR-CO-16", None),
        ("en16931-cen/test/Invoice-unit-UBL/BR-03.xml", "BR-03", None),
        ("en16931-cen/test/cii/BR-CO-17.xml", "BR-CO-17", None),
        ("peppol-bis-billing-3/unit-UBL-PEPPOL/PEPPOL-EN16931-R010.xml", "PEPPOL-EN16931-R010", "peppol"),
    ],
    ids=lambda v: Path(v).stem if isinstance(v, str) and "/" in v else None,
)
def test_an_official_unit_test_document_fails_the_rule_it_expects(
    tmp_path: Path, unit_file: str, rule: str, fmt: str | None
) -> None:
    path = tmp_path / f"{rule}.xml"
    path.write_bytes(failing_document(FIXTURES / unit_file, rule))

    checked = validate(path, fmt=fmt)

    assert checked.exit_code == 1
    assert rule in rule_ids(checked), checked.stdout


# --------------------------------------------------------------------------------------------
# exports that must not happen


def test_exporting_an_unknown_invoice_exits_1_and_says_so(
    config: Path, runtime: Runtime, tmp_path: Path
) -> None:
    result = export(config, "ubl", tmp_path / "out.xml", number="INV-999999")
    wrong_format = export(config, "pdf-a", tmp_path / "out.xml")

    assert result.exit_code == 1
    assert result.stderr.startswith("billsync: no invoice") and "INV-999999" in result.stderr
    assert wrong_format.exit_code == 2 and "unknown format 'pdf-a'" in wrong_format.stderr
    assert list(tmp_path.glob("out*")) == []


def test_an_export_that_would_be_invalid_exits_1_lists_the_rule_and_writes_nothing(
    db_url: str, config: Path, runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_phone = write_config(tmp_path / "no-phone", db_url, phone=None)  # XRechnung requires it
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)

    to_file = export(no_phone, "xrechnung", out / "INV-000001.xml")
    to_here = billsync("invoices", "export", "INV-000001", "--format", "xrechnung", "-c", str(no_phone))

    for result in (to_file, to_here):
        assert result.exit_code == 1
        assert "billsync: invoice INV-000001 as xrechnung fails" in result.stderr
        assert "not written" in result.stderr
        assert re.search(r"^  BR-DE-6 \[fatal\] ", result.stderr, re.MULTILINE), result.stderr
    assert list(out.iterdir()) == []
