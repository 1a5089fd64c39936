"""The SEPA Direct Debit export: a pain.008.001.02 file valid against the XSD sepaxml ships, holding
exactly the due EUR invoices of direct-debit customers with a mandate, in exact cents, with the
invoice number as end-to-end id and a message id that makes a repeated export the same file.

Runs on SQLite and (with BILLSYNC_TEST_DATABASE_URL) PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sepaxml
from lxml import etree
from sqlalchemy.orm import Session

from sync_engine.payments import Receipt, record_payment
from sync_engine.sepa_export import (
    SepaExportError,
    creditor_id_problem,
    message_id_for,
    sepa_export,
    validate_pain008,
    write_sepa_export,
)
from sync_engine.settings import BankAccountSettings, PaymentSettings, SellerSettings, SepaSettings, Settings
from tests.sync_engine.books import customer_row, invoice_row

D = Decimal
AS_OF = dt.date(2026, 11, 25)
COLLECT = AS_OF + dt.timedelta(days=2)  # lead_days
NS = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.008.001.02"}
GOOD_IBAN = "DE89 3704 0044 0532 0130 00"
OTHER_IBAN = "NL91ABNA0417164300"


def make_settings(**sepa: Any) -> Settings:
    return Settings(
        connections={},
        streams=[],
        destinations=[],
        seller=SellerSettings(name="Billsync Demo GmbH & Co. KG"),
        payments=PaymentSettings(
            bank_account=BankAccountSettings(
                name="Operating", iban="DE02120300000000202051", bic="BYLADEM1001"
            ),
            sepa=SepaSettings(**{"creditor_id": "DE98ZZZ09999999999", **sepa}),
        ),
    )


def customer(session: Session, customer_id: str, name: str, **data: Any) -> None:
    record = {"name": name, "currency": "EUR", "payment_method": "direct_debit", **data}
    session.add(customer_row(customer_id, **record))


def mandated(session: Session, customer_id: str, name: str, iban: str = GOOD_IBAN, **data: Any) -> None:
    customer(
        session,
        customer_id,
        name,
        iban=iban,
        sepa_mandate_id=f"MNDT-{customer_id.upper().replace('_', '-')}",  # SEPA ids allow no "_"
        sepa_mandate_signed_on="2025-03-01",
        **data,
    )


def invoice(
    session: Session,
    number: str,
    customer_id: str,
    total: str,
    due: dt.date,
    *,
    status: str = "open",
    currency: str = "EUR",
) -> str:
    row = invoice_row(
        number,
        total,
        customer_id=customer_id,
        due=due,
        currency=currency,
        status=status,
        issue=due - dt.timedelta(days=14),
    )
    if status == "draft":
        row.number = None  # a draft is numbered when it is finalised
    session.add(row)
    session.flush()
    return row.id


def seed(session: Session, settings: Settings) -> None:
    mandated(session, "cus_dd", "Müller & Söhne GmbH", bic="COBADEFFXXX")
    mandated(session, "cus_nobic", "Dutch BV", iban=OTHER_IBAN)
    mandated(session, "cus_badiban", "Typo AG", iban="DE89370400440532013001")  # check digits wrong
    customer(session, "cus_nomandate", "Forgot Ltd", iban=GOOD_IBAN)
    mandated(session, "cus_card", "Card Corp", payment_method="card")
    mandated(session, "cus_usd", "Dollar Inc")

    invoice(session, "INV-000001", "cus_dd", "119.00", AS_OF + dt.timedelta(days=1))
    partly = invoice(
        session, "INV-000002", "cus_dd", "200.00", AS_OF - dt.timedelta(days=5), status="overdue"
    )
    invoice(session, "INV-000003", "cus_dd", "99.00", AS_OF + dt.timedelta(days=30))  # not due yet
    invoice(session, "INV-000004", "cus_dd", "10.00", AS_OF - dt.timedelta(days=1), status="paid")
    invoice(session, "INV-000005", "cus_dd", "10.00", AS_OF, status="void")
    invoice(session, "DRAFT-1", "cus_dd", "10.00", AS_OF, status="draft")
    invoice(session, "INV-000006", "cus_nobic", "4.35", COLLECT)  # 4.35 * 100 is 434.99999 as a float
    invoice(session, "INV-000007", "cus_badiban", "50.00", AS_OF)
    invoice(session, "INV-000008", "cus_nomandate", "60.00", AS_OF)
    invoice(session, "INV-000009", "cus_card", "70.00", AS_OF)
    invoice(session, "INV-000010", "cus_usd", "80.00", AS_OF, currency="USD")
    # the customer paid 50.00 of INV-000002 by transfer: 150.00 is left to collect
    record_payment(
        session,
        settings,
        Receipt(
            source="bank",
            source_ref="stmt-1",
            customer_id="cus_dd",
            amount=D("50.00"),
            currency="EUR",
            received_on=AS_OF - dt.timedelta(days=2),
            method="bank_transfer",
            invoice_ids=[partly],
        ),
        as_of=AS_OF,
    )
    session.flush()


def xsd() -> etree.XMLSchema:
    path = Path(sepaxml.__file__).parent / "schemas" / "pain.008.001.02.xsd"
    return etree.XMLSchema(etree.parse(str(path)))


def texts(root: etree._Element, path: str) -> list[str]:
    return [node.text or "" for node in root.iterfind(path, NS)]


@pytest.fixture
def settings() -> Settings:
    return make_settings()


def test_the_file_is_valid_pain008_with_exactly_the_collectable_invoices(
    session: Session, settings: Settings
) -> None:
    seed(session, settings)
    export = sepa_export(session, settings, as_of=AS_OF)

    assert export.invoices == ["INV-000002", "INV-000001", "INV-000006"]  # by due date
    assert export.count == 3 and export.total == D("273.35")
    assert export.amounts == {"INV-000002": D("150.00"), "INV-000001": D("119.00"), "INV-000006": D("4.35")}
    assert dict(export.skipped) == {
        "INV-000007": dict(export.skipped)["INV-000007"],
        "INV-000008": "the customer has no SEPA mandate id",
        "INV-000010": "the invoice is in USD; SEPA collects EUR only",
    }
    assert "IBAN is not valid" in dict(export.skipped)["INV-000007"]

    schema = xsd()
    root = etree.fromstring(export.xml)
    assert schema.validate(root), schema.error_log
    tx = "p:CstmrDrctDbtInitn/p:PmtInf/p:DrctDbtTxInf"
    assert texts(root, f"{tx}/p:PmtId/p:EndToEndId") == export.invoices
    assert texts(root, f"{tx}/p:InstdAmt") == ["150.00", "119.00", "4.35"]
    assert {n.get("Ccy") for n in root.iterfind(f"{tx}/p:InstdAmt", NS)} == {"EUR"}
    assert texts(root, f"{tx}/p:DbtrAcct/p:Id/p:IBAN") == [
        "DE89370400440532013000",
        "DE89370400440532013000",
        "NL91ABNA0417164300",
    ]
    assert texts(root, f"{tx}/p:DrctDbtTx/p:MndtRltdInf/p:MndtId") == [
        "MNDT-CUS-DD",
        "MNDT-CUS-DD",
        "MNDT-CUS-NOBIC",
    ]
    assert texts(root, f"{tx}/p:DrctDbtTx/p:MndtRltdInf/p:DtOfSgntr") == ["2025-03-01"] * 3
    assert texts(root, f"{tx}/p:DbtrAgt/p:FinInstnId/p:BIC") == ["COBADEFFXXX", "COBADEFFXXX"]
    assert texts(root, f"{tx}/p:DbtrAgt/p:FinInstnId/p:Othr/p:Id") == ["NOTPROVIDED"]
    assert texts(root, f"{tx}/p:Dbtr/p:Nm")[0] == "Muller + Sohne GmbH"  # SEPA's Latin character set
    header = "p:CstmrDrctDbtInitn/p:GrpHdr"
    assert texts(root, f"{header}/p:NbOfTxs") == ["3"] and texts(root, f"{header}/p:CtrlSum") == ["273.35"]
    info = "p:CstmrDrctDbtInitn/p:PmtInf"
    assert texts(root, f"{info}/p:ReqdColltnDt") == [COLLECT.isoformat()]
    assert texts(root, f"{info}/p:PmtTpInf/p:SeqTp") == ["RCUR"]
    assert texts(root, f"{info}/p:PmtTpInf/p:LclInstrm/p:Cd") == ["CORE"]
    assert texts(root, f"{info}/p:CdtrAcct/p:Id/p:IBAN") == ["DE02120300000000202051"]
    assert texts(root, f"{info}/p:CdtrSchmeId/p:Id/p:PrvtId/p:Othr/p:Id") == ["DE98ZZZ09999999999"]
    assert texts(root, f"{info}/p:Cdtr/p:Nm") == ["Billsync Demo GmbH + Co. KG"]


def test_running_it_again_gives_the_same_file_and_message_id(session: Session, settings: Settings) -> None:
    seed(session, settings)
    first = sepa_export(session, settings, as_of=AS_OF)
    again = sepa_export(session, settings, as_of=AS_OF)

    assert again.xml == first.xml
    expected = message_id_for("DE98ZZZ09999999999", COLLECT, ["INV-000001", "INV-000002", "INV-000006"])
    assert first.message_id == expected and len(expected) <= 35
    root = etree.fromstring(first.xml)
    assert texts(root, "p:CstmrDrctDbtInitn/p:GrpHdr/p:MsgId") == [expected]

    # a later collection date that also takes INV-000003 is a different message
    later = sepa_export(session, settings, as_of=AS_OF, collection_date=AS_OF + dt.timedelta(days=30))
    assert "INV-000003" in later.invoices and later.message_id != first.message_id


def test_write_puts_the_file_on_disk_and_nothing_when_nothing_is_due(
    session: Session, settings: Settings, tmp_path: Path
) -> None:
    seed(session, settings)
    early = AS_OF - dt.timedelta(days=60)
    none_due = write_sepa_export(
        settings, session, tmp_path / "early.xml", early, early + dt.timedelta(days=1)
    )
    assert (none_due.count, none_due.invoices, none_due.xml, none_due.total) == (0, [], b"", D("0"))
    assert not (tmp_path / "early.xml").exists()

    out = tmp_path / "sepa" / "collections.xml"
    export = write_sepa_export(settings, session, out, AS_OF, None)
    assert out.read_bytes() == export.xml and export.count == 3


def test_a_validator_that_would_catch_a_broken_file(session: Session, settings: Settings) -> None:
    seed(session, settings)
    export = sepa_export(session, settings, as_of=AS_OF)
    validate_pain008(export.xml)
    broken = export.xml.replace(b"<SeqTp>RCUR</SeqTp>", b"<SeqTp>NEXT</SeqTp>")  # not a sequence type
    assert broken != export.xml
    with pytest.raises(SepaExportError, match="does not validate"):
        validate_pain008(broken)


def test_bad_configuration_is_refused_before_anything_is_built(session: Session) -> None:
    seed(session, make_settings())
    assert creditor_id_problem("DE98ZZZ09999999999") is None
    with pytest.raises(SepaExportError, match="check digits"):
        sepa_export(session, make_settings(creditor_id="DE97ZZZ09999999999"), as_of=AS_OF)
    with pytest.raises(SepaExportError, match="after the export date"):
        sepa_export(session, make_settings(), as_of=AS_OF, collection_date=AS_OF)
    no_sepa = make_settings()
    no_sepa.payments.sepa = None
    with pytest.raises(SepaExportError, match="payments.sepa"):
        sepa_export(session, no_sepa, as_of=AS_OF)
